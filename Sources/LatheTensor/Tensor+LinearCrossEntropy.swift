import CLatheKernels

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
    ///   - blockRows: rows per block of logits (default: about 32 MB of logits, at least 64 rows).
    /// - Returns: a scalar; NaN when every target is ignored (as PyTorch's mean).
    public func linearCrossEntropy(weight: Tensor, targets: [Int], ignoreIndex: Int = -100, blockRows: Int? = nil) -> Tensor {
        precondition(rank == 2 && weight.rank == 2 && shape[1] == weight.shape[1],
                     "linear_cross_entropy: input \(shape) and weight \(weight.shape) do not match (expected [N, K] and [V, K])")
        let (n, k, v) = (shape[0], shape[1], weight.shape[0])
        precondition(targets.count == n, "linear_cross_entropy: \(targets.count) targets for \(n) rows")
        let kept = (0..<n).filter { targets[$0] != ignoreIndex }
        for i in kept { precondition(targets[i] >= 0 && targets[i] < v, "linear_cross_entropy: target \(targets[i]) out of range for \(v) classes") }
        let x = floatInput("linear_cross_entropy").detached().contiguous()
        let w = weight.floatInput("linear_cross_entropy").detached().contiguous()
        let wantX = GradMode.isEnabled && requiresGrad, wantW = GradMode.isEnabled && weight.requiresGrad
        let count = kept.count
        guard count > 0 else { return Tensor([Float.nan], shape: []) }
        let scale = 1 / Float(count)
        let dx = wantX ? Tensor.zeros([n, k]) : nil
        let dw = wantW ? Tensor.zeros([v, k]) : nil
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
                        guard wantX || wantW else { continue }
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
            if wantW {  // dW += (1/n) dzᵀ xb
                lathe_sgemm(1, 0, v, k, rows, scale, zp, v, xbp, k, 1, dw!.floatPointer, k)
            }
        }
        var total: Float = 0
        for l in rowLoss { total += l }
        let loss = Tensor([total * scale], shape: [])
        return loss.recorded("linear_cross_entropy", [self, weight]) { g in
            let s = g.item
            return [dx.map { s == 1 ? $0 : $0 * s }, dw.map { s == 1 ? $0 : $0 * s }]
        }
    }
}
