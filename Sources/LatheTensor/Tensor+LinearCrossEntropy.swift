import CLatheKernels
import Foundation

extension Tensor {
    /// Mean cross-entropy of the rows of `self · weightᵀ` (logits) against `targets`, without
    /// ever holding the `[N, V]` logits: `loss = (1/n) Σ_i (logsumexp(z_i) - z_i[t_i])` over the
    /// `n` rows whose target is not `ignoreIndex`, with `z = x Wᵀ`.
    ///
    /// The same value as `crossEntropy(x.linear(weight: W), targets)` (transformers' causal-LM
    /// head and loss), computed a block of rows at a time. Because the loss is a scalar, the
    /// gradients are formed in the forward pass, block by block (`dz = (softmax(z) - onehot(t)) / n`,
    /// `dx = dz W`, `dW += dzᵀ x`), and the backward only scales them by the incoming gradient.
    /// So the memory held is one block of logits plus `dx` (`[N, K]`), not the logits, their
    /// log-softmax and their gradient (three `[N, V]` tensors, 100 MB each for 512 tokens of a
    /// 49,152-token vocabulary), and rows with an ignored target cost nothing. The head's
    /// GEMMs are the same two (three if `weight` requires a gradient) as the unfused path's.
    ///
    /// - Parameters:
    ///   - weight: `[V, K]` for `self` `[N, K]`.
    ///   - targets: `N` class ids in `0..<V`, or `ignoreIndex`.
    ///   - blockRows: rows per block of logits (default: about 32 MB of logits, at least 64 rows;
    ///     with a frozen weight, 1,024 rows, their logits a vocabulary chunk at a time).
    ///   - vocabularyChunk: with a frozen weight, the vocabulary columns per chunk (default: up to
    ///     4,096, about 8 MB of logits).
    /// - Returns: a scalar; NaN when every target is ignored (as PyTorch's mean).
    public func linearCrossEntropy(weight: Tensor, targets: [Int], ignoreIndex: Int = -100, blockRows: Int? = nil,
                                   vocabularyChunk: Int? = nil) -> Tensor {
        precondition(rank == 2 && weight.rank == 2 && shape[1] == weight.shape[1],
                     "linear_cross_entropy: input \(shape) and weight \(weight.shape) do not match (expected [N, K] and [V, K])")
        let (n, k, v) = (shape[0], shape[1], weight.shape[0])
        let kept = Tensor.keptRows(targets, rows: n, ignoreIndex: ignoreIndex, classes: v)
        let x = floatInput("linear_cross_entropy").detached().contiguous()
        let w = weight.floatInput("linear_cross_entropy").detached().contiguous()
        let wantX = GradMode.isEnabled && requiresGrad, wantW = GradMode.isEnabled && weight.requiresGrad
        let count = kept.count
        guard count > 0 else { return Tensor([Float.nan], shape: []) }
        let scale = 1 / Float(count)
        if !wantW {
            return Tensor.streamedCrossEntropy(x: x, vocabularySize: v, weight: .dense(w.floatPointer), input: self, recordedWeight: weight,
                                               targets: targets, kept: kept, wantX: wantX, blockRows: blockRows, vocabularyChunk: vocabularyChunk)
        }
        // A trained weight: its gradient needs each row's normalised probabilities, so a block of
        // rows at a time over the whole vocabulary.
        let dx = wantX ? Tensor.zeros([n, k]) : nil
        let dw = Tensor.zeros([v, k])
        let block = Swift.min(count, Swift.max(1, blockRows ?? Swift.max(64, (8 << 20) / Swift.max(v, 1))))
        let z = Tensor(uninitializedShape: [block, v])
        let xb = Tensor(uninitializedShape: [block, k]), dxb = Tensor(uninitializedShape: [block, k])
        let xp = x.floatPointer, wp = w.floatPointer, zp = z.floatPointer, xbp = xb.floatPointer, dxbp = dxb.floatPointer
        var rowLoss = [Float](repeating: 0, count: count)
        for start in stride(from: 0, to: count, by: block) {
            let rows = Swift.min(block, count - start)
            for r in 0..<rows { (xbp + r * k).update(from: xp + kept[start + r] * k, count: k) }
            lathe_sgemm(0, 1, rows, v, k, 1, xbp, k, wp, k, 0, zp, v)  // z = xb Wᵀ  [rows, V]
            rowLoss.withUnsafeMutableBufferPointer { lossp in
                ThreadPool.forChunks(rows, grain: Swift.max(1, elementwiseGrain / v)) { rr in
                    let o = zp + rr.lowerBound * v
                    lathe_softmax_f32(o, o, rr.count, v, 1)  // log-probabilities, in place
                    for r in rr {
                        let t = targets[kept[start + r]], zr = zp + r * v
                        lossp[start + r] = -zr[t]
                        lathe_unary_f32(Int32(LATHE_U_EXP.rawValue), zr, 1, zr, 1, v)  // probabilities
                        zr[t] -= 1
                    }
                }
            }
            if wantX {  // dx rows = (1/n) dz W
                lathe_sgemm(0, 0, rows, k, v, scale, zp, v, wp, k, 0, dxbp, k)
                let dp = dx!.floatPointer
                for r in 0..<rows { (dp + kept[start + r] * k).update(from: dxbp + r * k, count: k) }
            }
            lathe_sgemm(1, 0, v, k, rows, scale, zp, v, xbp, k, 1, dw.floatPointer, k)  // dW += (1/n) dzᵀ xb
        }
        var total: Float = 0
        for l in rowLoss { total += l }
        let loss = Tensor([total * scale], shape: [])
        return loss.recorded("linear_cross_entropy", [self, weight]) { g in
            let s = g.item
            return [dx.map { s == 1 ? $0 : $0 * s }, s == 1 ? dw : dw * s]
        }
    }

    /// ``linearCrossEntropy(weight:targets:ignoreIndex:blockRows:vocabularyChunk:)`` for a frozen
    /// `[vocabularySize, K]` weight that is not a float tensor (a quantized output head): `weightRows(v0,
    /// count, dst)` writes rows `v0..<v0 + count` as float32 into `dst` (row stride `K`), a chunk of
    /// the vocabulary at a time, so the float weight is never whole in memory. Gradient for `self` only.
    public func linearCrossEntropy(vocabularySize: Int, weightRows: @escaping (Int, Int, UnsafeMutablePointer<Float>) -> Void, targets: [Int],
                                   ignoreIndex: Int = -100, blockRows: Int? = nil, vocabularyChunk: Int? = nil) -> Tensor {
        precondition(rank == 2 && vocabularySize > 0, "linear_cross_entropy: input \(shape) should be [N, K], and the vocabulary non-empty")
        let kept = Tensor.keptRows(targets, rows: shape[0], ignoreIndex: ignoreIndex, classes: vocabularySize)
        guard !kept.isEmpty else { return Tensor([Float.nan], shape: []) }
        let x = floatInput("linear_cross_entropy").detached().contiguous()
        return Tensor.streamedCrossEntropy(x: x, vocabularySize: vocabularySize, weight: .rows(weightRows), input: self, recordedWeight: nil,
                                           targets: targets, kept: kept, wantX: GradMode.isEnabled && requiresGrad,
                                           blockRows: blockRows, vocabularyChunk: vocabularyChunk)
    }

    /// The rows whose target is not `ignoreIndex`; every other target must be a class id.
    static func keptRows(_ targets: [Int], rows n: Int, ignoreIndex: Int, classes v: Int) -> [Int] {
        precondition(targets.count == n, "linear_cross_entropy: \(targets.count) targets for \(n) rows")
        let kept = (0..<n).filter { targets[$0] != ignoreIndex }
        for i in kept { precondition(targets[i] >= 0 && targets[i] < v, "linear_cross_entropy: target \(targets[i]) out of range for \(v) classes") }
        return kept
    }

    /// Where a streamed cross-entropy reads the weight: a dense float matrix, or rows written on demand.
    enum StreamedWeight {
        case dense(UnsafePointer<Float>)
        case rows((Int, Int, UnsafeMutablePointer<Float>) -> Void)
    }

    /// ``linearCrossEntropy(weight:targets:ignoreIndex:blockRows:vocabularyChunk:)`` when the weight
    /// is frozen (adapter training): the vocabulary is streamed in chunks with an online softmax
    /// (a running maximum `m` and sum `s` per row, as flash attention does), so each chunk of the
    /// weight serves both products while it is in cache, all rows of a block at once:
    /// `z_c = x W_cᵀ`, `P_c = exp(z_c - m)`, `dx ← dx · exp(m_old - m) + P_c W_c`, and at the end
    /// `dx = (dx / s - W[t]) / n`, `loss = m + log s - z[t]`. The weight is read (and packed) once
    /// per direction for up to `blockRows` (default 1,024) rows, instead of once per block of
    /// ~170 rows, and the logits held are one chunk (`vocabularyChunk` columns, default up to
    /// 4,096, ~8 MB) instead of a block of rows over the whole vocabulary (25-33 MB).
    static func streamedCrossEntropy(x: Tensor, vocabularySize v: Int, weight: StreamedWeight, input: Tensor, recordedWeight: Tensor?,
                                     targets: [Int], kept: [Int], wantX: Bool, blockRows: Int?, vocabularyChunk: Int?) -> Tensor {
        let (n, k) = (x.shape[0], x.shape[1])
        let count = kept.count, scale = 1 / Float(count)
        let block = Swift.min(count, Swift.max(1, blockRows ?? 1024))
        let chunk = Swift.min(v, Swift.max(1, vocabularyChunk ?? Swift.min(4096, Swift.max(256, (2 << 20) / block))))
        let dx = wantX ? Tensor.zeros([n, k]) : nil
        let z = Tensor(uninitializedShape: [block, chunk])
        let xb = Tensor(uninitializedShape: [block, k]), dxb = Tensor(uninitializedShape: [block, k])
        // Each row's target row of the weight (for dx's -W[t]), caught while its chunk is at hand;
        // and, for a weight given by rows, the chunk's rows.
        let wt = Tensor(uninitializedShape: wantX ? [block, k] : [0])
        var rowsBuffer: Tensor? = nil
        if case .rows = weight { rowsBuffer = Tensor(uninitializedShape: [chunk, k]) }
        let xp = x.floatPointer, zp = z.floatPointer, xbp = xb.floatPointer, dxbp = dxb.floatPointer, wtp = wt.floatPointer
        // Per row of a block: running maximum, running sum, and the target's logit.
        let state = UnsafeMutablePointer<Float>.allocate(capacity: 3 * block)
        defer { state.deallocate() }
        let (mp, sp, tp) = (state, state + block, state + 2 * block)
        var total: Float = 0
        for start in stride(from: 0, to: count, by: block) {
            let rows = Swift.min(block, count - start)
            for r in 0..<rows { (xbp + r * k).update(from: xp + kept[start + r] * k, count: k) }
            mp.update(repeating: -.infinity, count: rows)
            sp.update(repeating: 0, count: rows)
            if wantX { dxbp.update(repeating: 0, count: rows * k) }
            for v0 in stride(from: 0, to: v, by: chunk) {
                let c = Swift.min(chunk, v - v0)
                let wc: UnsafePointer<Float>
                switch weight {
                case .dense(let wp): wc = wp + v0 * k
                case .rows(let fill):
                    let b = rowsBuffer!.floatPointer
                    fill(v0, c, b)
                    wc = UnsafePointer(b)
                }
                lathe_sgemm(0, 1, rows, c, k, 1, xbp, k, wc, k, 0, zp, c)  // z = xb W_cᵀ  [rows, c]
                ThreadPool.forChunks(rows, grain: Swift.max(1, elementwiseGrain / c)) { rr in
                    for r in rr {
                        let zr = zp + r * c, t = targets[kept[start + r]]
                        if t >= v0 && t < v0 + c {
                            tp[r] = zr[t - v0]
                            if wantX { (wtp + r * k).update(from: wc + (t - v0) * k, count: k) }
                        }
                        var top: Float = 0, sum: Float = 0
                        lathe_reduce_f32(Int32(LATHE_R_MAX.rawValue), zr, 1, c, 1, &top)
                        let m = Swift.max(mp[r], top)
                        let rescale = mp[r] == -.infinity ? 0 : Foundation.exp(mp[r] - m)
                        lathe_scale_shift_f32(c, 1, -m, zr, zr)
                        lathe_unary_f32(Int32(LATHE_U_EXP.rawValue), zr, 1, zr, 1, c)  // P = exp(z - m)
                        lathe_reduce_f32(Int32(LATHE_R_SUM.rawValue), zr, 1, c, 1, &sum)
                        sp[r] = sp[r] * rescale + sum
                        mp[r] = m
                        if wantX && rescale != 1 { lathe_scale_shift_f32(k, rescale, 0, dxbp + r * k, dxbp + r * k) }
                    }
                }
                if wantX { lathe_sgemm(0, 0, rows, k, c, 1, zp, c, wc, k, 1, dxbp, k) }  // dx += P W_c
            }
            for r in 0..<rows {
                total += mp[r] + Foundation.log(sp[r]) - tp[r]
                guard let dp = dx?.floatPointer else { continue }
                let row = dp + kept[start + r] * k
                lathe_scale_shift_f32(k, scale / sp[r], 0, dxbp + r * k, row)  // (dx / s) / n
                lathe_axpy_f32(k, -scale, wtp + r * k, row)  // - W[t] / n
            }
        }
        let loss = Tensor([total * scale], shape: [])
        return loss.recorded("linear_cross_entropy", [input] + (recordedWeight.map { [$0] } ?? [])) { g in
            let s = g.item
            return [dx.map { s == 1 ? $0 : $0 * s }] + (recordedWeight == nil ? [] : [nil])
        }
    }
}
