import ArgumentParser
import Foundation
import Lathe
import LatheBench

extension Bench {
    /// `lathe bench lora-step MODEL [--qlora]`: peak memory and time of LoRA / QLoRA steps.
    struct LoRAStep: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "lora-step",
            abstract: "Peak resident memory and time of LoRA training steps on a language model, on a float or a quantized base (QLoRA).",
            discussion: """
            Loads MODEL (a Hugging Face folder, or a GGUF file: dequantised to float32, or kept quantized with --qlora), \
            adds rank --rank adapters to every linear layer but the output, and runs 1 + --repeat AdamW steps on a \
            [--batch, --seq] batch of fixed pseudo-random ids. Reported: the resident set before the first step (model, \
            adapters, optimiser), its peak during the steps (the peak is reset after loading on Linux) and the median \
            time of the steps after the first. Run it once per configuration: one process per measurement.
            Example: lathe bench lora-step ~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf --qlora --batch 4 --seq 128
            """
        )

        @Argument(help: "A .gguf file or a Hugging Face folder.") var model: String
        @Flag(help: "Keep the GGUF file's quantized matrices quantized under the adapters (QLoRA).") var qlora = false
        @Option(help: "Rows per batch.") var batch: Int = 4
        @Option(name: .customLong("seq"), help: "Tokens per row.") var sequence: Int = 128
        @Option(help: "Adapter rank.") var rank: Int = 8
        @Option(help: "Train on windows of this text file (`shakespeare`: the bundled plays) instead of one batch of random ids.") var text: String?
        @Option(name: .customLong("learning-rate"), help: "AdamW's learning rate.") var learningRate: Float = 1e-4
        @Option(name: .customLong("save-adapter"), help: "Write the trained adapter here (a PEFT folder).") var saveAdapter: String?
        @OptionGroup var options: BenchOptions

        func run() throws {
            let repeats = try options.apply(defaultRepeats: 2)
            guard batch >= 1, sequence >= 2, rank >= 1 else { throw ValidationError("--batch and --rank must be at least 1, --seq at least 2") }
            let isGGUF = model.lowercased().hasSuffix(".gguf")
            if qlora && !isGGUF { throw ValidationError("--qlora needs a .gguf file (its quantized matrices stay quantized)") }
            let decoder: DecoderModel
            if isGGUF {
                decoder = try DecoderModel.load(gguf: URL(fileURLWithPath: model), quantized: qlora)
            } else {
                guard case .decoder(let d) = try PretrainedModel.loadModel(model) else { throw CLIError("\(model) is not a Llama-family decoder") }
                decoder = d
            }
            guard sequence <= decoder.maxPositions else { throw ValidationError("--seq \(sequence) is longer than the model's \(decoder.maxPositions) positions") }
            var tokens: [Int]?
            if let text {
                let content = text == "shakespeare" ? try CharCorpus.shakespeareText() : try? String(contentsOfFile: text, encoding: .utf8)
                guard let content else { throw CLIError("cannot read \(text) as UTF-8 text") }
                let tokenizer = isGGUF ? try PretrainedModel.ggufTokenizer(GGUFFile(contentsOf: URL(fileURLWithPath: model)))
                    : try loadTokenizer(contentsOf: URL(fileURLWithPath: model).appendingPathComponent("tokenizer.json"))
                tokens = tokenizer.encode(content, addSpecialTokens: false)
                guard tokens!.count > sequence else { throw CLIError("\(text) has \(tokens!.count) tokens, fewer than one row of --seq \(sequence)") }
            }
            let r = try LoRAStepBenchmark.run(decoder, batch: batch, sequence: sequence, rank: rank, repeats: repeats, learningRate: learningRate,
                                              tokens: tokens)
            if let saveAdapter {
                var config = LoRAStepBenchmark.config(rank: rank)
                config.baseModel = URL(fileURLWithPath: model).lastPathComponent
                try PEFTAdapter.save(decoder, config: config, to: URL(fileURLWithPath: saveAdapter))
                if !options.json { print("losses: " + r.losses.map { String(format: "%.4f", $0) }.joined(separator: " ")) }
            }
            var out = RowPrinter(json: options.json, columns: [("base", "base"), ("batch", "batch"), ("seq", "seq"), ("baseline_rss_mb", "before MB"),
                                                               ("peak_rss_mb", "peak MB"), ("ms_per_step", "median ms/step"), ("loss", "loss")])
            out.print([("bench", .string("lora-step")), ("model", .string(URL(fileURLWithPath: model).lastPathComponent)),
                       ("base", .string(qlora ? "quantized (QLoRA)" : "float32 (LoRA)")), ("threads", .int(ThreadPool.threadCount)),
                       ("batch", .int(batch)), ("seq", .int(sequence)), ("rank", .int(rank)), ("adapted_layers", .int(r.adaptedLayers)),
                       ("quantized_layers", .int(r.quantizedLayers)), ("trainable_parameters", .int(r.trainableParameters)),
                       ("baseline_rss_mb", .double(r.baselineMB, digits: 1)), ("peak_rss_mb", .double(r.peakMB, digits: 1)),
                       ("peak_is_steps_only", .bool(r.peakIsStepsOnly)), ("ms_per_step", .double(r.msPerStep, digits: 1)),
                       ("loss", .double(Double(r.losses.first ?? .nan), digits: 4)),
                       ("last_loss", .double(Double(r.losses.last ?? .nan), digits: 4))])
        }
    }
}
