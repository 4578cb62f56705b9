import CLatheKernels

extension Tensor {
    /// Indices as Int64 contiguous (int32 accepted), checked against `bound` along `op`.
    func indexPointer(_ op: String, bound: Int) -> (Tensor, UnsafeMutablePointer<Int64>) {
        precondition(dtype == .int64 || dtype == .int32, "\(op): index must be int64 or int32, got \(dtype) of shape \(shape)")
        let idx = (dtype == .int64 ? self : to(.int64)).contiguousStorageView()
        let p = idx.pointer(as: Int64.self)
        for i in 0..<idx.count {
            precondition(p[i] >= -Int64(bound) && p[i] < Int64(bound), "\(op): index \(p[i]) out of range for size \(bound)")
        }
        return (idx, p)
    }

    /// `out[i][j][k] = self[index[i][j][k]][j][k]` for dim 0, and so on (`torch.gather`).
    public func gathering(dim: Int, index: Tensor) -> Tensor {
        let d = Shape.axis(dim, rank: rank, op: "gather")
        precondition(index.rank == rank, "gather: index shape \(index.shape) and input shape \(shape) differ in rank")
        for i in 0..<rank where i != d {
            precondition(index.shape[i] <= shape[i], "gather: index shape \(index.shape) exceeds input shape \(shape) at dim \(i)")
        }
        let x = contiguous().detached()
        let (idx, ip) = index.indexPointer("gather", bound: shape[d])
        let out = Tensor(uninitializedShape: index.shape, dtype: dtype)
        let es = dtype.byteSize
        let outer = index.shape[..<d].reduce(1, *), len = index.shape[d], inner = index.shape[(d + 1)...].reduce(1, *)
        let xLen = shape[d]
        let xSt = x.strides
        let xp = x.storage.pointer + x.offset * es, op = out.storage.pointer
        // Walk index positions; map (o, l, j) to input coordinates.
        let innerShape = Array(index.shape[(d + 1)...]), outerShape = Array(index.shape[..<d])
        for o in 0..<outer {
            var xo = 0, rem = o
            for k in stride(from: outerShape.count - 1, through: 0, by: -1) {
                xo += (rem % outerShape[k]) * xSt[k]; rem /= outerShape[k]
            }
            for l in 0..<len {
                for j in 0..<inner {
                    var xj = 0, r2 = j
                    for k in stride(from: innerShape.count - 1, through: 0, by: -1) {
                        xj += (r2 % innerShape[k]) * xSt[d + 1 + k]; r2 /= innerShape[k]
                    }
                    let pos = (o * len + l) * inner + j
                    var i = Int(ip[pos]); if i < 0 { i += xLen }
                    (op + pos * es).copyMemory(from: xp + (xo + i * xSt[d] + xj) * es, byteCount: es)
                }
            }
        }
        _ = idx
        let inShape = shape
        return out.recorded("gather", [self]) { g in
            [Tensor.zeros(inShape).scatteringAdd(dim: d, index: index, source: g)]
        }
    }

    /// A copy of `self` with `source` added at `index` along `dim` (`torch.scatter_add`).
    /// Duplicate indices accumulate.
    public func scatteringAdd(dim: Int, index: Tensor, source: Tensor) -> Tensor {
        let d = Shape.axis(dim, rank: rank, op: "scatter_add")
        precondition(index.rank == rank && source.shape == index.shape,
                     "scatter_add: input \(shape), index \(index.shape) and source \(source.shape) must have one rank, and index and source one shape")
        for i in 0..<rank where i != d {
            precondition(index.shape[i] <= shape[i], "scatter_add: index shape \(index.shape) exceeds input shape \(shape) at dim \(i)")
        }
        var out = floatInput("scatter_add").contiguousCopy()
        let (idx, ip) = index.indexPointer("scatter_add", bound: shape[d])
        let src = source.floatInput("scatter_add").contiguous().detached()
        let sp = src.floatPointer, yp = out.floatPointer
        let ys = out.strides
        let ishape = index.shape
        let n = index.count
        let istr = Shape.contiguousStrides(ishape), sstr = src.strides
        for pos in 0..<n {
            var rem = pos, yo = 0, so = 0
            for k in 0..<rank {
                let c = rem / istr[k]; rem %= istr[k]
                so += c * sstr[k]
                if k == d {
                    var i = Int(ip[pos]); if i < 0 { i += shape[d] }
                    yo += i * ys[k]
                } else {
                    yo += c * ys[k]
                }
            }
            yp[yo] += sp[so]
        }
        _ = idx
        out.node = nil
        return out.recorded("scatter_add", [self, source]) { g in
            [g, source.requiresGrad ? g.gathering(dim: d, index: index) : nil]
        }
    }

    /// Slices of `self` at `index` (1-D) along `dim`, in that order (`torch.index_select`).
    public func indexSelect(dim: Int, index: Tensor) -> Tensor {
        let d = Shape.axis(dim, rank: rank, op: "index_select")
        precondition(index.rank <= 1, "index_select: index must be 1-D, got shape \(index.shape)")
        let (idx, ip) = index.indexPointer("index_select", bound: shape[d])
        let x = contiguous().detached()
        var outShape = shape
        outShape[d] = idx.count
        let out = Tensor(uninitializedShape: outShape, dtype: dtype)
        let es = dtype.byteSize
        let outer = shape[..<d].reduce(1, *), inner = shape[(d + 1)...].reduce(1, *) * es
        let xp = x.storage.pointer + x.offset * es, yp = out.storage.pointer
        let n = idx.count, len = shape[d]
        ThreadPool.forChunks(outer, grain: Swift.max(1, (1 << 18) / Swift.max(n * inner, 1))) { r in
            for o in r {
                for k in 0..<n {
                    var i = Int(ip[k]); if i < 0 { i += len }
                    (yp + (o * n + k) * inner).copyMemory(from: xp + (o * len + i) * inner, byteCount: inner)
                }
            }
        }
        let inShape = shape
        return out.recorded("index_select", [self]) { g in
            // Add the gradient's rows back, in index order (duplicates accumulate).
            let gc = g.floatInput("index_select").contiguousStorageView()
            let dx = Tensor.zeros(inShape)
            let row = inShape[(d + 1)...].reduce(1, *)
            let gp = gc.floatPointer, dp = dx.floatPointer, ip = idx.pointer(as: Int64.self)
            for o in 0..<outer {
                for k in 0..<n {
                    var i = Int(ip[k]); if i < 0 { i += len }
                    lathe_axpy_f32(row, 1, gp + (o * n + k) * row, dp + (o * len + i) * row)
                }
            }
            return [dx]
        }
    }

    /// Rows of an embedding table: `self` is `[vocab, dim]`, `indices` any shape of ids;
    /// the result has shape `indices.shape + [dim]`.
    public func embedding(_ indices: Tensor) -> Tensor {
        precondition(rank == 2, "embedding: weight must be [vocab, dim], got \(shape)")
        return indexSelect(dim: 0, index: indices.reshaped([-1])).reshaped(indices.shape + [shape[1]])
    }

    /// `value` where `mask` is true, else `self` (mask broadcasts).
    public func maskedFill(_ mask: Tensor, _ value: Float) -> Tensor {
        Tensor.where(mask, Tensor(value), self)
    }

    /// Elementwise choice: `a` where `condition` is non-zero, else `b` (all broadcast).
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
        let c = condition.dtype == .float32 ? (condition.detached() .!= Tensor(0)).to(.float32) : condition.to(.bool).to(.float32)
        let shape = Shape.broadcastOrDie(Shape.broadcastOrDie(c.shape, a.shape, op: "where"), b.shape, op: "where")
        let ad = a.detached(), bd = b.detached()
        // b + c * (a - b) is wrong for inf/nan; select exactly instead.
        let out = Tensor(uninitializedShape: shape)
        let ce = c.expanded(to: shape).contiguous(), ae = ad.expanded(to: shape).contiguous(), be = bd.expanded(to: shape).contiguous()
        let cp = ce.floatPointer, ap = ae.floatPointer, bp = be.floatPointer, yp = out.floatPointer
        ThreadPool.forChunks(out.count, grain: elementwiseGrain) { r in
            for i in r { yp[i] = cp[i] != 0 ? ap[i] : bp[i] }
        }
        return out.recorded("where", [a, b]) { g in
            let zero = Tensor.zeros([])
            return [a.requiresGrad ? Tensor.where(c, g, zero).summed(toShape: a.shape) : nil,
                    b.requiresGrad ? Tensor.where(c, zero, g).summed(toShape: b.shape) : nil]
        }
    }

    /// One-hot encoding of int class ids: shape `self.shape + [classes]`, int64.
    public func oneHot(classes: Int) -> Tensor {
        let (idx, ip) = indexPointer("one_hot", bound: classes)
        let out = Tensor.zeros(shape + [classes], dtype: .int64)
        let op = out.pointer(as: Int64.self)
        for i in 0..<idx.count { precondition(ip[i] >= 0, "one_hot: negative class \(ip[i])"); op[i * classes + Int(ip[i])] = 1 }
        return out
    }
}
