import CLatheKernels

/// Elements per task when elementwise work is split over the pool.
let elementwiseGrain = 1 << 15

// MARK: - Unary

extension Tensor {
    /// Applies a C unary kernel; float32 in, float32 out, contiguous.
    func unaryKernel(_ op: lathe_unary_op) -> Tensor {
        let x = floatInput("unary").contiguousStorageView()
        let out = Tensor(uninitializedShape: shape)
        let xp = x.floatPointer, yp = out.floatPointer
        ThreadPool.forChunks(count, grain: elementwiseGrain) { r in
            lathe_unary_f32(Int32(op.rawValue), xp + r.lowerBound, 1, yp + r.lowerBound, 1, r.count)
        }
        return out
    }

    /// A differentiable unary op whose derivative the C kernel knows.
    func unary(_ op: lathe_unary_op, _ name: String) -> Tensor {
        let y = unaryKernel(op)
        let x = self
        return y.recorded(name, [self]) { g in
            let xc = x.contiguousStorageView(), gc = g.contiguousStorageView()
            let dx = Tensor(uninitializedShape: x.shape)
            let xp = xc.floatPointer, yp = y.floatPointer, gp = gc.floatPointer, dp = dx.floatPointer
            ThreadPool.forChunks(x.count, grain: elementwiseGrain) { r in
                let o = r.lowerBound
                lathe_unary_backward_f32(Int32(op.rawValue), xp + o, yp + o, gp + o, dp + o, r.count)
            }
            return [dx]
        }
    }

    /// Stops unless float32 (the compute type).
    func floatInput(_ op: String) -> Tensor {
        precondition(dtype == .float32, "\(op): expected float32, got \(dtype) of shape \(shape); convert with .to(.float32)")
        return self
    }

    public static prefix func - (x: Tensor) -> Tensor { x.unary(LATHE_U_NEG, "neg") }
    public func abs() -> Tensor { unary(LATHE_U_ABS, "abs") }
    public func exp() -> Tensor { unary(LATHE_U_EXP, "exp") }
    public func log() -> Tensor { unary(LATHE_U_LOG, "log") }
    public func sqrt() -> Tensor { unary(LATHE_U_SQRT, "sqrt") }
    public func rsqrt() -> Tensor { unary(LATHE_U_RSQRT, "rsqrt") }
    public func tanh() -> Tensor { unary(LATHE_U_TANH, "tanh") }
    public func sigmoid() -> Tensor { unary(LATHE_U_SIGMOID, "sigmoid") }
    public func relu() -> Tensor { unary(LATHE_U_RELU, "relu") }
    public func silu() -> Tensor { unary(LATHE_U_SILU, "silu") }
    public func softplus() -> Tensor { unary(LATHE_U_SOFTPLUS, "softplus") }
    public func erf() -> Tensor { unary(LATHE_U_ERF, "erf") }
    public func sin() -> Tensor { unary(LATHE_U_SIN, "sin") }
    public func cos() -> Tensor { unary(LATHE_U_COS, "cos") }
    public func square() -> Tensor { unary(LATHE_U_SQUARE, "square") }
    public func reciprocal() -> Tensor { unary(LATHE_U_RECIP, "reciprocal") }
    /// -1, 0 or 1 by sign; gradient 0.
    public func sign() -> Tensor { unary(LATHE_U_SIGN, "sign") }

    /// SwiGLU's product `silu(self) * up` (same shapes) in one pass, as one recorded op that keeps
    /// only `self` and `up` for its backward (the composed ops would also keep `silu(self)`).
    /// Values and gradients have the bits of the composed ops.
    public func swiglu(_ up: Tensor) -> Tensor {
        precondition(shape == up.shape, "swiglu: gate \(shape) and up \(up.shape) differ in shape")
        let g = floatInput("swiglu").detached().contiguousStorageView(), u = up.floatInput("swiglu").detached().contiguousStorageView()
        let y = Tensor(uninitializedShape: shape)
        let gp = g.floatPointer, up_ = u.floatPointer, yp = y.floatPointer
        ThreadPool.forChunks(count, grain: elementwiseGrain) { r in
            lathe_swiglu_forward_f32(gp + r.lowerBound, up_ + r.lowerBound, yp + r.lowerBound, r.count)
        }
        return y.recorded("swiglu", [self, up]) { dy in
            let dyc = dy.contiguousStorageView()
            let dg = Tensor(uninitializedShape: g.shape), du = Tensor(uninitializedShape: g.shape)
            let gp = g.floatPointer, up_ = u.floatPointer, dyp = dyc.floatPointer, dgp = dg.floatPointer, dup = du.floatPointer
            ThreadPool.forChunks(g.count, grain: elementwiseGrain) { r in
                let o = r.lowerBound
                lathe_swiglu_backward_f32(gp + o, up_ + o, dyp + o, dgp + o, dup + o, r.count)
            }
            return [dg, du]
        }
    }

    /// GELU: `0.5 x (1 + erf(x / sqrt 2))`, or with `approximateTanh` the tanh form
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
    ///
    /// The erf form keeps its derivative from the forward pass (computed with the value, which
    /// shares most of the work), so the backward is one multiplication.
    public func gelu(approximateTanh: Bool = false) -> Tensor {
        if approximateTanh { return unary(LATHE_U_GELU_TANH, "gelu_tanh") }
        let x = floatInput("gelu").contiguousStorageView()
        let y = Tensor(uninitializedShape: shape), d = Tensor(uninitializedShape: shape)
        let xp = x.floatPointer, yp = y.floatPointer, dp = d.floatPointer
        ThreadPool.forChunks(count, grain: elementwiseGrain) { r in
            let o = r.lowerBound
            lathe_gelu_erf_forward_f32(xp + o, yp + o, dp + o, r.count)
        }
        return y.recorded("gelu", [self]) { g in [Tensor.binaryKernel(g, d, LATHE_B_MUL, "gelu")] }
    }

    /// Elements limited to `[min, max]`; the gradient passes where `min <= x <= max`.
    public func clamped(min lo: Float = -.infinity, max hi: Float = .infinity) -> Tensor {
        let x = floatInput("clamp").contiguousStorageView()
        let out = Tensor(uninitializedShape: shape)
        let xp = x.floatPointer, yp = out.floatPointer
        ThreadPool.forChunks(count, grain: elementwiseGrain) { r in
            lathe_clamp_f32(xp + r.lowerBound, yp + r.lowerBound, r.count, lo, hi)
        }
        return out.recorded("clamp", [self]) { g in
            [g * ((x >= lo).to(.float32) * (x <= hi).to(.float32))]
        }
    }

    /// `self ** exponent` elementwise.
    public func pow(_ exponent: Float) -> Tensor {
        if exponent == 2 { return square() }
        if exponent == 1 { return self }
        let x = self
        let y = Tensor.binaryKernel(self, Tensor(exponent), LATHE_B_POW, "pow")
        return y.recorded("pow", [self]) { g in
            [g * Tensor.binaryKernel(x.detached(), Tensor(exponent - 1), LATHE_B_POW, "pow") * exponent]
        }
    }
}

// MARK: - Binary with broadcasting

extension Tensor {
    /// Applies a C binary kernel to broadcast operands; no autodiff.
    static func binaryKernel(_ a: Tensor, _ b: Tensor, _ op: lathe_binary_op, _ name: String) -> Tensor {
        precondition(a.dtype == .float32 && b.dtype == .float32,
                     "\(name): expected float32 operands, got \(a.dtype) \(a.shape) and \(b.dtype) \(b.shape)")
        let outShape = Shape.broadcastOrDie(a.shape, b.shape, op: name)
        let out = Tensor(uninitializedShape: outShape)
        if out.count == 0 { return out }
        let sa = Shape.broadcastStrides(shape: a.shape, strides: a.strides, to: outShape)
        let sb = Shape.broadcastStrides(shape: b.shape, strides: b.strides, to: outShape)
        let (shape, st) = StridedCopy.collapse(shape: outShape, strides: [sa, sb, out.strides])
        let inner = shape.last!
        let outer = out.count / inner
        let ap = a.floatPointer, bp = b.floatPointer, yp = out.floatPointer
        let opCode = Int32(op.rawValue)
        let isa = st[0].last!, isb = st[1].last!
        if outer == 1 {
            ThreadPool.forChunks(inner, grain: elementwiseGrain) { r in
                let o = r.lowerBound
                lathe_binary_f32(opCode, ap + o * isa, isa, bp + o * isb, isb, yp + o, 1, r.count)
            }
        } else {
            let rowsPerTask = Swift.max(1, elementwiseGrain / inner)
            ThreadPool.forChunks(outer, grain: rowsPerTask) { rows in
                StridedCopy.forRows(rows, shape: shape, strides: st) { oa, ob, oy in
                    lathe_binary_f32(opCode, ap + oa, isa, bp + ob, isb, yp + oy, 1, inner)
                }
            }
        }
        return out
    }

    /// Sums a broadcast gradient back to `shape` (the inverse of broadcasting).
    public func summed(toShape target: [Int]) -> Tensor {
        if shape == target { return self }
        let lead = rank - target.count
        var dims = Array(0..<lead)
        for i in 0..<target.count where target[i] == 1 && shape[lead + i] != 1 { dims.append(lead + i) }
        let s = dims.isEmpty ? self : sum(dims: dims, keepDims: true)
        return s.reshaped(target)
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor {
        let (sa, sb) = (a.shape, b.shape)  // the backward needs only the shapes: don't keep the inputs alive
        return binaryKernel(a, b, LATHE_B_ADD, "add").recorded("add", [a, b]) { g in
            [g.summed(toShape: sa), g.summed(toShape: sb)]
        }
    }

    public static func - (a: Tensor, b: Tensor) -> Tensor {
        let (sa, sb) = (a.shape, b.shape)
        return binaryKernel(a, b, LATHE_B_SUB, "sub").recorded("sub", [a, b]) { g in
            [g.summed(toShape: sa), (-g).summed(toShape: sb)]
        }
    }

    public static func * (a: Tensor, b: Tensor) -> Tensor {
        // Keep an operand only when the other one's gradient needs it (a frozen scale or a
        // constant factor must not keep the activation it multiplies alive until the backward).
        let (sa, sb) = (a.shape, b.shape)
        let keptA = b.requiresGrad ? a.detached() : nil, keptB = a.requiresGrad ? b.detached() : nil
        return binaryKernel(a, b, LATHE_B_MUL, "mul").recorded("mul", [a, b]) { g in
            [keptB.map { (g * $0).summed(toShape: sa) }, keptA.map { (g * $0).summed(toShape: sb) }]
        }
    }

    public static func / (a: Tensor, b: Tensor) -> Tensor {
        let (sa, sb) = (a.shape, b.shape)
        let bd = b.detached(), keptA = b.requiresGrad ? a.detached() : nil, aNeeds = a.requiresGrad
        return binaryKernel(a, b, LATHE_B_DIV, "div").recorded("div", [a, b]) { g in
            [aNeeds ? (g / bd).summed(toShape: sa) : nil,
             keptA.map { (-(g * $0) / (bd * bd)).summed(toShape: sb) }]
        }
    }

    /// `a ** b` elementwise with broadcasting.
    public static func pow(_ a: Tensor, _ b: Tensor) -> Tensor {
        let y = binaryKernel(a, b, LATHE_B_POW, "pow")
        return y.recorded("pow", [a, b]) { g in
            let ad = a.detached(), bd = b.detached()
            return [a.requiresGrad ? (g * bd * binaryKernel(ad, bd - 1, LATHE_B_POW, "pow")).summed(toShape: a.shape) : nil,
                    b.requiresGrad ? (g * y * ad.log()).summed(toShape: b.shape) : nil]
        }
    }

    /// Elementwise maximum; the gradient goes to the larger input, half to each on exact ties
    /// (as PyTorch).
    public static func maximum(_ a: Tensor, _ b: Tensor) -> Tensor {
        minMax(a, b, LATHE_B_MAX, "maximum", select: LATHE_B_GT)
    }

    /// Elementwise minimum.
    public static func minimum(_ a: Tensor, _ b: Tensor) -> Tensor {
        minMax(a, b, LATHE_B_MIN, "minimum", select: LATHE_B_LT)
    }

    private static func minMax(_ a: Tensor, _ b: Tensor, _ op: lathe_binary_op, _ name: String,
                               select: lathe_binary_op) -> Tensor {
        binaryKernel(a, b, op, name).recorded(name, [a, b]) { g in
            let ad = a.detached(), bd = b.detached()
            let wins = binaryKernel(ad, bd, select, name)
            let ties = binaryKernel(ad, bd, LATHE_B_EQ, name)
            let wa = wins + ties * 0.5
            let wb = 1 - wa
            return [(g * wa).summed(toShape: a.shape), (g * wb).summed(toShape: b.shape)]
        }
    }

    // Scalars on either side.
    public static func + (a: Tensor, b: Float) -> Tensor { a + Tensor(b) }
    public static func + (a: Float, b: Tensor) -> Tensor { Tensor(a) + b }
    public static func - (a: Tensor, b: Float) -> Tensor { a - Tensor(b) }
    public static func - (a: Float, b: Tensor) -> Tensor { Tensor(a) - b }
    public static func * (a: Tensor, b: Float) -> Tensor { a * Tensor(b) }
    public static func * (a: Float, b: Tensor) -> Tensor { Tensor(a) * b }
    public static func / (a: Tensor, b: Float) -> Tensor { a / Tensor(b) }
    public static func / (a: Float, b: Tensor) -> Tensor { Tensor(a) / b }

    public static func += (a: inout Tensor, b: Tensor) { a = a + b }
    public static func -= (a: inout Tensor, b: Tensor) { a = a - b }
    public static func *= (a: inout Tensor, b: Tensor) { a = a * b }
    public static func /= (a: inout Tensor, b: Tensor) { a = a / b }
}

// MARK: - Comparisons (no gradient; bool results)

extension Tensor {
    private static func compare(_ a: Tensor, _ b: Tensor, _ op: lathe_binary_op, _ name: String) -> Tensor {
        binaryKernel(a.detached(), b.detached(), op, name).to(.bool)
    }

    public static func .== (a: Tensor, b: Tensor) -> Tensor { compare(a, b, LATHE_B_EQ, "eq") }
    public static func .!= (a: Tensor, b: Tensor) -> Tensor { compare(a, b, LATHE_B_NE, "ne") }
    public static func < (a: Tensor, b: Tensor) -> Tensor { compare(a, b, LATHE_B_LT, "lt") }
    public static func <= (a: Tensor, b: Tensor) -> Tensor { compare(a, b, LATHE_B_LE, "le") }
    public static func > (a: Tensor, b: Tensor) -> Tensor { compare(a, b, LATHE_B_GT, "gt") }
    public static func >= (a: Tensor, b: Tensor) -> Tensor { compare(a, b, LATHE_B_GE, "ge") }
    public static func .== (a: Tensor, b: Float) -> Tensor { a .== Tensor(b) }
    public static func < (a: Tensor, b: Float) -> Tensor { a < Tensor(b) }
    public static func <= (a: Tensor, b: Float) -> Tensor { a <= Tensor(b) }
    public static func > (a: Tensor, b: Float) -> Tensor { a > Tensor(b) }
    public static func >= (a: Tensor, b: Float) -> Tensor { a >= Tensor(b) }
}
