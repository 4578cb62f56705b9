import CLatheKernels

extension Tensor {
    /// 2-D max pooling over `[N, C, H, W]` (padding never wins: it counts as -infinity).
    /// The gradient goes to the first maximum of each window.
    public func maxPool2d(kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                          dilation: (Int, Int) = (1, 1)) -> Tensor {
        precondition(rank == 4, "max_pool2d: expected [N,C,H,W], got \(shape)")
        let s = stride ?? kernel
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        precondition(padding.0 * 2 <= kernel.0 && padding.1 * 2 <= kernel.1, "max_pool2d: padding \(padding) exceeds half the kernel \(kernel)")
        let oh = (h + 2 * padding.0 - dilation.0 * (kernel.0 - 1) - 1) / s.0 + 1
        let ow = (w + 2 * padding.1 - dilation.1 * (kernel.1 - 1) - 1) / s.1 + 1
        precondition(oh > 0 && ow > 0, "max_pool2d: input \(shape) is smaller than kernel \(kernel)")
        let x = floatInput("max_pool2d").contiguous().detached()
        let out = Tensor(uninitializedShape: [n, c, oh, ow])
        let fast = kernel == (2, 2) && s == (2, 2) && padding == (0, 0) && dilation == (1, 1)
        let planeGrain = Swift.max(1, elementwiseGrain / Swift.max(h * w, 1))
        if fast, !(GradMode.isEnabled && requiresGrad) {
            // Nothing will ask for the gradient: the values alone.
            let xp = x.floatPointer, yp = out.floatPointer
            ThreadPool.forChunks(n * c, grain: planeGrain) { r in lathe_maxpool2x2_values_f32(xp, h, w, r.lowerBound, r.upperBound, yp) }
            return out
        }
        var argmax = [Int32](repeating: 0, count: n * c * oh * ow)
        let xp = x.floatPointer, yp = out.floatPointer
        argmax.withUnsafeMutableBufferPointer { am in
            let amp = am.baseAddress!
            if fast {
                // The common case, in C without branches.
                ThreadPool.forChunks(n * c, grain: planeGrain) { r in
                    lathe_maxpool2x2_f32(xp, h, w, r.lowerBound, r.upperBound, yp, amp)
                }
                return
            }
            ThreadPool.forEach(n * c) { plane in
                let src = xp + plane * h * w
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        var best = -Float.infinity, bi = -1
                        for ki in 0..<kernel.0 {
                            let iy = oy * s.0 - padding.0 + ki * dilation.0
                            if iy < 0 || iy >= h { continue }
                            for kj in 0..<kernel.1 {
                                let ix = ox * s.1 - padding.1 + kj * dilation.1
                                if ix < 0 || ix >= w { continue }
                                let v = src[iy * w + ix]
                                if v > best || bi < 0 || v.isNaN && !best.isNaN { best = v; bi = iy * w + ix }
                            }
                        }
                        let o = (plane * oh + oy) * ow + ox
                        yp[o] = best
                        amp[o] = Int32(bi)
                    }
                }
            }
        }
        return out.recorded("max_pool2d", [self]) { g in
            let gc = g.contiguous()
            if fast {
                let dx = Tensor(uninitializedShape: [n, c, h, w])
                let gp = gc.floatPointer, dp = dx.floatPointer
                argmax.withUnsafeBufferPointer { am in
                    let amp = am.baseAddress!
                    ThreadPool.forChunks(n * c, grain: planeGrain) { r in
                        lathe_maxpool2x2_backward_f32(gp, amp, h, w, r.lowerBound, r.upperBound, dp)
                    }
                }
                return [dx]
            }
            let dx = Tensor.zeros([n, c, h, w])
            let gp = gc.floatPointer, dp = dx.floatPointer
            argmax.withUnsafeBufferPointer { am in
                let amp = am.baseAddress!
                ThreadPool.forEach(n * c) { plane in
                    for o in (plane * oh * ow)..<((plane + 1) * oh * ow) where amp[o] >= 0 {  // -1: a window of padding only
                        dp[plane * h * w + Int(amp[o])] += gp[o]
                    }
                }
            }
            return [dx]
        }
    }

    /// 2-D average pooling over `[N, C, H, W]`. With `countIncludePad` the divisor is the
    /// full window size; without it, only the taps inside the input count.
    public func avgPool2d(kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                          countIncludePad: Bool = true) -> Tensor {
        precondition(rank == 4, "avg_pool2d: expected [N,C,H,W], got \(shape)")
        let s = stride ?? kernel
        let (h, w) = (shape[2], shape[3])
        precondition(padding.0 * 2 <= kernel.0 && padding.1 * 2 <= kernel.1, "avg_pool2d: padding \(padding) exceeds half the kernel \(kernel)")
        let oh = (h + 2 * padding.0 - kernel.0) / s.0 + 1
        let ow = (w + 2 * padding.1 - kernel.1) / s.1 + 1
        precondition(oh > 0 && ow > 0, "avg_pool2d: input \(shape) is smaller than kernel \(kernel)")
        func windows(_ count: Int, _ k: Int, _ st: Int, _ p: Int, _ size: Int) -> [(Int, Int, Int)] {
            (0..<count).map { o in
                let a = o * st - p, b = a + k
                let lo = Swift.max(a, 0), hi = Swift.min(b, size)
                let padded = Swift.min(b, size + p) - a
                return (lo, hi, countIncludePad ? padded : hi - lo)
            }
        }
        return windowPool(windows(oh, kernel.0, s.0, padding.0, h), windows(ow, kernel.1, s.1, padding.1, w), "avg_pool2d")
    }

    /// Average pooling to a fixed output size, windows `[floor(i H / oh), ceil((i+1) H / oh))`.
    public func adaptiveAvgPool2d(outputSize: (Int, Int)) -> Tensor {
        precondition(rank == 4, "adaptive_avg_pool2d: expected [N,C,H,W], got \(shape)")
        func windows(_ count: Int, _ size: Int) -> [(Int, Int, Int)] {
            (0..<count).map { i in
                let lo = (i * size) / count, hi = ((i + 1) * size + count - 1) / count
                return (lo, hi, hi - lo)
            }
        }
        return windowPool(windows(outputSize.0, shape[2]), windows(outputSize.1, shape[3]), "adaptive_avg_pool2d")
    }

    /// Mean over rectangular windows given per output row/column as (start, end, divisor part).
    private func windowPool(_ rows: [(Int, Int, Int)], _ cols: [(Int, Int, Int)], _ name: String) -> Tensor {
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let oh = rows.count, ow = cols.count
        let x = floatInput(name).contiguous().detached()
        let out = Tensor(uninitializedShape: [n, c, oh, ow])
        let xp = x.floatPointer, yp = out.floatPointer
        ThreadPool.forEach(n * c) { plane in
            let src = xp + plane * h * w
            for (oy, r) in rows.enumerated() {
                for (ox, q) in cols.enumerated() {
                    var acc: Float = 0
                    for iy in r.0..<r.1 { for ix in q.0..<q.1 { acc += src[iy * w + ix] } }
                    yp[(plane * oh + oy) * ow + ox] = acc / Float(r.2 * q.2)
                }
            }
        }
        return out.recorded(name, [self]) { g in
            let gc = g.contiguous()
            let dx = Tensor.zeros([n, c, h, w])
            let gp = gc.floatPointer, dp = dx.floatPointer
            ThreadPool.forEach(n * c) { plane in
                let dst = dp + plane * h * w
                for (oy, r) in rows.enumerated() {
                    for (ox, q) in cols.enumerated() {
                        let v = gp[(plane * oh + oy) * ow + ox] / Float(r.2 * q.2)
                        for iy in r.0..<r.1 { for ix in q.0..<q.1 { dst[iy * w + ix] += v } }
                    }
                }
            }
            return [dx]
        }
    }
}
