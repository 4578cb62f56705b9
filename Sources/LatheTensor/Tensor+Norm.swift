import CLatheKernels

extension Tensor {
    /// Batch normalisation with batch statistics (training mode) over `[N, C, ...]`:
    /// `y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c`, biased variance over all
    /// dims but 1. Fused kernel with its own backward.
    ///
    /// - Returns: `y`, the batch mean `[C]` and the biased batch variance `[C]` (no autodiff on
    ///   the statistics; use them for running estimates).
    public func batchNormTraining(weight: Tensor?, bias: Tensor?, eps: Float) -> (output: Tensor, mean: Tensor, variance: Tensor) {
        precondition(rank >= 2, "batch_norm: expected [N, C, ...], got \(shape)")
        let (n, c) = (shape[0], shape[1]), hw = shape.dropFirst(2).reduce(1, *)
        precondition(n * hw > 1, "batch_norm: training needs more than one value per channel, got input \(shape)")
        if let weight { precondition(weight.shape == [c], "batch_norm: weight \(weight.shape) does not match \(c) channels of \(shape)") }
        if let bias { precondition(bias.shape == [c], "batch_norm: bias \(bias.shape) does not match \(c) channels of \(shape)") }
        let x = floatInput("batch_norm").contiguous().detached()
        let w = weight?.detached().contiguous(), b = bias?.detached().contiguous()
        let y = Tensor(uninitializedShape: shape)
        let mean = Tensor(uninitializedShape: [c]), invstd = Tensor(uninitializedShape: [c]), variance = Tensor(uninitializedShape: [c])
        let xp = x.floatPointer, yp = y.floatPointer, mp = mean.floatPointer, ip = invstd.floatPointer, vp = variance.floatPointer
        let wp = w?.floatPointer, bp = b?.floatPointer
        let grain = Swift.max(1, elementwiseGrain / Swift.max(n * hw, 1))
        ThreadPool.forChunks(c, grain: grain) { r in
            lathe_batchnorm_train_forward_f32(xp, n, c, hw, r.lowerBound, r.upperBound, wp, bp, eps, yp, mp, ip, vp)
        }
        var inputs = [self]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        let input = self
        let out = y.recorded("batch_norm", inputs) { g in
            // Keep the saved tensors alive for the raw pointers below.
            let (xp, mp, ip, wp) = (x.floatPointer, mean.floatPointer, invstd.floatPointer, w?.floatPointer)
            let gc = g.contiguous()
            let dx = input.requiresGrad ? Tensor(uninitializedShape: input.shape) : nil
            let dw = Tensor(uninitializedShape: [c]), db = Tensor(uninitializedShape: [c])
            let gp = gc.floatPointer, dxp = dx?.floatPointer, dwp = dw.floatPointer, dbp = db.floatPointer
            ThreadPool.forChunks(c, grain: grain) { r in
                lathe_batchnorm_train_backward_f32(gp, xp, n, c, hw, r.lowerBound, r.upperBound, mp, ip, wp, dxp, dwp, dbp)
            }
            var result: [Tensor?] = [dx]
            if weight != nil { result.append(dw) }
            if bias != nil { result.append(db) }
            return result
        }
        return (out, mean, variance)
    }

    /// Layer normalisation over the last dim: `y = (x - mean) / sqrt(var + eps) * weight + bias`
    /// (biased variance). Fused kernel with its own backward.
    public func layerNorm(weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
        let d = shape.last ?? 1
        if let weight { precondition(weight.shape == [d], "layer_norm: weight \(weight.shape) does not match last dim of \(shape)") }
        if let bias { precondition(bias.shape == [d], "layer_norm: bias \(bias.shape) does not match last dim of \(shape)") }
        let rows = count / Swift.max(d, 1)
        let x = floatInput("layer_norm").contiguous().detached()
        let w = weight?.detached().contiguous(), b = bias?.detached().contiguous()
        let y = Tensor(uninitializedShape: shape)
        let mean = Tensor(uninitializedShape: [rows]), rstd = Tensor(uninitializedShape: [rows])
        let xp = x.floatPointer, yp = y.floatPointer, mp = mean.floatPointer, rp = rstd.floatPointer
        let wp = w?.floatPointer, bp = b?.floatPointer
        let grain = Swift.max(1, elementwiseGrain / Swift.max(d, 1))
        ThreadPool.forChunks(rows, grain: grain) { r in
            lathe_layernorm_forward_f32(xp, d, r.lowerBound, r.upperBound, wp, bp, eps, yp, mp, rp)
        }
        var inputs = [self]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        let input = self
        return y.recorded("layer_norm", inputs) { g in
            // Keep the saved tensors alive for the raw pointers below.
            let (xp, mp, rp, wp) = (x.floatPointer, mean.floatPointer, rstd.floatPointer, w?.floatPointer)
            let gc = g.contiguous()
            let dx = input.requiresGrad ? Tensor(uninitializedShape: input.shape) : nil
            // Per-chunk partial sums for weight/bias, added in chunk order (deterministic).
            let chunks = (rows + grain - 1) / grain
            let partialW = Tensor.zeros([chunks, d]), partialB = Tensor.zeros([chunks, d])
            let gp = gc.floatPointer, dxp = dx?.floatPointer, pw = partialW.floatPointer, pb = partialB.floatPointer
            ThreadPool.forChunks(rows, grain: grain) { r in
                let k = r.lowerBound / grain
                lathe_layernorm_backward_f32(gp, xp, d, r.lowerBound, r.upperBound, mp, rp, wp, dxp, pw + k * d, pb + k * d)
            }
            var result: [Tensor?] = [dx]
            if weight != nil { result.append(partialW.sum(dim: 0)) }
            if bias != nil { result.append(partialB.sum(dim: 0)) }
            return result
        }
    }
}
