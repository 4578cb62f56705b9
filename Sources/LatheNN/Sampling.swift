import Foundation
import LatheTensor

/// How to pick the next token from a row of logits.
///
/// The logits are divided by `temperature`, turned into probabilities with a softmax, cut to
/// the `topK` most likely tokens, then to the nucleus of `topP` (the smallest set of most
/// likely tokens whose probabilities add up to at least `topP`), then to the tokens at least
/// `minP` times as likely as the most likely one, renormalised, and sampled.
/// Temperature 0 is greedy decoding (the most likely token; the first one on ties).
public struct SamplingOptions: Sendable, Equatable {
    public var temperature: Float
    /// Keep only the `topK` most likely tokens (nil or >= vocabulary: all).
    public var topK: Int?
    /// Keep only the nucleus of probability `topP` (nil or 1: all).
    public var topP: Float?
    /// Keep only tokens at least `minP` times as likely as the most likely one (nil or 0: all).
    public var minP: Float?

    public init(temperature: Float = 1, topK: Int? = nil, topP: Float? = nil, minP: Float? = nil) {
        precondition(temperature >= 0 && temperature.isFinite, "SamplingOptions: temperature must be finite and >= 0, got \(temperature)")
        precondition(topK == nil || topK! >= 1, "SamplingOptions: topK must be at least 1, got \(topK!)")
        precondition(topP == nil || (topP! > 0 && topP! <= 1), "SamplingOptions: topP must be in (0, 1], got \(topP!)")
        precondition(minP == nil || (minP! >= 0 && minP! <= 1), "SamplingOptions: minP must be in [0, 1], got \(minP!)")
        (self.temperature, self.topK, self.topP, self.minP) = (temperature, topK, topP, minP)
    }

    /// Greedy decoding.
    public static let greedy = SamplingOptions(temperature: 0)
}

public enum Sampling {
    /// Index of the largest value (the first on ties).
    public static func argmax(_ values: [Float]) -> Int {
        precondition(!values.isEmpty, "Sampling.argmax: no values")
        var best = 0
        for i in values.indices.dropFirst() where values[i] > values[best] { best = i }
        return best
    }

    /// Token indices by decreasing probability (ties: lower index first).
    static func order(_ p: [Float]) -> [Int] {
        p.indices.sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }
    }

    /// The tokens of the nucleus: the smallest set of most likely tokens whose probabilities
    /// (`probabilities` need not be normalised) add up to at least `p` of the total. Sorted by
    /// decreasing probability; always at least one token.
    public static func nucleus(_ probabilities: [Float], p: Float) -> [Int] {
        let sorted = order(probabilities)
        let total = probabilities.reduce(0, +)
        var cumulative: Float = 0
        for (n, i) in sorted.enumerated() {
            cumulative += probabilities[i]
            if cumulative >= p * total { return Array(sorted[...n]) }
        }
        return sorted
    }

    /// The distribution the token is drawn from (sums to 1): temperature, softmax, top-k, top-p.
    /// Temperature 0 gives a one-hot vector on the argmax.
    public static func probabilities(logits: [Float], options: SamplingOptions) -> [Float] {
        precondition(!logits.isEmpty, "Sampling: no logits")
        if options.temperature == 0 {
            var onehot = [Float](repeating: 0, count: logits.count)
            onehot[argmax(logits)] = 1
            return onehot
        }
        // Softmax of logits / temperature, in Double (-inf logits get probability 0).
        let scaled = logits.map { Double($0) / Double(options.temperature) }
        let top = scaled.max()!
        precondition(top.isFinite, "Sampling: the largest logit must be finite, got \(top)")
        var p = scaled.map { Float(exp($0 - top)) }
        var keep = p.map { $0 > 0 }
        if let k = options.topK, k < p.count {
            keep = [Bool](repeating: false, count: p.count)
            for i in order(p).prefix(k) { keep[i] = true }
        }
        if let topP = options.topP, topP < 1 {
            let candidates = p.enumerated().map { keep[$0.offset] ? $0.element : 0 }
            keep = [Bool](repeating: false, count: p.count)
            for i in nucleus(candidates, p: topP) { keep[i] = true }
        }
        if let minP = options.minP, minP > 0 {
            let top = p.indices.filter { keep[$0] }.map { p[$0] }.max() ?? 0
            for i in p.indices where p[i] < minP * top { keep[i] = false }
        }
        for i in p.indices where !keep[i] { p[i] = 0 }
        let sum = p.reduce(0, +)
        return p.map { $0 / sum }
    }

    /// Draws a token from `logits` (one row) with `options`; consumes one block of `generator`
    /// whatever the options, so runs with different options stay aligned.
    public static func sample(logits: [Float], options: SamplingOptions, generator: inout RandomGenerator) -> Int {
        let u = Tensor.uniform([1], generator: &generator).scalars[0]
        let p = probabilities(logits: logits, options: options)
        return draw(p, uniform: u)
    }

    /// The token whose cumulative-probability interval holds `u` in [0, 1) (skipping zeros).
    static func draw(_ p: [Float], uniform u: Float) -> Int {
        var cumulative: Float = 0, last = 0
        for i in p.indices where p[i] > 0 {
            cumulative += p[i]
            last = i
            if u < cumulative { return i }
        }
        return last  // rounding left the total just below u
    }
}

extension CharGPT {
    /// Continues `prompt` (token ids, at least one) by `maxNewTokens` tokens, each drawn from the
    /// model's next-token logits with ``Sampling`` (temperature, top-k, top-p; greedy at
    /// temperature 0). The model sees at most the last `config.context` tokens. Returns the
    /// prompt followed by the new tokens. The same generator state gives the same tokens.
    public func generate(_ prompt: [Int], maxNewTokens: Int, temperature: Float = 1, topK: Int? = nil, topP: Float? = nil,
                         generator: inout RandomGenerator) -> [Int] {
        generate(prompt, maxNewTokens: maxNewTokens, options: SamplingOptions(temperature: temperature, topK: topK, topP: topP),
                 generator: &generator)
    }

    /// ``generate(_:maxNewTokens:temperature:topK:topP:generator:)`` with the options as one value.
    public func generate(_ prompt: [Int], maxNewTokens: Int, options: SamplingOptions, generator: inout RandomGenerator) -> [Int] {
        precondition(!prompt.isEmpty, "CharGPT.generate: the prompt needs at least one token")
        precondition(prompt.allSatisfy { $0 >= 0 && $0 < config.vocab }, "CharGPT.generate: token ids must be in 0..<\(config.vocab)")
        precondition(maxNewTokens >= 0, "CharGPT.generate: maxNewTokens must be >= 0")
        let wasTraining = isTraining
        eval()
        defer { train(wasTraining) }
        var tokens = prompt
        noGrad {
            for _ in 0..<maxNewTokens {
                let window = Array(tokens.suffix(config.context))
                let logits = self(Tensor(window, shape: [1, window.count]))
                let last = logits.sliced(dim: 1, start: window.count - 1, end: window.count).scalars
                tokens.append(Sampling.sample(logits: last, options: options, generator: &generator))
            }
        }
        return tokens
    }
}
