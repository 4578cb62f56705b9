import CLatheKernels
import Foundation
import LatheCompress
import LatheNN
import LatheTensor

/// Input the training forward cannot use.
public struct TrainingInputError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension DecoderModel {
    /// The logits of a batch of token rows, `[B, T, vocab]`, computed from tensor ops that record
    /// the autograd graph (the inference path, ``logits(_:cache:lastOnly:)``, computes the same
    /// numbers on plain arrays with a key/value cache and records nothing).
    ///
    /// Attention is causal within each row (and within each segment when `segmentIDs` is given:
    /// a token attends only to earlier tokens of its own segment, and positions restart at 0 at
    /// each segment, so several sequences can be packed into one row), with the model's sliding
    /// windows and soft-capping. Each head forms its `[T, T]` score matrix, so memory grows with
    /// `B · heads · T²`.
    ///
    /// - Parameters:
    ///   - ids: `[B, T]` token ids (int64 or int32).
    ///   - segmentIDs: `[B, T]` integers, equal for the tokens of one packed sequence.
    /// Quantized layers (``WeightOnlyLinear``, as `load(gguf:quantized: true)` gives them, and a
    /// quantized tied output projection) stay quantized and frozen and pass gradients to their
    /// inputs, so adapters wrapped around them or before them train (QLoRA).
    ///
    /// - Throws: ``TrainingInputError`` for ids out of the vocabulary or bad shapes.
    public func trainingLogits(_ ids: Tensor, segmentIDs: Tensor? = nil) throws -> Tensor {
        let (b, t) = try checkTrainingInput(ids, segmentIDs: segmentIDs)
        let h = trainingHiddenStates(ids, segmentIDs: segmentIDs, rows: b, length: t)
        return outputLogits(h.reshaped([b * t, config.hiddenSize])).reshaped([b, t, config.vocabularySize])
    }

    /// The final-norm hidden states `[B, T, hidden]` of checked input, recording gradients.
    func trainingHiddenStates(_ ids: Tensor, segmentIDs: Tensor?, rows b: Int, length t: Int) -> Tensor {
        let c = config
        let positions = segmentIDs.map { Self.segmentPositions($0.intScalars, rows: b, length: t) }
        var x = model.$embedTokens(ids.to(.int64))
        if let scale = c.embeddingScale { x = x * scale }
        let segments = segmentIDs?.intScalars
        var masks: [Int?: Tensor] = [:]  // one per window size
        for (i, layer) in model.layers.enumerated() {
            let window = c.window(layer: i)
            let mask = masks[window] ?? Self.attentionMask(rows: b, length: t, window: window, segments: segments)
            masks[window] = mask
            let (cos, sin) = rotaries[i].tables(positions: positions, rows: b, length: t)
            x = layer.trainingForward(x, mask: mask, cos: cos, sin: sin, rotary: rotaries[i], config: c)
        }
        return model.norm(x)
    }

    /// The output projection (with final soft-capping) of hidden states `[N, hidden]`: `[N, vocab]`.
    func outputLogits(_ h: Tensor) -> Tensor {
        let logits = $lmHead.module.map { $0(h) } ?? tiedHead.module.map { $0(h) } ?? h.linear(weight: model.embeddingTable)
        guard let cap = config.finalLogitSoftcap else { return logits }
        return (logits / cap).tanh() * cap
    }

    /// Mean next-token cross-entropy of `ids` against `labels` (both `[B, T]`), as transformers'
    /// causal-LM loss: position `t` predicts `labels[t + 1]`, labels of -100 count for nothing.
    /// With a plain float output matrix, or a quantized one without bias (dequantised a chunk of
    /// the vocabulary at a time), and no final soft-capping, the head and the loss are one op
    /// (``LatheTensor/Tensor/linearCrossEntropy(weight:targets:ignoreIndex:blockRows:vocabularyChunk:)``)
    /// that never holds the `[B·T, vocab]` logits; otherwise the loss is taken on ``trainingLogits(_:segmentIDs:)``.
    /// - Throws: ``TrainingInputError`` also when no label is left to predict.
    public func loss(_ ids: Tensor, labels: Tensor, segmentIDs: Tensor? = nil) throws -> Tensor {
        guard labels.shape == ids.shape else { throw TrainingInputError("labels \(labels.shape) and ids \(ids.shape) differ in shape") }
        let l = labels.intScalars, t = ids.shape.last ?? 0
        guard l.enumerated().contains(where: { $0.offset % t != 0 && $0.element != -100 }) else {
            throw TrainingInputError("every label after the first position of each row is -100: nothing to predict")
        }
        for v in l where v != -100 && (v < 0 || v >= config.vocabularySize) {
            throw TrainingInputError("label \(v) is outside the vocabulary (0..<\(config.vocabularySize)) and is not -100")
        }
        let (b, _) = try checkTrainingInput(ids, segmentIDs: segmentIDs)
        let h = trainingHiddenStates(ids, segmentIDs: segmentIDs, rows: b, length: t).reshaped([b * t, config.hiddenSize])
        let targets = l.indices.map { $0 % t == t - 1 ? -100 : l[$0 + 1] }  // position j predicts labels[j + 1]
        // The head and the loss as one op that never holds the [B·T, vocab] logits, where it can be.
        return fusedHeadLoss(h, targets: targets)
            ?? Loss.nextTokenCrossEntropy(outputLogits(h).reshaped([b, t, config.vocabularySize]), labels: labels)
    }

    /// A quantized output projection without bias and soft-capping (QLoRA on a GGUF file, whose tied
    /// head stays quantized), which the fused loss dequantises a vocabulary chunk at a time.
    private var quantizedHead: WeightOnlyLinear? {
        guard config.finalLogitSoftcap == nil, let q = ($lmHead.module ?? tiedHead.module) as? WeightOnlyLinear, q.bias == nil else { return nil }
        return q
    }

    /// The mean cross-entropy of final hidden states `h` `[N, hidden]` against `targets` (-100
    /// ignored) through the output head, as one op that never holds the `[N, vocab]` logits
    /// (``LatheTensor/Tensor/linearCrossEntropy(weight:targets:ignoreIndex:blockRows:vocabularyChunk:)``);
    /// nil when the head is neither a plain float matrix nor a quantized one (``quantizedHead``).
    func fusedHeadLoss(_ h: Tensor, targets: [Int]) -> Tensor? {
        if let head = fusableHeadWeight { return h.linearCrossEntropy(weight: head, targets: targets) }
        guard let q = quantizedHead else { return nil }
        // The float product the unfused path's GEMM computes for more than a few rows.
        let weights = q.weight, (v, k) = (weights.rows, weights.cols)
        return h.linearCrossEntropy(vocabularySize: v, weightRows: { v0, count, dst in
            weights.withMatrix { m in
                ThreadPool.forChunks(count, grain: 256) { rr in
                    lathe_wq_dequantize(m, v, k, v0 + rr.lowerBound, v0 + rr.upperBound, dst + rr.lowerBound * k, k)
                }
            }
        }, targets: targets)
    }

    /// The output projection's weight `[vocab, hidden]` when the head is a plain float matrix
    /// without soft-capping (then ``loss(_:labels:segmentIDs:)`` fuses head and loss), else nil.
    var fusableHeadWeight: Tensor? {
        guard config.finalLogitSoftcap == nil else { return nil }
        if let head = $lmHead.module {
            guard let linear = head as? Linear, linear.bias == nil else { return nil }
            return linear.weight.value
        }
        guard tiedHead.module == nil, model.embedTokens is Embedding else { return nil }
        return model.embeddingTable
    }

    func checkTrainingInput(_ ids: Tensor, segmentIDs: Tensor?) throws -> (Int, Int) {
        guard ids.rank == 2, ids.shape[0] > 0, ids.shape[1] > 0 else { throw TrainingInputError("ids must be [B, T] with B, T > 0, got \(ids.shape)") }
        guard ids.dtype == .int64 || ids.dtype == .int32 else { throw TrainingInputError("ids must be int64 or int32, got \(ids.dtype)") }
        if let bad = ids.intScalars.first(where: { $0 < 0 || $0 >= config.vocabularySize }) {
            throw TrainingInputError("token id \(bad) is outside the vocabulary (0..<\(config.vocabularySize))")
        }
        if let s = segmentIDs, s.shape != ids.shape { throw TrainingInputError("segment ids \(s.shape) and ids \(ids.shape) differ in shape") }
        return (ids.shape[0], ids.shape[1])
    }

    /// Per row, each token's position within its segment.
    static func segmentPositions(_ segments: [Int], rows: Int, length: Int) -> [Int] {
        var out = [Int](repeating: 0, count: rows * length)
        for r in 0..<rows {
            for j in 1..<Swift.max(length, 1) {
                let i = r * length + j
                out[i] = segments[i] == segments[i - 1] ? out[i - 1] + 1 : 0
            }
        }
        return out
    }

    /// Additive mask, `[T, T]` (or `[B, 1, T, T]` with segments): 0 where query `i` may see key
    /// `j` (`j <= i`, within the window, same segment), -infinity elsewhere.
    static func attentionMask(rows: Int, length t: Int, window: Int?, segments: [Int]?) -> Tensor {
        let blocks = segments == nil ? 1 : rows
        var m = [Float](repeating: -.infinity, count: blocks * t * t)
        for r in 0..<blocks {
            for i in 0..<t {
                for j in 0...i {
                    if let w = window, j <= i - w { continue }
                    if let s = segments, s[r * t + i] != s[r * t + j] { continue }
                    m[(r * t + i) * t + j] = 0
                }
            }
        }
        return segments == nil ? Tensor(m, shape: [t, t]) : Tensor(m, shape: [rows, 1, t, t])
    }
}

extension Rotary {
    /// cos and sin tables for ``applied(to:cos:sin:)``: `[T, headDim]` (halves) or `[T, headDim/2]`
    /// (pairs) for positions `0..<T`, or `[B, 1, T, ...]` for per-token `positions`. The angles are
    /// those of ``apply(_:rows:heads:start:)`` (float32 `position · frequency`).
    public func tables(positions: [Int]?, rows: Int, length: Int) -> (cos: Tensor, sin: Tensor) {
        let half = headDim / 2, width = layout == .halves ? headDim : half
        let count = positions == nil ? length : rows * length
        var c = [Float](repeating: 0, count: count * width), s = c
        for p in 0..<count {
            let position = Float(positions?[p] ?? p)
            for i in 0..<half {
                let angle = position * inverseFrequencies[i]
                let (cv, sv) = (Foundation.cos(angle), Foundation.sin(angle))
                c[p * width + i] = cv; s[p * width + i] = sv
                if layout == .halves { c[p * width + half + i] = cv; s[p * width + half + i] = sv }
            }
        }
        let shape = positions == nil ? [length, width] : [rows, 1, length, width]
        return (Tensor(c, shape: shape), Tensor(s, shape: shape))
    }

    /// Rotates `x` `[B, heads, T, headDim]` with tables from ``tables(positions:rows:length:)``,
    /// differentiably: halves `x cos + rotate_half(x) sin`; pairs `(a, b) -> (a cos - b sin, b cos + a sin)`.
    public func applied(to x: Tensor, cos: Tensor, sin: Tensor) -> Tensor {
        let half = headDim / 2
        switch layout {
        case .halves:
            // One recorded op that keeps only the tables for its backward (the composed ops would
            // keep x and rotate_half(x)): dx = g cos + rotate_half^T(g sin), rotate_half^T(u) = (u2, -u1).
            func rotatedHalf(_ y: Tensor) -> Tensor {
                Tensor.concatenated([-y.sliced(dim: -1, start: half), y.sliced(dim: -1, end: half)], dim: -1)
            }
            let y = noGrad { x * cos + rotatedHalf(x) * sin }
            return y.recorded("rotary", [x]) { g in
                let u = g * sin
                return [g * cos + Tensor.concatenated([u.sliced(dim: -1, start: half), -u.sliced(dim: -1, end: half)], dim: -1)]
            }
        case .pairs:
            let p = x.reshaped(Array(x.shape.dropLast()) + [half, 2])
            let a = p.sliced(dim: -1, end: 1).squeezed(-1), b = p.sliced(dim: -1, start: 1).squeezed(-1)
            return Tensor.stacked([a * cos - b * sin, b * cos + a * sin], dim: -1).reshaped(x.shape)
        }
    }
}

extension DecoderLayer {
    /// ``forward(_:start:cache:layer:rotary:config:)`` for `[B, T, hidden]` rows from position 0,
    /// without a cache, from ops that record gradients.
    func trainingForward(_ x: Tensor, mask: Tensor, cos: Tensor, sin: Tensor, rotary: Rotary, config c: DecoderConfig) -> Tensor {
        let (b, t) = (x.shape[0], x.shape[1])
        let h = inputLayernorm(x)
        func heads(_ y: Tensor, _ n: Int, _ norm: DecoderNorm?) -> Tensor {
            var y = y.reshaped([b, t, n, c.headDim])
            if let norm { y = norm(y) }
            return rotary.applied(to: y.permuted([0, 2, 1, 3]), cos: cos, sin: sin)
        }
        let q = heads(selfAttn.$qProj(h), c.heads, selfAttn.qNorm)
        let k = heads(selfAttn.$kProj(h), c.kvHeads, selfAttn.kNorm)
        let v = selfAttn.$vProj(h).reshaped([b, t, c.kvHeads, c.headDim]).permuted([0, 2, 1, 3])
        // Grouped-query attention: each key/value head serves `group` query heads, whose rows are
        // stacked ([B, kvHeads, group·T, headDim]) so that k and v are never repeated (nor kept
        // repeated for the backward).
        let group = c.heads / c.kvHeads, rows = group * t
        var scores = q.reshaped([b, c.kvHeads, rows, c.headDim]).matmul(k.transposed(-1, -2))
            * (c.queryScale ?? 1 / Float(c.headDim).squareRoot())
        if let cap = c.attentionLogitSoftcap { scores = (scores / cap).tanh() * cap }
        let probs = (scores.reshaped([b, c.heads, t, t]) + mask).softmax(dim: -1)
        let attended = probs.reshaped([b, c.kvHeads, rows, t]).matmul(v).reshaped([b, c.heads, t, c.headDim])
            .permuted([0, 2, 1, 3]).reshaped([b, t, c.heads * c.headDim])
        let a = selfAttn.$oProj(attended)
        if let pre = preFeedforwardLayernorm, let post = postFeedforwardLayernorm {
            let y = x + postAttentionLayernorm(a)
            return y + post(mlp(pre(y)))
        }
        let y = x + a
        return y + mlp(postAttentionLayernorm(y))
    }
}
