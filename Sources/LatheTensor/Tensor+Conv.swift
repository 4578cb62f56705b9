import CLatheKernels

/// Geometry of a 2-D convolution window sliding over an input plane.
struct ConvGeometry {
    var inH: Int, inW: Int, kh: Int, kw: Int
    var sh: Int, sw: Int, ph: Int, pw: Int, dh: Int, dw: Int
    var outH: Int, outW: Int

    var c: lathe_conv_geometry {
        lathe_conv_geometry(in_h: inH, in_w: inW, kh: kh, kw: kw, sh: sh, sw: sw, ph: ph, pw: pw, dh: dh, dw: dw,
                            out_h: outH, out_w: outW)
    }

    /// Small planes go through the padded-plane kernels (whole planes per task; their col2im
    /// writes the planes instead of adding to them).
    var small: Bool {
        var g = self.c
        return lathe_conv_small_ok(&g) != 0
    }

    /// Unfolds channels `c0..<c0+channels` of `x` [N, C, inH, inW] (contiguous) into
    /// `cols` [channels*kh*kw, N*outH*outW]; out-of-bounds taps read 0.
    func im2col(_ x: UnsafePointer<Float>, n: Int, c: Int, c0: Int, channels: Int, cols: UnsafeMutablePointer<Float>) {
        var g = self.c
        if small {
            let grain = Swift.max(1, elementwiseGrain / Swift.max(kh * kw * outH * outW, 1))
            ThreadPool.forChunks(n * channels, grain: grain) { r in
                lathe_im2col_small_f32(x, n, c, c0, channels, &g, r.lowerBound, r.upperBound, cols)
            }
            return
        }
        let rows = channels * kh * kw
        let grain = Swift.max(1, elementwiseGrain / Swift.max(n * outH * outW, 1))
        ThreadPool.forChunks(rows, grain: grain) { r in
            lathe_im2col_f32(x, n, c, c0, &g, r.lowerBound, r.upperBound, cols)
        }
    }

    /// Adds `cols` [channels*kh*kw, N*outH*outW] back into channels `c0..` of `x`
    /// [N, C, inH, inW] (the adjoint of ``im2col``); for ``small`` planes, writes them
    /// (the same bits as adding into zeros). One task per group of (image, channel) planes,
    /// so no two tasks write the same memory.
    func col2im(_ cols: UnsafePointer<Float>, n: Int, c: Int, c0: Int, channels: Int, x: UnsafeMutablePointer<Float>) {
        var g = self.c
        let grain = Swift.max(1, elementwiseGrain / Swift.max(kh * kw * outH * outW, 1))
        let small = self.small
        ThreadPool.forChunks(n * channels, grain: grain) { r in
            if small {
                lathe_col2im_small_f32(cols, n, c, c0, channels, &g, r.lowerBound, r.upperBound, x)
            } else {
                lathe_col2im_f32(cols, n, c, c0, channels, &g, r.lowerBound, r.upperBound, x)
            }
        }
    }

    /// A tensor for ``col2im`` to fill: zeros, or uninitialised when every plane is written.
    func col2imTarget(_ shape: [Int]) -> Tensor {
        small ? Tensor(uninitializedShape: shape) : Tensor.zeros(shape)
    }
}

extension Tensor {
    /// 2-D convolution (cross-correlation, as PyTorch's `conv2d`).
    ///
    /// - Parameters:
    ///   - weight: `[outChannels, inChannels / groups, kh, kw]`.
    ///   - bias: `[outChannels]` or nil.
    ///   - stride, padding, dilation: `(h, w)`; padding is zeros.
    ///   - groups: channels split into this many independent groups.
    /// - Returns: `[N, outChannels, outH, outW]` with
    ///   `outH = (H + 2 ph - dh (kh - 1) - 1) / sh + 1`.
    ///
    /// Computed as im2col and one GEMM per group over the whole batch.
    public func conv2d(weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                       dilation: (Int, Int) = (1, 1), groups: Int = 1) -> Tensor {
        precondition(rank == 4 && weight.rank == 4, "conv2d: expected input [N,C,H,W] and weight [O,C/g,kh,kw], got \(shape) and \(weight.shape)")
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let (o, cg, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
        precondition(groups >= 1 && c % groups == 0 && o % groups == 0 && cg == c / groups,
                     "conv2d: input \(shape) and weight \(weight.shape) do not match with groups = \(groups)")
        if let bias { precondition(bias.shape == [o], "conv2d: bias shape \(bias.shape) should be [\(o)]") }
        let outH = (h + 2 * padding.0 - dilation.0 * (kh - 1) - 1) / stride.0 + 1
        let outW = (w + 2 * padding.1 - dilation.1 * (kw - 1) - 1) / stride.1 + 1
        precondition(outH > 0 && outW > 0, "conv2d: input \(shape) is smaller than kernel \(weight.shape) (with padding/dilation)")
        let geo = ConvGeometry(inH: h, inW: w, kh: kh, kw: kw, sh: stride.0, sw: stride.1, ph: padding.0, pw: padding.1,
                               dh: dilation.0, dw: dilation.1, outH: outH, outW: outW)
        let x = floatInput("conv2d").contiguous().detached()
        let wt = weight.floatInput("conv2d").contiguous().detached()
        let og = o / groups, kdim = cg * kh * kw, l = outH * outW, nl = n * l
        let cols = Tensor(uninitializedShape: [groups, kdim, nl])
        let y = Tensor(uninitializedShape: [groups, og, nl])
        for g in 0..<groups {
            geo.im2col(x.floatPointer, n: n, c: c, c0: g * cg, channels: cg, cols: cols.floatPointer + g * kdim * nl)
            lathe_sgemm(0, 0, og, nl, kdim, 1, wt.floatPointer + g * og * kdim, kdim,
                        cols.floatPointer + g * kdim * nl, nl, 0, y.floatPointer + g * og * nl, nl)
        }
        // [groups, og, N, L] -> [N, O, outH, outW], plus the bias, in one pass
        let out = Tensor(uninitializedShape: [n, o, outH, outW])
        let bc = bias?.floatInput("conv2d").detached().contiguous()
        do {
            let yp = y.floatPointer, op = out.floatPointer, bp = bc?.floatPointer
            ThreadPool.forChunks(n, grain: Swift.max(1, elementwiseGrain / Swift.max(o * l, 1))) { r in
                lathe_swap01_f32(yp, o, n, l, bp, r.lowerBound, r.upperBound, op)
            }
        }
        let input = self
        var inputs = [self, weight]
        if let bias { inputs.append(bias) }
        return out.detached().recorded("conv2d", inputs) { grad in
            // [N, O, L] -> [groups, og, N*L]
            let gc = grad.contiguousStorageView()
            let gy = Tensor(uninitializedShape: [o, n * l])
            do {
                let gp = gc.floatPointer, yp = gy.floatPointer
                ThreadPool.forChunks(o, grain: Swift.max(1, elementwiseGrain / Swift.max(n * l, 1))) { r in
                    lathe_swap01_f32(gp, n, o, l, nil, r.lowerBound, r.upperBound, yp)
                }
            }
            var dx: Tensor? = nil, dw: Tensor? = nil
            if input.requiresGrad {
                let dcols = Tensor(uninitializedShape: [groups, kdim, nl])
                for g in 0..<groups {
                    lathe_sgemm(1, 0, kdim, nl, og, 1, wt.floatPointer + g * og * kdim, kdim,
                                gy.floatPointer + g * og * nl, nl, 0, dcols.floatPointer + g * kdim * nl, nl)
                }
                let d = geo.col2imTarget([n, c, h, w])
                for g in 0..<groups {
                    geo.col2im(dcols.floatPointer + g * kdim * nl, n: n, c: c, c0: g * cg, channels: cg, x: d.floatPointer)
                }
                dx = d
            }
            if weight.requiresGrad {
                let d = Tensor(uninitializedShape: weight.shape)
                for g in 0..<groups {
                    lathe_sgemm(0, 1, og, kdim, nl, 1, gy.floatPointer + g * og * nl, nl,
                                cols.floatPointer + g * kdim * nl, nl, 0, d.floatPointer + g * og * kdim, kdim)
                }
                dw = d
            }
            var result: [Tensor?] = [dx, dw]
            if let bias { result.append(bias.requiresGrad ? gy.sum(dims: [1]) : nil) }
            return result
        }
    }

    /// Transposed 2-D convolution (PyTorch's `conv_transpose2d`), the adjoint of
    /// ``conv2d(weight:bias:stride:padding:dilation:groups:)`` with respect to its input.
    ///
    /// - Parameters:
    ///   - weight: `[inChannels, outChannels / groups, kh, kw]`.
    /// - Returns: `[N, outChannels, outH, outW]` with
    ///   `outH = (H - 1) sh - 2 ph + dh (kh - 1) + outputPadding.h + 1`.
    public func convTranspose2d(weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                                outputPadding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1) -> Tensor {
        precondition(rank == 4 && weight.rank == 4, "conv_transpose2d: expected input [N,C,H,W] and weight [C,O/g,kh,kw], got \(shape) and \(weight.shape)")
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let (wc, og, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
        precondition(wc == c && groups >= 1 && c % groups == 0,
                     "conv_transpose2d: input \(shape) and weight \(weight.shape) do not match with groups = \(groups)")
        let o = og * groups, cg = c / groups
        if let bias { precondition(bias.shape == [o], "conv_transpose2d: bias shape \(bias.shape) should be [\(o)]") }
        let outH = (h - 1) * stride.0 - 2 * padding.0 + dilation.0 * (kh - 1) + outputPadding.0 + 1
        let outW = (w - 1) * stride.1 - 2 * padding.1 + dilation.1 * (kw - 1) + outputPadding.1 + 1
        precondition(outH > 0 && outW > 0, "conv_transpose2d: output size \(outH)x\(outW) is not positive")
        // The conv whose input-gradient this is: input plane outH x outW, output plane h x w.
        let geo = ConvGeometry(inH: outH, inW: outW, kh: kh, kw: kw, sh: stride.0, sw: stride.1, ph: padding.0, pw: padding.1,
                               dh: dilation.0, dw: dilation.1, outH: h, outW: w)
        let x = floatInput("conv_transpose2d").contiguous().detached()
        let wt = weight.floatInput("conv_transpose2d").contiguous().detached()
        let kdim = og * kh * kw, l = h * w, nl = n * l
        // x as [groups, cg, N*L]
        let xg = x.reshaped([n, c, l]).permuted([1, 0, 2]).contiguous()
        let cols = Tensor(uninitializedShape: [groups, kdim, nl])
        for g in 0..<groups {
            lathe_sgemm(1, 0, kdim, nl, cg, 1, wt.floatPointer + g * cg * kdim, kdim,
                        xg.floatPointer + g * cg * nl, nl, 0, cols.floatPointer + g * kdim * nl, nl)
        }
        var out = geo.col2imTarget([n, o, outH, outW])
        for g in 0..<groups {
            geo.col2im(cols.floatPointer + g * kdim * nl, n: n, c: o, c0: g * og, channels: og, x: out.floatPointer)
        }
        if let bias { out = out + bias.detached().reshaped([1, o, 1, 1]) }
        let input = self
        var inputs = [self, weight]
        if let bias { inputs.append(bias) }
        return out.detached().recorded("conv_transpose2d", inputs) { grad in
            let gc = grad.contiguous()
            let gcols = Tensor(uninitializedShape: [groups, kdim, nl])
            for g in 0..<groups {
                geo.im2col(gc.floatPointer, n: n, c: o, c0: g * og, channels: og, cols: gcols.floatPointer + g * kdim * nl)
            }
            var dx: Tensor? = nil, dw: Tensor? = nil
            if input.requiresGrad {
                let d = Tensor(uninitializedShape: [groups, cg, nl])
                for g in 0..<groups {
                    lathe_sgemm(0, 0, cg, nl, kdim, 1, wt.floatPointer + g * cg * kdim, kdim,
                                gcols.floatPointer + g * kdim * nl, nl, 0, d.floatPointer + g * cg * nl, nl)
                }
                dx = d.reshaped([c, n, l]).permuted([1, 0, 2]).contiguous().reshaped([n, c, h, w])
            }
            if weight.requiresGrad {
                let d = Tensor(uninitializedShape: weight.shape)
                for g in 0..<groups {
                    lathe_sgemm(0, 1, cg, kdim, nl, 1, xg.floatPointer + g * cg * nl, nl,
                                gcols.floatPointer + g * kdim * nl, nl, 0, d.floatPointer + g * cg * kdim, kdim)
                }
                dw = d
            }
            var result: [Tensor?] = [dx, dw]
            if bias != nil { result.append(grad.sum(dims: [0, 2, 3])) }
            return result
        }
    }
}
