import Foundation
import LatheTensor

/// Perplexity of a token sequence the way llama.cpp's `llama-perplexity` measures it:
/// non-overlapping chunks of `context` tokens, the first token of each chunk replaced by BOS
/// where the vocabulary adds one, and only the second half of each chunk scored (each scored
/// token has at least `context / 2` tokens before it).
public struct PerplexityResult: Sendable, Equatable {
    public var perplexity: Double
    /// Standard error of the perplexity (from the spread of the per-token negative log-likelihoods).
    public var standardError: Double
    /// Mean negative log-likelihood per scored token (nats).
    public var meanNLL: Double
    public var tokensScored: Int
    public var chunks: Int
    public var seconds: Double
    /// Tokens run through the model per second (all of each chunk, not only the scored half).
    public var tokensPerSecond: Double
}

public enum Perplexity {
    /// - Parameters:
    ///   - bos: the token that starts each chunk (nil: the chunk's own first token stays).
    ///   - progress: called after each chunk with (chunks done, chunks, perplexity so far).
    public static func evaluate(_ model: LanguageModel, tokens: [Int], context: Int, bos: Int?,
                                progress: (Int, Int, Double) -> Void = { _, _, _ in }) throws -> PerplexityResult {
        guard context >= 4 else { throw PerplexityError("the context must be at least 4 tokens, got \(context)") }
        guard context <= model.maxPositions else {
            throw PerplexityError("the context \(context) is longer than the model's \(model.maxPositions) positions")
        }
        let chunks = tokens.count / context
        guard chunks >= 1 else {
            throw PerplexityError("the text has \(tokens.count) tokens; at least one chunk of the context (\(context)) is needed (use a longer text or --context)")
        }
        let first = context / 2
        var nll = 0.0, nll2 = 0.0, count = 0
        let cache = model.makeCache(capacity: context)
        let start = Timing.now()
        for c in 0..<chunks {
            var chunk = Array(tokens[(c * context)..<((c + 1) * context)])
            if let bos { chunk[0] = bos }
            cache.reset()
            let logits = model.logits(chunk, cache: cache, lastOnly: false)
            let v = model.vocabularySize
            logits.withUnsafeBufferPointer { p in
                for j in first..<(context - 1) {
                    let row = p.baseAddress! + j * v
                    var top = -Float.infinity
                    for i in 0..<v where row[i] > top { top = row[i] }
                    var sum = 0.0
                    for i in 0..<v { sum += Double(expf(row[i] - top)) }
                    let target = tokens[c * context + j + 1]
                    let value = log(sum) - Double(row[target] - top)
                    nll += value
                    nll2 += value * value
                    count += 1
                }
            }
            progress(c + 1, chunks, exp(nll / Double(count)))
        }
        let seconds = Timing.now() - start
        let mean = nll / Double(count)
        let variance = nll2 / Double(count) - mean * mean
        let ppl = exp(mean)
        let error = variance > 0 && count > 1 ? ppl * (variance / Double(count - 1)).squareRoot() : 0
        return PerplexityResult(perplexity: ppl, standardError: error, meanNLL: mean, tokensScored: count, chunks: chunks, seconds: seconds,
                                tokensPerSecond: Double(chunks * context) / seconds)
    }
}

public struct PerplexityError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ message: String) { description = message }
}
