import CLatheKernels

extension Tensor {
    /// Normalised, sorted, de-duplicated dims; nil or empty means all.
    func reductionDims(_ dims: [Int]?, _ op: String) -> [Int] {
        guard let dims, !dims.isEmpty else { return Array(0..<rank) }
        return Array(Set(dims.map { Shape.axis($0, rank: rank, op: op) })).sorted()
    }

    /// Runs a C reduction over `dims`; returns the reduced tensor with kept dims (size 1).
    /// The input is laid out as [outer, len, inner] (permuting reduced dims together first
    /// when they are not adjacent), so the summation order never depends on threads.
    func reduceKernel(_ op: lathe_reduce_op, dims: [Int]) -> Tensor {
        if dims.isEmpty {  // a scalar: the reduction of one element is itself (squared for SUMSQ)
            let x = floatInput("reduce").detached()
            return op == LATHE_R_SUMSQ ? x.square() : x.contiguousCopy()
        }
        var keptShape = shape
        for d in dims { keptShape[d] = 1 }
        let out = Tensor(uninitializedShape: keptShape)
        if count == 0 {
            out.floatPointer.initialize(repeating: op == LATHE_R_SUM || op == LATHE_R_SUMSQ ? 0 : .nan, count: out.count)
            return out
        }
        let (x, outer, len, inner) = reductionLayout(dims)
        let xp = x.floatPointer, yp = out.floatPointer
        let opCode = Int32(op.rawValue)
        if outer * inner == 1 && len > 2 * elementwiseGrain {
            // One long sum: fixed chunks, partial results combined in order.
            let chunks = (len + elementwiseGrain - 1) / elementwiseGrain
            let partial = Tensor(uninitializedShape: [chunks])
            let pp = partial.floatPointer
            ThreadPool.forEach(chunks) { c in
                let s = c * elementwiseGrain
                lathe_reduce_f32(opCode, xp + s, 1, Swift.min(elementwiseGrain, len - s), 1, pp + c)
            }
            let combine = op == LATHE_R_SUMSQ ? Int32(LATHE_R_SUM.rawValue) : opCode
            lathe_reduce_f32(combine, pp, 1, chunks, 1, yp)
            return out
        }
        let perTask = Swift.max(1, elementwiseGrain / Swift.max(len * inner, 1))
        ThreadPool.forChunks(outer, grain: perTask) { r in
            lathe_reduce_f32(opCode, xp + r.lowerBound * len * inner, r.count, len, inner, yp + r.lowerBound * inner)
        }
        return out
    }

    /// A contiguous tensor and [outer, len, inner] such that reducing `dims` reduces `len`.
    func reductionLayout(_ dims: [Int]) -> (Tensor, Int, Int, Int) {
        let adjacent = dims.last! - dims.first! + 1 == dims.count
        if adjacent {
            let x = floatInput("reduce").contiguous().detached()
            let outer = shape[..<dims.first!].reduce(1, *)
            let len = dims.reduce(1) { $0 * shape[$1] }
            let inner = shape[(dims.last! + 1)...].reduce(1, *)
            return (x, outer, len, inner)
        }
        let keep = (0..<rank).filter { !dims.contains($0) }
        let x = floatInput("reduce").detached().permuted(keep + dims).contiguous()
        return (x, keep.reduce(1) { $0 * shape[$1] }, dims.reduce(1) { $0 * shape[$1] }, 1)
    }

    func droppingDims(_ t: Tensor, _ dims: [Int], keep: Bool) -> Tensor {
        keep ? t : t.reshaped(shape.enumerated().filter { !dims.contains($0.offset) }.map(\.element))
    }

    /// Sum over `dims` (all when nil).
    public func sum(dims: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let d = reductionDims(dims, "sum")
        let kept = reduceKernel(LATHE_R_SUM, dims: d)
        let inShape = shape
        return droppingDims(kept, d, keep: keepDims).recorded("sum", [self]) { g in
            var keptShape = inShape
            for i in d { keptShape[i] = 1 }
            return [g.reshaped(keptShape).expanded(to: inShape).contiguous()]
        }
    }

    /// Sum along one dim.
    public func sum(dim: Int, keepDims: Bool = false) -> Tensor { sum(dims: [dim], keepDims: keepDims) }

    /// Mean over `dims` (all when nil).
    public func mean(dims: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let d = reductionDims(dims, "mean")
        let n = d.reduce(1) { $0 * shape[$1] }
        return sum(dims: d, keepDims: keepDims) / Float(n)
    }

    public func mean(dim: Int, keepDims: Bool = false) -> Tensor { mean(dims: [dim], keepDims: keepDims) }

    /// Variance over `dims` with `correction` (1 = unbiased, as PyTorch's default).
    public func variance(dims: [Int]? = nil, correction: Int = 1, keepDims: Bool = false) -> Tensor {
        let d = reductionDims(dims, "var")
        let n = d.reduce(1) { $0 * shape[$1] }
        let centered = self - mean(dims: d, keepDims: true)
        return centered.square().sum(dims: d, keepDims: keepDims) / Float(Swift.max(n - correction, 0))
    }

    /// Standard deviation over `dims` with `correction`.
    public func standardDeviation(dims: [Int]? = nil, correction: Int = 1, keepDims: Bool = false) -> Tensor {
        variance(dims: dims, correction: correction, keepDims: keepDims).sqrt()
    }

    /// `log(sum(exp(x)))` over `dims`, computed stably.
    public func logSumExp(dims: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let d = reductionDims(dims, "logsumexp")
        var m = reduceKernel(LATHE_R_MAX, dims: d)
        // Rows of -inf (or inf) would give NaN after subtraction; shift by 0 there.
        m = noGrad { Tensor.where(m.abs() .== Float.infinity, Tensor(0), m) }
        let s = (self - m).exp().sum(dims: d, keepDims: true).log() + m
        return keepDims ? s : droppingDims(s, d, keep: false)
    }

    /// Max along `dim` with the index of the first maximum (NaN wins).
    public func max(dim: Int, keepDims: Bool = false) -> (values: Tensor, indices: Tensor) {
        argReduce(LATHE_R_MAX, dim: dim, keepDims: keepDims, "max")
    }

    /// Min along `dim` with the index of the first minimum.
    public func min(dim: Int, keepDims: Bool = false) -> (values: Tensor, indices: Tensor) {
        argReduce(LATHE_R_MIN, dim: dim, keepDims: keepDims, "min")
    }

    /// The largest element (gradient shared evenly among ties, as PyTorch).
    public func max() -> Tensor { extremum(LATHE_R_MAX, "max") }
    /// The smallest element.
    public func min() -> Tensor { extremum(LATHE_R_MIN, "min") }

    public func argmax(dim: Int, keepDims: Bool = false) -> Tensor { max(dim: dim, keepDims: keepDims).indices }
    public func argmin(dim: Int, keepDims: Bool = false) -> Tensor { min(dim: dim, keepDims: keepDims).indices }

    private func extremum(_ op: lathe_reduce_op, _ name: String) -> Tensor {
        let all = Array(0..<rank)
        let v = reduceKernel(op, dims: all).reshaped([])
        let x = self
        return v.recorded(name, [self]) { g in
            let mask = (x.detached() .== v).to(.float32)
            return [mask * (g / mask.sum())]
        }
    }

    private func argReduce(_ op: lathe_reduce_op, dim: Int, keepDims: Bool, _ name: String) -> (values: Tensor, indices: Tensor) {
        let d = Shape.axis(dim, rank: rank, op: name)
        let x = floatInput(name).contiguous().detached()
        var keptShape = shape
        keptShape[d] = 1
        let values = Tensor(uninitializedShape: keptShape)
        let indices = Tensor(uninitializedShape: keptShape, dtype: .int64)
        let outer = shape[..<d].reduce(1, *), len = shape[d], inner = shape[(d + 1)...].reduce(1, *)
        precondition(len > 0, "\(name): dim \(dim) of shape \(shape) is empty")
        let xp = x.floatPointer, vp = values.floatPointer, ip = indices.pointer(as: Int64.self)
        let perTask = Swift.max(1, elementwiseGrain / Swift.max(len * inner, 1))
        ThreadPool.forChunks(outer, grain: perTask) { r in
            let o = r.lowerBound
            lathe_argreduce_f32(Int32(op.rawValue), xp + o * len * inner, r.count, len, inner, vp + o * inner, ip + o * inner)
        }
        let inShape = shape
        let v = values.recorded(name, [self]) { g in
            [Tensor.zeros(inShape).scatteringAdd(dim: d, index: indices, source: g)]
        }
        return (droppingDims(v, [d], keep: keepDims), droppingDims(indices, [d], keep: keepDims))
    }

    /// Softmax along `dim`: `exp(x - max) / sum(exp(x - max))`.
    public func softmax(dim: Int = -1) -> Tensor { softmaxKernel(dim: dim, log: false) }

    /// Log-softmax along `dim`: `x - max - log(sum(exp(x - max)))`.
    public func logSoftmax(dim: Int = -1) -> Tensor { softmaxKernel(dim: dim, log: true) }

    private func softmaxKernel(dim: Int, log: Bool) -> Tensor {
        let d = Shape.axis(dim, rank: rank, op: "softmax")
        if d != rank - 1 {
            return transposed(d, -1).softmaxKernel(dim: -1, log: log).transposed(d, -1)
        }
        let x = floatInput("softmax").contiguous().detached()
        let len = Swift.max(shape.last ?? 1, 1), rows = count / len
        let y = Tensor(uninitializedShape: shape)
        let xp = x.floatPointer, yp = y.floatPointer
        let perTask = Swift.max(1, elementwiseGrain / len)
        ThreadPool.forChunks(rows, grain: perTask) { r in
            let o = r.lowerBound * len
            lathe_softmax_f32(xp + o, yp + o, r.count, len, log ? 1 : 0)
        }
        return y.recorded(log ? "log_softmax" : "softmax", [self]) { g in
            let gc = g.contiguousStorageView()
            let dx = Tensor(uninitializedShape: y.shape)
            let gp = gc.floatPointer, dp = dx.floatPointer
            ThreadPool.forChunks(rows, grain: perTask) { r in
                let o = r.lowerBound * len
                lathe_softmax_backward_f32(yp + o, gp + o, dp + o, r.count, len, log ? 1 : 0)
            }
            return [dx]
        }
    }

    /// Running sum along `dim`.
    public func cumulativeSum(dim: Int) -> Tensor {
        let d = Shape.axis(dim, rank: rank, op: "cumsum")
        let x = floatInput("cumsum").contiguous().detached()
        let out = Tensor(uninitializedShape: shape)
        let outer = shape[..<d].reduce(1, *), len = shape[d], inner = shape[(d + 1)...].reduce(1, *)
        let xp = x.floatPointer, yp = out.floatPointer
        ThreadPool.forChunks(outer, grain: Swift.max(1, elementwiseGrain / Swift.max(len * inner, 1))) { r in
            for o in r {
                let base = o * len * inner
                for j in 0..<inner { yp[base + j] = xp[base + j] }
                for l in 1..<Swift.max(len, 1) {
                    let row = base + l * inner
                    for j in 0..<inner { yp[row + j] = yp[row - inner + j] + xp[row + j] }
                }
            }
        }
        return out.recorded("cumsum", [self]) { g in
            // d/dx_i sum_{j>=i} g_j: a reversed cumulative sum.
            [g.flipped(dim: d).cumulativeSum(dim: d).flipped(dim: d)]
        }
    }

    /// Elements in reverse order along `dim`.
    public func flipped(dim: Int) -> Tensor {
        let d = Shape.axis(dim, rank: rank, op: "flip")
        let idx = Tensor((0..<shape[d]).reversed().map { $0 })
        return indexSelect(dim: d, index: idx)
    }

    /// Sorted values along `dim` with their original indices (stable).
    public func sorted(dim: Int = -1, descending: Bool = false) -> (values: Tensor, indices: Tensor) {
        let d = Shape.axis(dim, rank: rank, op: "sort")
        let idx = argsort(dim: d, descending: descending)
        return (gathering(dim: d, index: idx), idx)
    }

    /// Indices that sort `dim` (stable; NaN sorts as largest).
    public func argsort(dim: Int = -1, descending: Bool = false) -> Tensor {
        let d = Shape.axis(dim, rank: rank, op: "argsort")
        let x = floatInput("argsort").transposed(d, -1).contiguous().detached()
        let len = shape[d], rows = len == 0 ? 0 : x.count / len
        let out = Tensor(uninitializedShape: x.shape, dtype: .int64)
        let xp = x.floatPointer, ip = out.pointer(as: Int64.self)
        ThreadPool.forChunks(rows, grain: Swift.max(1, 4096 / Swift.max(len, 1))) { r in
            var order = [Int](repeating: 0, count: len)
            for row in r {
                let p = xp + row * len
                for i in 0..<len { order[i] = i }
                order.sort { a, b in
                    let va = p[a], vb = p[b]
                    if va.isNaN || vb.isNaN {
                        if va.isNaN && vb.isNaN { return a < b }
                        return descending ? va.isNaN : vb.isNaN
                    }
                    if va != vb { return descending ? va > vb : va < vb }
                    return a < b
                }
                for i in 0..<len { ip[row * len + i] = Int64(order[i]) }
            }
        }
        return out.transposed(d, -1).contiguous()
    }

    /// The `k` largest (or smallest) values along `dim`, sorted, with their indices.
    public func topK(_ k: Int, dim: Int = -1, largest: Bool = true) -> (values: Tensor, indices: Tensor) {
        let d = Shape.axis(dim, rank: rank, op: "topk")
        precondition(k >= 0 && k <= shape[d], "topk: k = \(k) out of range for dim \(dim) of shape \(shape)")
        let idx = argsort(dim: d, descending: largest).sliced(dim: d, end: k).contiguous()
        return (gathering(dim: d, index: idx), idx)
    }
}
