import ArgumentParser
import Foundation
import Lathe

struct Fuse: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fuse a LoRA/DoRA adapter (PEFT, mlx-lm or llama.cpp GGUF) into its base model and write a Hugging Face folder or a GGUF file.",
        discussion: """
        Each adapted layer is fused in float32 from the base's own weights, W' = W + scale·B·A (DoRA: each row of \
        W + scale·B·A scaled by its magnitude over its norm); with a quantized base (a GGUF file) W is the \
        dequantised matrix the adapter was trained or run on. A quantized output quantizes each fused layer once \
        from those float32 values; the other tensors are copied, or converted as `lathe convert` converts them.
        A .gguf output takes --type (default: the GGUF base's own type); a folder takes f32, f16 or bf16.
        Then the written model and the live adapter (the base with the adapter unmerged) run on the same text \
        (--eval-file, default a slice of the bundled Shakespeare) and the command prints the KL divergence of the \
        fused model's next-token distribution from the live adapter's, how often both pick the same top token, and \
        the perplexities, and the same KL for the base without the adapter: a fuse that dropped or changed the \
        adapter shows there (a warning when the fused model is more than a tenth as far from the live adapter as the \
        base is: 4-bit types can round a small adapter's changes away; --calibrate gptq keeps more of it in \
        q4_0/q4_1 files by quantizing the fused layers with GPTQ on a calibration text).
        Examples:
          lathe fuse --model ~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf --adapter my-adapter --output fused-q4_1.gguf
          lathe fuse --model smollm2-hf --adapter my-adapter --output fused-hf --type bf16
        """)

    @Option(help: "The base model the adapter was trained on: a GGUF file or a Hugging Face folder.") var model: String
    @Option(help: "The adapter: a PEFT or mlx-lm folder, or a llama.cpp .gguf adapter.") var adapter: String
    @Option(help: "The Hugging Face folder to write, or a .gguf file.") var output: String
    @Option(help: "Folder: f32, f16, bf16 (default f32). GGUF: \(GGUFFileType.names.joined(separator: ", ")) (default: the GGUF base's type).")
    var type: String?
    @Option(name: .customLong("eval-file"), help: "The text for the comparison (default: a slice of the bundled Shakespeare).") var evalFile: String?
    @Option(help: "Tokens per chunk of the comparison (default: 256, or the model's context if shorter).") var context: Int?
    @Option(help: "Chunks of the comparison (0: no comparison).") var chunks: Int = 4
    @Option(help: "q4_0/q4_1 output of a GGUF base: quantize the fused layers by GPTQ on a calibration text (gptq) instead of rounding to nearest.")
    var calibrate: String?
    @Option(name: .customLong("calibration-file"), help: "The calibration text (default: the bundled Shakespeare after the comparison's slice).")
    var calibrationFile: String?
    @Option(name: .customLong("calibration-rows"), help: "Calibration rows.") var calibrationRows: Int = 16
    @Option(name: .customLong("calibration-length"), help: "Tokens per calibration row (at most the model's context).") var calibrationLength: Int = 256
    @OptionGroup var threadOptions: ThreadOptions

    var toGGUF: Bool { output.lowercased().hasSuffix(".gguf") }

    func validate() throws {
        guard chunks >= 0 else { throw ValidationError("--chunks must be 0 or more") }
        if let calibrate {
            guard calibrate == "gptq" else { throw ValidationError("--calibrate takes gptq, not '\(calibrate)'") }
            guard toGGUF, type.map({ ["q4_0", "q4_1"].contains($0.lowercased()) }) ?? true else {
                throw ValidationError("--calibrate gptq writes the fused layers as q4_0 or q4_1: give a .gguf output and --type q4_0 or q4_1")
            }
            guard calibrationRows >= 1, calibrationLength >= 2 else { throw ValidationError("--calibration-rows must be at least 1, --calibration-length at least 2") }
        } else if calibrationFile != nil {
            throw ValidationError("--calibration-file needs --calibrate gptq")
        }
        if let context, context < 4 { throw ValidationError("--context must be at least 4") }
        if let type {
            if toGGUF {
                guard GGUFFileType(name: type) != nil else { throw ValidationError("unknown --type '\(type)'; a .gguf output takes \(GGUFFileType.names.joined(separator: ", "))") }
            } else {
                guard Convert.WeightType(rawValue: type.lowercased()) != nil else {
                    throw ValidationError("a folder output takes --type f32, f16 or bf16, not '\(type)' (quantized types need a .gguf output)")
                }
            }
        }
    }

    func run() throws {
        try threadOptions.apply()
        guard FileManager.default.fileExists(atPath: model) else { throw CLIError("\(model): no such file or folder") }
        let text: String
        if let evalFile {
            guard let t = try? String(contentsOfFile: evalFile, encoding: .utf8) else { throw CLIError("cannot read \(evalFile) as UTF-8 text") }
            text = t
        } else {
            text = String(try CharCorpus.shakespeareText().prefix(40_000))
        }
        let destination: LoRAFusion.Destination
        let url = URL(fileURLWithPath: output)
        if toGGUF {
            destination = .gguf(url, rules: GGUFTypeRules(fileType: try ggufType()))
        } else {
            destination = .huggingFace(url, dtype: Convert.WeightType(rawValue: (type ?? "f32").lowercased())!.dtype)
        }
        let t0 = Timing.now()
        let summary: LoRAFusion.Summary
        do {
            let rows = calibrate == nil ? nil : try calibrationTokenRows()
            summary = try LoRAFusion.write(base: model, adapter: URL(fileURLWithPath: adapter), to: destination, calibration: rows, progress: { _ in }) {
                FileHandle.standardError.write(Data("warning: \($0)\n".utf8))
            }
        } catch let e as LoRAError { throw CLIError("\(e)") } catch let e as ModelFileError { throw CLIError("\(e)") } catch let e as GGUFError {
            throw CLIError("\(e)")
        } catch let e as CalibrationError { throw CLIError("\(e)") }
        let method = summary.config.useDoRA ? "DoRA" : "LoRA"
        let typeNote = summary.tensors.isEmpty ? "" : " (" + GGUFWrittenTensor.typeCounts(summary.tensors) + " tensors)"
        print(String(format: "fused %@ into %d layers; wrote %@%@ in %.1f s", method, summary.fusedLayers.count, output, typeNote, Timing.now() - t0))
        guard chunks > 0 else { return }
        try compare(text: text)
    }

    /// Token rows for GPTQ: --calibration-rows rows of --calibration-length tokens of the text.
    func calibrationTokenRows() throws -> [[Int]] {
        let text: String
        if let calibrationFile {
            guard let t = try? String(contentsOfFile: calibrationFile, encoding: .utf8) else { throw CLIError("cannot read \(calibrationFile) as UTF-8 text") }
            text = t
        } else {
            text = String(try CharCorpus.shakespeareText().dropFirst(40_000).prefix(400_000))
        }
        return try LoRAFusion.calibrationRows(base: model, text: text, rows: calibrationRows, length: calibrationLength)
    }

    /// The GGUF output's file type: --type, or the base's own.
    func ggufType() throws -> GGUFFileType {
        if let type { return GGUFFileType(name: type)! }
        guard !PretrainedModel.isDirectory(model) else { throw CLIError("a .gguf output from a Hugging Face folder needs --type (\(GGUFFileType.names.joined(separator: ", ")))") }
        let id = try GGUFFile(contentsOf: URL(fileURLWithPath: model)).int("general.file_type")
        guard let id, let found = GGUFFileType.allCases.first(where: { Int($0.id) == id }) else {
            throw CLIError("\(model) has file type \(id.map(String.init) ?? "(none)"), which Lathe does not write: give --type")
        }
        return found
    }

    /// The written model against the live adapter on `text`: KL divergence and top-token agreement.
    func compare(text: String) throws {
        let c: LoRAFusion.Comparison
        do {
            c = try LoRAFusion.compare(base: model, adapter: URL(fileURLWithPath: adapter), written: output, text: text, context: context ?? 256,
                                       chunks: chunks)
        } catch let e as PerplexityError { throw CLIError("comparing the fused model with the live adapter: \(e)") } catch let e as LoRAError {
            throw CLIError("\(e)")
        }
        let r = c.fused, dropped = c.withoutAdapter
        let source = evalFile ?? "the bundled Shakespeare"
        print("fused vs live adapter on \(source): \(r.perplexity.tokensScored) tokens scored (\(r.perplexity.chunks) chunks of \(c.context))")
        print(String(format: "KL divergence: mean %.6f, 99%% %.6f, max %.6f nats", r.meanKL, KLResult.percentile(r.klDivergences, 0.99),
                     KLResult.percentile(r.klDivergences, 1)))
        print(String(format: "same top token: %.2f %%", 100 * r.sameTopToken))
        print(String(format: "perplexity: fused %.4f, live adapter %.4f, base without the adapter %.4f", r.perplexity.perplexity,
                     r.referencePerplexity.perplexity, dropped.perplexity.perplexity))
        print(String(format: "base without the adapter vs live adapter: KL mean %.6f nats, same top token %.2f %%", dropped.meanKL, 100 * dropped.sameTopToken))
        if c.lostMuchOfTheAdapter {
            FileHandle.standardError.write(Data(String(
                format: "warning: the fused model is %.0f%% as far from the live adapter as the base without the adapter is: quantizing the fused "
                    + "layers rounds much of the adapter's change away. Write more bits (--type q8_0 or q6_k, or a folder)%@ or run the adapter live "
                    + "(lathe generate --adapter).\n", 100 * r.meanKL / max(dropped.meanKL, 1e-12),
                    calibrate == nil && toGGUF ? ", quantize the fused layers with --calibrate gptq (q4_0, q4_1)," : "").utf8))
        }
    }
}
