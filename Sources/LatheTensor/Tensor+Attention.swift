import CLatheKernels

extension Tensor {
    /// Causal multi-head self-attention on packed projections, fused (one kernel forward, one
    /// backward): `self` is `[B, T, 3D]` holding queries, keys and values side by side (as a
    /// `Linear(D, 3D)` makes them), split into `heads` heads of `D / heads` features.
    ///
    /// Each head computes `softmax(scale * rope(q) rope(k)^T + causal mask) v`, and the heads
    /// are joined back to `[B, T, D]`; `scale` defaults to `1/sqrt(D / heads)`. `cos` and `sin`
    /// (`[T, D / heads]`, the "rotate half" layout of ``RotaryEmbedding``-style tables) rotate
    /// q and k; pass neither for no rotation.
    ///
    /// The same as the composed ops (split, reshape, permute, rotate, matmul, mask, softmax,
    /// matmul, permute, reshape) up to rounding, without their temporaries.
    public func causalSelfAttention(heads: Int, cos: Tensor? = nil, sin: Tensor? = nil, scale: Float? = nil) -> Tensor {
        precondition(rank == 3 && shape[2] % 3 == 0, "causal_attention: expected packed qkv [B, T, 3D], got \(shape)")
        let (b, t, d) = (shape[0], shape[1], shape[2] / 3)
        precondition(heads >= 1 && d % heads == 0, "causal_attention: D = \(d) is not divisible by \(heads) heads")
        let hd = d / heads
        precondition((cos == nil) == (sin == nil), "causal_attention: pass both cos and sin tables, or neither")
        if let cos, let sin {
            precondition(hd % 2 == 0, "causal_attention: rotary tables need an even head dim, got \(hd)")
            precondition(cos.shape == [t, hd] && sin.shape == [t, hd],
                         "causal_attention: rotary tables \(cos.shape), \(sin.shape) should be [\(t), \(hd)]")
        }
        let s = scale ?? 1 / Float(hd).squareRoot()
        let qkv = floatInput("causal_attention").contiguous().detached()
        let c = cos?.floatInput("causal_attention").contiguous().detached()
        let sn = sin?.floatInput("causal_attention").contiguous().detached()
        let y = Tensor(uninitializedShape: [b, t, d])
        let p = Tensor(uninitializedShape: [b, heads, t, t])
        let items = b * heads
        if items > 0 && t > 0 {
            let xp = qkv.floatPointer, cp = c?.floatPointer, sp = sn?.floatPointer, yp = y.floatPointer, pp = p.floatPointer
            ThreadPool.forEach(items) { i in
                let rc = lathe_attention_forward_f32(xp, cp, sp, b, t, heads, hd, s, i, i + 1, yp, pp)
                precondition(rc == 0, "causal_attention: out of memory")
            }
        }
        return y.recorded("causal_attention", [self]) { g in
            let gc = g.contiguous()
            let dqkv = Tensor(uninitializedShape: [b, t, 3 * d])
            if items > 0 && t > 0 {
                let xp = qkv.floatPointer, cp = c?.floatPointer, sp = sn?.floatPointer, pp = p.floatPointer
                let gp = gc.floatPointer, dp = dqkv.floatPointer
                ThreadPool.forEach(items) { i in
                    let rc = lathe_attention_backward_f32(gp, xp, pp, cp, sp, b, t, heads, hd, s, i, i + 1, dp)
                    precondition(rc == 0, "causal_attention: out of memory")
                }
            }
            return [dqkv]
        }
    }
}
