import Foundation
import LatheLM
import LatheNN
import LatheTensor

/// Prompt processing and generation speed of a language model, measured as llama-bench does:
/// `pp` runs `promptTokens` tokens in one pass on an empty cache; `tg` generates `genTokens`
/// tokens one at a time from an empty cache. Tokens are fixed pseudo-random ids (the content
/// does not change the work). Each is repeated and reported as tokens per second.
public enum LLMBenchmark {
    public struct Result: Sendable {
        /// "pp512", "tg128".
        public var test: String
        public var tokens: Int
        /// Seconds per repetition.
        public var seconds: [Double]
        public var tokensPerSecond: Double { Double(tokens) / (seconds.reduce(0, +) / Double(max(seconds.count, 1))) }
        /// The standard deviation of the tokens/s over the repetitions.
        public var tokensPerSecondDeviation: Double {
            let rates = seconds.map { Double(tokens) / $0 }, mean = rates.reduce(0, +) / Double(max(rates.count, 1))
            return (rates.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(rates.count - 1, 1))).squareRoot()
        }
    }

    /// Runs pp (when `promptTokens > 0`) and tg (when `genTokens > 0`), each after one warm-up.
    public static func run(_ model: LanguageModel, promptTokens: Int = 512, genTokens: Int = 128, repeats: Int = 3) -> [Result] {
        precondition(promptTokens >= 0 && genTokens >= 0 && repeats >= 1, "LLMBenchmark: sizes must be non-negative, repeats positive")
        precondition(max(promptTokens, genTokens) <= model.maxPositions, "LLMBenchmark: more tokens than the model's context (\(model.maxPositions))")
        var g = RandomGenerator(seed: 1)
        let ids = Tensor.randint([max(promptTokens, genTokens)], low: 0, high: model.vocabularySize, generator: &g).intScalars
        var results: [Result] = []
        if promptTokens > 0 {
            let cache = model.makeCache(capacity: promptTokens)
            func once() -> Double {
                cache.reset()
                let t0 = Timing.now()
                _ = model.logits(Array(ids.prefix(promptTokens)), cache: cache, lastOnly: true)
                return Timing.now() - t0
            }
            _ = once()
            results.append(Result(test: "pp\(promptTokens)", tokens: promptTokens, seconds: (0..<repeats).map { _ in once() }))
        }
        if genTokens > 0 {
            let cache = model.makeCache(capacity: genTokens)
            func once() -> Double {
                cache.reset()
                let t0 = Timing.now()
                for i in 0..<genTokens { _ = model.logits([ids[i]], cache: cache, lastOnly: true) }
                return Timing.now() - t0
            }
            _ = once()
            results.append(Result(test: "tg\(genTokens)", tokens: genTokens, seconds: (0..<repeats).map { _ in once() }))
        }
        return results
    }
}
