import ArgumentParser
import Foundation
import Lathe
import LatheBench

extension Bench {
    /// `lathe bench llm MODEL`: prompt and generation tokens/s, as llama-bench prints them.
    struct LLM: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "llm",
            abstract: "Prompt processing (pp) and generation (tg) speed of a language model, as llama-bench measures them.",
            discussion: """
            pp: --prompt-tokens tokens in one pass on an empty cache; tg: --gen-tokens tokens one at a time from an \
            empty cache; mean and standard deviation of tokens/s over --repeat runs after a warm-up.
            Example: lathe bench llm ~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2
            """
        )

        @Argument(help: "A .gguf file or a Hugging Face folder.") var model: String
        @Option(help: "Prompt tokens (0: skip pp).") var promptTokens: Int = 512
        @Option(help: "Generated tokens (0: skip tg).") var genTokens: Int = 128
        @Flag(help: "Dequantise GGUF weights to float32 at load instead of keeping them quantized.") var dequantize = false
        @OptionGroup var options: BenchOptions

        func run() throws {
            let repeats = try options.apply(defaultRepeats: 3)
            guard promptTokens >= 0, genTokens >= 0, promptTokens + genTokens > 0 else {
                throw ValidationError("--prompt-tokens and --gen-tokens must be non-negative, and one of them positive")
            }
            let lm: any LanguageModel
            if dequantize {
                guard model.hasSuffix(".gguf") else { throw ValidationError("--dequantize applies to GGUF files") }
                lm = try DecoderModel.load(gguf: URL(fileURLWithPath: model), quantized: false)
            } else {
                lm = try PretrainedModel.load(model).languageModel()
            }
            guard max(promptTokens, genTokens) <= lm.maxPositions else {
                throw ValidationError("the model takes \(lm.maxPositions) positions; ask for fewer tokens")
            }
            var out = RowPrinter(json: options.json, columns: [("model", "model"), ("threads", "threads"), ("test", "test"), ("tokens_per_second", "t/s"),
                                                               ("deviation", "+/-")])
            for r in LLMBenchmark.run(lm, promptTokens: promptTokens, genTokens: genTokens, repeats: repeats) {
                out.print([("bench", .string("llm")), ("model", .string(URL(fileURLWithPath: model).lastPathComponent)),
                           ("weights", .string(dequantize ? "float32" : "as stored")), ("threads", .int(ThreadPool.threadCount)),
                           ("test", .string(r.test)), ("tokens_per_second", .double(r.tokensPerSecond, digits: 2)),
                           ("deviation", .double(r.tokensPerSecondDeviation, digits: 2))])
            }
        }
    }
}
