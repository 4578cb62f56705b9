import CLatheKernels

extension Tensor {
    /// Matrix product with NumPy/PyTorch `matmul` semantics: 1-D operands are promoted to a
    /// row (left) or column (right) and the added dim removed; dims before the last two
    /// broadcast as batch dims.
    ///
    /// Runs the C GEMM (packed, register-blocked, multithreaded). Transposed views are
    /// passed to it as they are, without a copy.
    public func matmul(_ other: Tensor) -> Tensor {
        precondition(rank >= 1 && other.rank >= 1, "matmul: scalars are not matrices (shapes \(shape) and \(other.shape))")
        if rank == 1 && other.rank == 1 {
            precondition(shape == other.shape, "matmul: vectors of shapes \(shape) and \(other.shape) differ in length")
            return (self * other).sum()
        }
        if rank == 1 { return unsqueezed(0).matmul(other).squeezed(-2) }
        if other.rank == 1 { return matmul(other.unsqueezed(-1)).squeezed(-1) }
        let a = self, b = other
        let y = Tensor.gemmBatched(a.detached(), b.detached())
        return y.recorded("matmul", [a, b]) { g in
            [a.requiresGrad ? Tensor.gemmBatched(g, b.detached().transposed(-1, -2)).summed(toShape: a.shape) : nil,
             b.requiresGrad ? Tensor.gemmBatched(a.detached().transposed(-1, -2), g).summed(toShape: b.shape) : nil]
        }
    }

    /// How the C GEMM reads the last two dims of a tensor: transposed or not, row stride.
    private func gemmLayout() -> (trans: Int32, ld: Int)? {
        let r = shape[rank - 2], c = shape[rank - 1]
        let sr = strides[rank - 2], sc = strides[rank - 1]
        // Only layouts the GEMM can address (a broadcast row or column, stride 0, needs a copy).
        if (sc == 1 || c == 1) && (r == 1 || sr >= c) { return (0, r == 1 ? Swift.max(c, 1) : sr) }
        if (sr == 1 || r == 1) && (c == 1 || sc >= r) { return (1, c == 1 ? Swift.max(r, 1) : sc) }
        return nil
    }

    /// Batched GEMM of rank >= 2 float32 tensors with broadcast batch dims; no autodiff.
    static func gemmBatched(_ a0: Tensor, _ b0: Tensor) -> Tensor {
        precondition(a0.dtype == .float32 && b0.dtype == .float32,
                     "matmul: expected float32, got \(a0.dtype) \(a0.shape) and \(b0.dtype) \(b0.shape)")
        let m = a0.shape[a0.rank - 2], k = a0.shape[a0.rank - 1]
        let k2 = b0.shape[b0.rank - 2], n = b0.shape[b0.rank - 1]
        precondition(k == k2, "matmul: shapes \(a0.shape) and \(b0.shape) do not multiply (inner dims \(k) vs \(k2))")
        let aBatch = Array(a0.shape.dropLast(2)), bBatch = Array(b0.shape.dropLast(2))
        let batch = Shape.broadcastOrDie(aBatch, bBatch, op: "matmul")
        let a = a0.gemmLayout() == nil ? a0.contiguousCopy() : a0
        let b = b0.gemmLayout() == nil ? b0.contiguousCopy() : b0
        let (ta, lda) = a.gemmLayout()!, (tb, ldb) = b.gemmLayout()!
        let out = Tensor(uninitializedShape: batch + [m, n])
        let batchCount = Shape.count(batch)
        if out.count == 0 { return out }
        let sa = Shape.broadcastStrides(shape: aBatch, strides: Array(a.strides.dropLast(2)), to: batch)
        let sb = Shape.broadcastStrides(shape: bBatch, strides: Array(b.strides.dropLast(2)), to: batch)
        let ap = a.floatPointer, bp = b.floatPointer, cp = out.floatPointer
        let batchShape = batch + [1]
        func run(_ i: Int) {
            let offs = batch.isEmpty ? [0, 0] : StridedCopy.outerOffsets(i, shape: batchShape, strides: [sa + [0], sb + [0]])
            lathe_sgemm(ta, tb, m, n, k, 1, ap + offs[0], lda, bp + offs[1], ldb, 0, cp + i * m * n, n)
        }
        // Many small products: one per task (each GEMM then runs on one thread).
        if batchCount > 1 && m * n * k < 1 << 18 {
            ThreadPool.forEach(batchCount) { run($0) }
        } else {
            for i in 0..<batchCount { run(i) }
        }
        return out
    }
}

extension Tensor {
    /// Rows that ``linear(weight:bias:)`` runs as matrix-vector products (0 outside
    /// ``decoding(rows:_:)``); quantized layers read it too.
    @TaskLocal public static var decodingRows = 0

    /// Runs `body` as a decode step of up to `rows` sequences at once: ``linear(weight:bias:)``
    /// and quantized layers compute each of up to `rows` input rows with the arithmetic of a
    /// single row (one or two rows always take the matrix-vector kernel, which reads a block of
    /// the weights once for all rows), so that batched decoding gives every sequence the bits it
    /// gets alone. Outside, more rows take the GEMM, whose rounding can differ from a row's.
    public static func decoding<R>(rows: Int, _ body: () throws -> R) rethrows -> R {
        try $decodingRows.withValue(rows, operation: body)
    }

    /// `self W^T + bias` for `self` `[M, K]`, `weight` `[N, K]` and `bias` `[N]` (PyTorch's
    /// `F.linear` on a matrix), as one GEMM that adds the bias to each block of the result
    /// while it is in cache.
    ///
    /// The same bits as `matmul(weight.T) + bias` (inside ``decoding(rows:_:)``, those of one row at
    /// a time); the backward computes the weight
    /// gradient directly in the weight's `[N, K]` layout (`g^T x`) and the bias gradient as the
    /// column sums of `g`.
    public func linear(weight: Tensor, bias: Tensor? = nil) -> Tensor {
        linear(weight: weight, bias: bias, packedWeight: nil)
    }

    /// ``linear(weight:bias:)`` with `packedWeight`, `weightᵀ` packed once (``PackedGEMMOperand``):
    /// the forward product then skips packing the weight (for a frozen weight used every step,
    /// see `Linear.cachesPackedWeight`). The backward still uses `weight`. The same bits either way.
    public func linear(weight: Tensor, bias: Tensor?, packedWeight: PackedGEMMOperand?) -> Tensor {
        precondition(rank == 2 && weight.rank == 2 && shape[1] == weight.shape[1],
                     "linear: input \(shape) and weight \(weight.shape) do not match (expected [M, K] and [N, K])")
        let (m, k, n) = (shape[0], shape[1], weight.shape[0])
        if let bias { precondition(bias.shape == [n], "linear: bias shape \(bias.shape) should be [\(n)]") }
        if let packedWeight {
            precondition(packedWeight.rows == k && packedWeight.columns == n,
                         "linear: the packed weight is [\(packedWeight.rows), \(packedWeight.columns)], expected [\(k), \(n)]")
        }
        let x0 = floatInput("linear").detached()
        let x = x0.gemmLayout() == nil ? x0.contiguousCopy() : x0
        let w = weight.floatInput("linear").detached().contiguous()
        let b = bias?.floatInput("linear").detached().contiguous()
        let (tx, ldx) = x.gemmLayout()!
        let out = Tensor(uninitializedShape: [m, n])
        if m > 0 && n > 0 {
            if m > 2 && tx == 0 && k > 0 && m <= Tensor.decodingRows {
                // A decode step of m sequences: each row as the matrix-vector product one row gets.
                lathe_sgemv_rows(m, n, k, x.floatPointer, ldx, w.floatPointer, k, out.floatPointer, n, b?.floatPointer)
            } else if !(packedWeight.map {
                lathe_sgemm_prepacked_bias(tx, m, n, k, 1, x.floatPointer, ldx, $0.buffer.floatPointer, $0.panelWidth, $0.blockDepth,
                                           0, out.floatPointer, n, b?.floatPointer) == 0
            } ?? false) {
                lathe_sgemm_bias(tx, 1, m, n, k, 1, x.floatPointer, ldx, w.floatPointer, k, 0, out.floatPointer, n, b?.floatPointer)
            }
        }
        var inputs = [self, weight]
        if let bias { inputs.append(bias) }
        // Keep the input only for the weight's gradient (flags, not tensors, for the rest).
        let inputNeeds = requiresGrad, keptX: Tensor? = weight.requiresGrad ? x : nil, biasNeeds = bias?.requiresGrad ?? false
        let hasBias = bias != nil
        return out.recorded("linear", inputs) { g in
            let gc = g.contiguousStorageView()
            var dx: Tensor? = nil, dw: Tensor? = nil
            if inputNeeds {
                let d = Tensor(uninitializedShape: [m, k])
                lathe_sgemm(0, 0, m, k, n, 1, gc.floatPointer, n, w.floatPointer, k, 0, d.floatPointer, k)
                dx = d
            }
            if let x = keptX {
                let d = Tensor(uninitializedShape: [n, k])
                lathe_sgemm(1, tx, n, k, m, 1, gc.floatPointer, n, x.floatPointer, ldx, 0, d.floatPointer, k)
                dw = d
            }
            var result: [Tensor?] = [dx, dw]
            if hasBias { result.append(biasNeeds ? gc.sum(dims: [0]) : nil) }
            return result
        }
    }
}

extension Tensor {
    /// `self + scale · (input Wᵀ)` for `self` `[M, N]`, `input` `[M, K]` and `weight` `[N, K]`: one
    /// GEMM that accumulates into a copy of `self` (LoRA's `base(x) + scaling · B (A x)`), instead of
    /// a product, a scaled copy and a sum.
    ///
    /// The backward passes `g` to `self` and `scale · g W`, `scale · gᵀ input` to the others.
    public func addingLinear(_ input: Tensor, weight: Tensor, scale: Float) -> Tensor {
        precondition(rank == 2 && input.rank == 2 && weight.rank == 2 && input.shape[1] == weight.shape[1]
                     && shape == [input.shape[0], weight.shape[0]],
                     "adding_linear: \(shape) + input \(input.shape) times weight \(weight.shape)ᵀ do not match (expected [M, N], [M, K], [N, K])")
        let (m, k, n) = (input.shape[0], input.shape[1], weight.shape[0])
        let x0 = input.floatInput("adding_linear").detached()
        let x = x0.gemmLayout() == nil ? x0.contiguousCopy() : x0
        let w = weight.floatInput("adding_linear").detached().contiguous()
        let out = floatInput("adding_linear").detached().contiguousCopy()
        let (tx, ldx) = x.gemmLayout()!
        if m > 1 && tx == 0 && n > 0 && k > 0 && m <= Tensor.decodingRows {
            // A decode step of m sequences: each row as it runs alone.
            for r in 0..<m {
                lathe_sgemm(0, 1, 1, n, k, scale, x.floatPointer + r * ldx, ldx, w.floatPointer, k, 1, out.floatPointer + r * n, n)
            }
        } else if m > 0 && n > 0 && k > 0 {
            lathe_sgemm(tx, 1, m, n, k, scale, x.floatPointer, ldx, w.floatPointer, k, 1, out.floatPointer, n)
        }
        // Only flags are kept of the base output and the product: keeping the tensors would hold
        // the base output (the size of the result) until the backward for nothing.
        let (baseNeeds, productNeeds, weightNeeds) = (requiresGrad, input.requiresGrad, weight.requiresGrad)
        return out.recorded("adding_linear", [self, input, weight]) { g in
            let gc = g.contiguousStorageView()
            var dx: Tensor? = nil, dw: Tensor? = nil
            if productNeeds {
                let d = Tensor(uninitializedShape: [m, k])
                lathe_sgemm(0, 0, m, k, n, scale, gc.floatPointer, n, w.floatPointer, k, 0, d.floatPointer, k)
                dx = d
            }
            if weightNeeds {
                let d = Tensor(uninitializedShape: [n, k])
                lathe_sgemm(1, tx, n, k, m, scale, gc.floatPointer, n, x.floatPointer, ldx, 0, d.floatPointer, k)
                dw = d
            }
            return [baseNeeds ? gc : nil, dx, dw]
        }
    }
}

extension Tensor {
    /// LoRA's `self Wᵀ + bias + scale · (self Aᵀ) Bᵀ` for `self` `[M, K]`, `weight` `[N, K]`,
    /// `a` `[R, K]` and `b` `[N, R]`, as one op of the tape (training; inference keeps the
    /// separate ops and their decode-step arithmetic).
    ///
    /// The forward has the bits of ``linear(weight:bias:packedWeight:)``, `self Aᵀ` and
    /// ``addingLinear(_:weight:scale:)``. The backward forms `dx = g W + (scale · g B) A` in one
    /// buffer, the second product accumulating into the first, where the tape would hold two
    /// `[M, K]` gradients and sum them; `dA = (scale · g B)ᵀ self`, `dB = scale · gᵀ (self Aᵀ)`,
    /// and `dW`, `dbias` only when they train. Keeps `self` and `self Aᵀ` `[M, R]` for the backward.
    public func loraLinear(weight: Tensor, bias: Tensor?, packedWeight: PackedGEMMOperand?, a: Tensor, b: Tensor, scale: Float) -> Tensor {
        precondition(rank == 2 && weight.rank == 2 && a.rank == 2 && b.rank == 2 && shape[1] == weight.shape[1]
                     && a.shape[1] == shape[1] && b.shape == [weight.shape[0], a.shape[0]],
                     "lora_linear: input \(shape), weight \(weight.shape), A \(a.shape) and B \(b.shape) do not match (expected [M, K], [N, K], [R, K], [N, R])")
        let (m, k, n, r) = (shape[0], shape[1], weight.shape[0], a.shape[0])
        precondition(r >= 1, "lora_linear: rank must be positive")
        let y0 = detached().linear(weight: weight.detached(), bias: bias?.detached(), packedWeight: packedWeight)
        let x0 = floatInput("lora_linear").detached()
        let x = x0.gemmLayout() == nil ? x0.contiguousCopy() : x0
        let (tx, ldx) = x.gemmLayout()!
        let w = weight.floatInput("lora_linear").detached().contiguous()
        let ac = a.floatInput("lora_linear").detached().contiguous(), bc = b.floatInput("lora_linear").detached().contiguous()
        let u = Tensor(uninitializedShape: [m, r])
        // y0 is this op's own fresh [M, N] output: the adapter's product accumulates into it.
        lathe_sgemm_bias(tx, 1, m, r, k, 1, x.floatPointer, ldx, ac.floatPointer, k, 0, u.floatPointer, r, nil)
        lathe_sgemm(0, 1, m, n, r, scale, u.floatPointer, r, bc.floatPointer, r, 1, y0.floatPointer, n)
        var inputs = [self, weight, a, b]
        if let bias { inputs.append(bias) }
        let (inputNeeds, weightNeeds, biasNeeds) = (requiresGrad, weight.requiresGrad, bias?.requiresGrad ?? false)
        let hasBias = bias != nil
        return y0.recorded("lora_linear", inputs) { g in
            let gc = g.contiguousStorageView()
            let du = Tensor(uninitializedShape: [m, r]), da = Tensor(uninitializedShape: [r, k]), db = Tensor(uninitializedShape: [n, r])
            lathe_sgemm(0, 0, m, r, n, scale, gc.floatPointer, n, bc.floatPointer, r, 0, du.floatPointer, r)
            lathe_sgemm(1, tx, r, k, m, 1, du.floatPointer, r, x.floatPointer, ldx, 0, da.floatPointer, k)
            lathe_sgemm(1, 0, n, r, m, scale, gc.floatPointer, n, u.floatPointer, r, 0, db.floatPointer, r)
            var dx: Tensor? = nil, dw: Tensor? = nil
            if inputNeeds {
                let d = Tensor(uninitializedShape: [m, k])
                lathe_sgemm(0, 0, m, k, n, 1, gc.floatPointer, n, w.floatPointer, k, 0, d.floatPointer, k)
                lathe_sgemm(0, 0, m, k, r, 1, du.floatPointer, r, ac.floatPointer, k, 1, d.floatPointer, k)
                dx = d
            }
            if weightNeeds {
                let d = Tensor(uninitializedShape: [n, k])
                lathe_sgemm(1, tx, n, k, m, 1, gc.floatPointer, n, x.floatPointer, ldx, 0, d.floatPointer, k)
                dw = d
            }
            var result: [Tensor?] = [dx, dw, da, db]
            if hasBias { result.append(biasNeeds ? gc.sum(dims: [0]) : nil) }
            return result
        }
    }
}

/// A matrix packed once in this CPU's GEMM panel layout, to be the right operand of many
/// products without being packed for each (a frozen weight during adapter training: packing
/// `Wᵀ` was 13-17% of a LoRA step at 128 rows). As much memory as the matrix.
public struct PackedGEMMOperand: @unchecked Sendable {
    let buffer: Tensor
    /// The layout's panel width and K block (the kernel's, checked at each product).
    let panelWidth: Int, blockDepth: Int
    /// The packed operand is `[rows, columns]`: `K × N` of the products.
    public let rows: Int, columns: Int

    /// Packs `weightᵀ` (weight `[N, K]`, float32) for products `x weightᵀ`.
    public init(transposedOf weight: Tensor) {
        precondition(weight.rank == 2 && weight.dtype == .float32, "PackedGEMMOperand: expected a float32 matrix, got \(weight.dtype) \(weight.shape)")
        let w = weight.detached().contiguous()
        let (n, k) = (w.shape[0], w.shape[1])
        let b = Tensor(uninitializedShape: [Swift.max(1, lathe_sgemm_packed_b_size(k, n))])
        var nr = 0, kc = 0
        if n > 0 && k > 0 { lathe_sgemm_pack_b(1, k, n, w.floatPointer, k, b.floatPointer, &nr, &kc) }
        (buffer, panelWidth, blockDepth, rows, columns) = (b, nr, kc, k, n)
    }

    /// Bytes held.
    public var byteCount: Int { buffer.count * 4 }
}
