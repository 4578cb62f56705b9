import Foundation
import LatheTensor

/// Two models on the same chunks, as llama-perplexity's KL-divergence mode compares a model
/// with a reference: both perplexities, the KL divergence of the model's next-token
/// distribution from the reference's at every scored position, how the probability of the
/// correct token moves, and how often both models pick the same top token.
public struct KLResult: Sendable, Equatable {
    public var perplexity: PerplexityResult
    public var referencePerplexity: PerplexityResult
    /// KL(reference || model) per scored token, in nats, sorted.
    public var klDivergences: [Double]
    /// p_model(correct) - p_reference(correct) per scored token, sorted.
    public var probabilityDeltas: [Double]
    /// The share of scored positions where both models' most likely token is the same.
    public var sameTopToken: Double

    public var meanKL: Double { klDivergences.reduce(0, +) / Double(max(klDivergences.count, 1)) }
    public var meanDelta: Double { probabilityDeltas.reduce(0, +) / Double(max(probabilityDeltas.count, 1)) }
    public var rmsDelta: Double { (probabilityDeltas.map { $0 * $0 }.reduce(0, +) / Double(max(probabilityDeltas.count, 1))).squareRoot() }

    /// The value below which `fraction` of a sorted list lies (nearest rank).
    public static func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let i = Int((fraction * Double(sorted.count - 1)).rounded())
        return sorted[min(max(i, 0), sorted.count - 1)]
    }
}

extension Perplexity {
    /// ``evaluate(_:tokens:context:bos:progress:)`` for `model` and `reference` on the same
    /// chunks, with the KL statistics of ``KLResult``. The models must share the vocabulary.
    public static func compare(_ model: LanguageModel, reference: LanguageModel, tokens: [Int], context: Int, bos: Int?,
                               progress: (Int, Int, Double) -> Void = { _, _, _ in }) throws -> KLResult {
        guard model.vocabularySize == reference.vocabularySize else {
            throw PerplexityError("the models' vocabularies differ (\(model.vocabularySize) and \(reference.vocabularySize) tokens): compare models of the same tokenizer")
        }
        guard context >= 4 else { throw PerplexityError("the context must be at least 4 tokens, got \(context)") }
        guard context <= min(model.maxPositions, reference.maxPositions) else {
            throw PerplexityError("the context \(context) is longer than a model's \(min(model.maxPositions, reference.maxPositions)) positions")
        }
        let chunks = tokens.count / context
        guard chunks >= 1 else {
            throw PerplexityError("the text has \(tokens.count) tokens; at least one chunk of the context (\(context)) is needed")
        }
        let first = context / 2, v = model.vocabularySize
        var nll = [0.0, 0.0], nll2 = [0.0, 0.0], seconds = [0.0, 0.0]
        var kls: [Double] = [], deltas: [Double] = [], same = 0
        let caches = [model.makeCache(capacity: context), reference.makeCache(capacity: context)]
        for c in 0..<chunks {
            var chunk = Array(tokens[(c * context)..<((c + 1) * context)])
            if let bos { chunk[0] = bos }
            var logits: [Tensor] = []
            for (i, m) in [model, reference].enumerated() {
                caches[i].reset()
                let t0 = Timing.now()
                logits.append(m.logits(chunk, cache: caches[i], lastOnly: false))
                seconds[i] += Timing.now() - t0
            }
            logits[0].withUnsafeBufferPointer { a in
                logits[1].withUnsafeBufferPointer { b in
                    for j in first..<(context - 1) {
                        let target = tokens[c * context + j + 1]
                        // log-softmax of both rows, in double.
                        var logZ = [0.0, 0.0], argmax = [0, 0]
                        for (i, p) in [a, b].enumerated() {
                            let row = p.baseAddress! + j * v
                            var top = -Float.infinity
                            for t in 0..<v where row[t] > top { top = row[t]; argmax[i] = t }
                            var sum = 0.0
                            for t in 0..<v { sum += exp(Double(row[t] - top)) }
                            logZ[i] = Double(top) + log(sum)
                        }
                        let ra = a.baseAddress! + j * v, rb = b.baseAddress! + j * v
                        var kl = 0.0
                        for t in 0..<v {
                            let lq = Double(rb[t]) - logZ[1], lp = Double(ra[t]) - logZ[0]
                            kl += exp(lq) * (lq - lp)
                        }
                        kls.append(max(kl, 0))
                        let lpm = Double(ra[target]) - logZ[0], lpr = Double(rb[target]) - logZ[1]
                        deltas.append(exp(lpm) - exp(lpr))
                        if argmax[0] == argmax[1] { same += 1 }
                        nll[0] -= lpm; nll2[0] += lpm * lpm
                        nll[1] -= lpr; nll2[1] += lpr * lpr
                    }
                }
            }
            progress(c + 1, chunks, exp(nll[0] / Double(kls.count)))
        }
        let count = kls.count
        func result(_ i: Int) -> PerplexityResult {
            let mean = nll[i] / Double(count), variance = nll2[i] / Double(count) - mean * mean
            let ppl = exp(mean)
            return PerplexityResult(perplexity: ppl, standardError: variance > 0 && count > 1 ? ppl * (variance / Double(count - 1)).squareRoot() : 0,
                                    meanNLL: mean, tokensScored: count, chunks: chunks, seconds: seconds[i],
                                    tokensPerSecond: Double(chunks * context) / max(seconds[i], 1e-9))
        }
        return KLResult(perplexity: result(0), referencePerplexity: result(1), klDivergences: kls.sorted(),
                        probabilityDeltas: deltas.sorted(), sameTopToken: Double(same) / Double(max(count, 1)))
    }
}
