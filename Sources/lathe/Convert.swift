import ArgumentParser
import Foundation
import Lathe

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model (GGUF file or Hugging Face folder) as a Hugging Face folder or as a GGUF file.",
        discussion: """
        To a folder: config.json, generation_config.json, the weights (model.safetensors, or shards with \
        model.safetensors.index.json) and the source folder's tokenizer files; from a GGUF file, its tokenizer is \
        written as tokenizer.json, tokenizer_config.json (with the chat template) and special_tokens_map.json. GGUF \
        weights are dequantised, and Llama's q/k rows and Gemma's norms are put back in Hugging Face's conventions.

        To a .gguf file (--type): from a GGUF file, the metadata and tokenizer are copied and the tensors converted; \
        from a Hugging Face folder of the Llama family (with a byte-level BPE tokenizer.json), the tensors are renamed \
        and permuted as llama.cpp's converter does. Each tensor's type follows llama-quantize's rules: norms and other \
        1-D tensors stay F32; with a quantised type the output projection (or the tied token embedding) gets Q6_K, or \
        Q8_0 when its rows are not a multiple of 256; the _M mixtures give some attn_v and ffn_down tensors Q6_K. \
        Tensors already in their new type are copied unchanged.

        Calibrated int4 (--calibrate gptq or awq, from a GGUF file, --type q4_0 or q4_1): the model is dequantised \
        to float32, the first --calibration-rows x --calibration-length tokens of --calibration-file are run through \
        it layer by layer, and each layer's seven projections are quantized with GPTQ (error-compensating, with the \
        Hessian of their inputs) or AWQ (activation-aware per-channel scales folded into the norms and the v/up \
        projections, then round-to-nearest) to groups of 32 that are exactly Q4_0 or Q4_1 blocks. The other tensors \
        follow the rules above. Prints each layer's calibration output error against plain round-to-nearest.

        Examples:
          lathe convert ~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf --output smollm2-hf --dtype bf16
          lathe convert ~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf --output smollm2-q8_0.gguf --type q8_0
          lathe convert smollm2-hf --output smollm2-f16.gguf --type f16
          lathe convert ~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf --output smollm2-gptq.gguf --type q4_0 \
            --calibrate gptq --calibration-file botchan.txt
        """)

    enum WeightType: String, ExpressibleByArgument, CaseIterable {
        case f32, f16, bf16
        var dtype: DType { switch self { case .f32: .float32; case .f16: .float16; case .bf16: .bfloat16 } }
    }

    @Argument(help: "A GGUF file or a Hugging Face folder.") var model: String
    @Option(help: "The Hugging Face folder to write (created if needed), or a .gguf file.") var output: String
    @Option(help: "Folder output: the weights' type: \(WeightType.allCases.map(\.rawValue).joined(separator: ", ")).") var dtype: WeightType?
    @Option(help: "Folder output: split the weights into shards of at most this many megabytes (as save_pretrained's max_shard_size).")
    var maxShardMB: Int?
    @Option(help: "GGUF output: the file type: \(GGUFFileType.names.joined(separator: ", ")).") var type: String?
    @Flag(help: "GGUF output: every converted tensor in --type, without llama-quantize's per-tensor rules (its --pure).") var pure = false
    @Option(name: .customLong("output-tensor-type"), help: "GGUF output: the type of output.weight (llama-quantize's --output-tensor-type).")
    var outputTensorType: String?
    @Option(name: .customLong("token-embedding-type"), help: "GGUF output: the type of token_embd.weight (llama-quantize's --token-embedding-type).")
    var tokenEmbeddingType: String?
    @Flag(help: "GGUF output: print each tensor's conversion.") var verbose = false
    @Option(help: "GGUF output from a GGUF file, --type q4_0 or q4_1: quantize the projections with calibration: gptq or awq.")
    var calibrate: CalibratedQuantization.Method?
    @Option(name: .customLong("calibration-file"), help: "With --calibrate: the text to calibrate on.") var calibrationFile: String?
    @Option(name: .customLong("calibration-rows"), help: "With --calibrate: rows of the calibration text to run.") var calibrationRows = 128
    @Option(name: .customLong("calibration-length"), help: "With --calibrate: tokens per calibration row.") var calibrationLength = 256
    @Option(help: "With --calibrate gptq: the damping, a fraction of the mean Hessian diagonal.") var damping: Float = 0.01
    @Flag(name: .customLong("act-order"), help: "With --calibrate gptq: quantize columns in order of decreasing Hessian diagonal.")
    var actOrder = false
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        let toGGUF = output.lowercased().hasSuffix(".gguf")
        if toGGUF {
            if dtype != nil { throw ValidationError("--dtype is for Hugging Face folders; a .gguf output takes --type") }
            if maxShardMB != nil { throw ValidationError("--max-shard-mb is for Hugging Face folders") }
            guard let type else { throw ValidationError("writing a .gguf file needs --type (\(GGUFFileType.names.joined(separator: ", ")))") }
            guard GGUFFileType(name: type) != nil else {
                throw ValidationError("unknown --type '\(type)'; Lathe writes \(GGUFFileType.names.joined(separator: ", "))")
            }
            for (flag, value) in [("--output-tensor-type", outputTensorType), ("--token-embedding-type", tokenEmbeddingType)] {
                if let value, Self.tensorType(value) == nil {
                    throw ValidationError("unknown \(flag) '\(value)'; Lathe writes \(GGMLType.quantizable.map { $0.name.lowercased() }.joined(separator: ", "))")
                }
            }
            if let calibrate {
                guard type.lowercased() == "q4_0" || type.lowercased() == "q4_1" else {
                    throw ValidationError("--calibrate \(calibrate.rawValue) writes --type q4_0 or q4_1")
                }
                guard calibrationFile != nil else { throw ValidationError("--calibrate needs --calibration-file (a text to calibrate on)") }
                guard calibrationRows >= 1, calibrationLength >= 2 else {
                    throw ValidationError("--calibration-rows must be at least 1 and --calibration-length at least 2")
                }
                guard damping > 0, damping.isFinite else { throw ValidationError("--damping must be positive") }
            } else if calibrationFile != nil || actOrder {
                throw ValidationError("--calibration-file and --act-order go with --calibrate")
            }
        } else {
            if calibrate != nil { throw ValidationError("--calibrate writes a .gguf file (--output NAME.gguf --type q4_0 or q4_1)") }
            if type != nil || pure || outputTensorType != nil || tokenEmbeddingType != nil {
                throw ValidationError("--type, --pure, --output-tensor-type and --token-embedding-type are for .gguf outputs; a folder takes --dtype")
            }
            if let mb = maxShardMB, mb < 1 { throw ValidationError("--max-shard-mb must be at least 1") }
        }
    }

    static func tensorType(_ name: String) -> GGMLType? {
        GGMLType.quantizable.first { $0.name.lowercased() == name.lowercased() }
    }

    func run() throws {
        try threadOptions.apply()
        if output.lowercased().hasSuffix(".gguf") { return try writeGGUF() }
        let t0 = Timing.now()
        let files = try HuggingFaceWriter.convert(modelAt: model, to: URL(fileURLWithPath: output),
                                                  options: .init(dtype: (dtype ?? .f32).dtype, maxShardBytes: maxShardMB.map { $0 << 20 })) {
            FileHandle.standardError.write(Data("warning: \($0)\n".utf8))
        }
        for f in files {
            let size = (try? FileManager.default.attributesOfItem(atPath: f.path)[.size] as? Int) ?? 0
            print(String(format: "%@  %.1f MB", f.lastPathComponent, Double(size) / 1e6))
        }
        print(String(format: "wrote %@ in %.1f s", output, Timing.now() - t0))
    }

    func writeGGUF() throws {
        let fileType = GGUFFileType(name: type!)!
        let rules = GGUFTypeRules(fileType: fileType, pure: pure, outputType: outputTensorType.flatMap(Self.tensorType),
                                  tokenEmbeddingType: tokenEmbeddingType.flatMap(Self.tensorType))
        let source = URL(fileURLWithPath: model), destination = URL(fileURLWithPath: output)
        guard FileManager.default.fileExists(atPath: model) else { throw CLIError("\(model): no such file or folder") }
        guard !GGUFFile.sameFile(destination.path, source.path) else { throw CLIError("\(output): the output is the input; write to another path") }
        let t0 = Timing.now()
        let verbose = self.verbose
        let progress: (GGUFWrittenTensor) -> Void = { t in
            guard verbose else { return }
            let shape = "[" + t.dimensions.map(String.init).joined(separator: ", ") + "]"
            print("\(t.name)  \(shape)  \(t.from.name) -> \(t.to.name)\(t.copied ? " (copied)" : "")")
        }
        let written: [GGUFWrittenTensor]
        do {
            if let calibrate {
                guard !PretrainedModel.isDirectory(model) else { throw CLIError("--calibrate converts a GGUF file, not a folder") }
                guard let text = try? String(contentsOfFile: calibrationFile!, encoding: .utf8) else {
                    throw CLIError("cannot read the calibration file \(calibrationFile!) as UTF-8 text")
                }
                var options = CalibratedQuantization.Options(method: calibrate, symmetric: fileType == .q4_0)
                (options.damping, options.actOrder) = (damping, actOrder)
                let done = try CalibratedQuantization.convert(
                    gguf: source, to: destination, rules: rules, options: options, calibrationText: text, rows: calibrationRows,
                    length: calibrationLength, progress: { print($0) }, tensorProgress: progress)
                written = done.written
                let r = done.result
                let rtn = r.projections.reduce(0) { $0 + $1.roundToNearestError }, err = r.projections.reduce(0) { $0 + $1.error }
                print(String(format: "calibrated %d projections on %d tokens in %.1f s: output error %.4g, round-to-nearest %.4g (ratio %.3f)",
                             r.projections.count, r.tokens, r.seconds, err, rtn, rtn > 0 ? err / rtn : 1))
            } else if PretrainedModel.isDirectory(model) {
                written = try GGUFExport.write(huggingFaceFolder: source, to: destination, rules: rules, progress: progress)
            } else {
                written = try GGUFFile(contentsOf: source).requantize(to: destination, rules: rules, progress: progress)
            }
        } catch let e as GGUFError {
            throw CLIError("\(e)")
        } catch let e as ModelFileError {
            throw CLIError("\(e)")
        } catch let e as CalibrationError {
            throw CLIError("\(e)")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print(String(format: "wrote %@ (%@): %d tensors (%@), %.1f MB in %.1f s", output, fileType.name, written.count,
                     GGUFWrittenTensor.typeCounts(written), Double(size) / 1e6, Timing.now() - t0))
    }

}

extension CalibratedQuantization.Method: ExpressibleByArgument {}
