extension Tensor {
    /// A view with new strides over the same storage; gradient maps back through `back`.
    func view(shape: [Int], strides: [Int], offset: Int, _ name: String, _ back: @escaping (Tensor) -> Tensor) -> Tensor {
        Tensor(storage: storage, shape: shape, strides: strides, offset: offset, dtype: dtype)
            .recorded(name, [self]) { g in [back(g)] }
    }

    /// The same elements in a new shape (one entry may be -1). A view when the layout allows,
    /// else a copy.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        let target = Shape.resolve(newShape, count: count, op: "reshape")
        if target == shape { return self }
        let oldShape = shape
        if isContiguous {
            return view(shape: target, strides: Shape.contiguousStrides(target), offset: offset, "reshape") {
                $0.reshaped(oldShape)
            }
        }
        return contiguous().reshaped(target)
    }

    /// Flattens dims `start...end` into one.
    public func flattened(from start: Int = 0, to end: Int = -1) -> Tensor {
        if rank == 0 { return reshaped([1]) }
        let s = Shape.axis(start, rank: rank, op: "flatten"), e = Shape.axis(end, rank: rank, op: "flatten")
        return reshaped(Array(shape[..<s]) + [shape[s...e].reduce(1, *)] + Array(shape[(e + 1)...]))
    }

    /// A dense row-major copy when this is a view; itself when already contiguous.
    public func contiguous() -> Tensor {
        if isContiguous { return self }
        return contiguousCopy().recorded("contiguous", [self]) { g in [g] }
    }

    /// Dimensions reordered: dim `i` of the result is dim `dims[i]` of `self`. A view.
    public func permuted(_ dims: [Int]) -> Tensor {
        precondition(dims.count == rank, "permute: \(dims) does not name \(rank) dims of shape \(shape)")
        let d = dims.map { Shape.axis($0, rank: rank, op: "permute") }
        precondition(Set(d).count == rank, "permute: \(dims) repeats a dim")
        var inverse = [Int](repeating: 0, count: rank)
        for (i, a) in d.enumerated() { inverse[a] = i }
        return view(shape: d.map { shape[$0] }, strides: d.map { strides[$0] }, offset: offset, "permute") {
            $0.permuted(inverse)
        }
    }

    /// Dims `a` and `b` swapped. A view.
    public func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
        var d = Array(0..<rank)
        d.swapAt(Shape.axis(a, rank: rank, op: "transpose"), Shape.axis(b, rank: rank, op: "transpose"))
        return permuted(d)
    }

    /// The transpose of a matrix.
    public var T: Tensor { transposed(-2, -1) }

    /// A size-1 dim inserted at `dim`.
    public func unsqueezed(_ dim: Int) -> Tensor {
        let d = dim < 0 ? dim + rank + 1 : dim
        precondition(d >= 0 && d <= rank, "unsqueeze: dim \(dim) out of range for rank \(rank)")
        var s = shape
        s.insert(1, at: d)
        return reshaped(s)
    }

    /// Size-1 dims removed (all of them, or only `dim`).
    public func squeezed(_ dim: Int? = nil) -> Tensor {
        if let dim {
            let d = Shape.axis(dim, rank: rank, op: "squeeze")
            guard shape[d] == 1 else { return self }
            var s = shape
            s.remove(at: d)
            return reshaped(s)
        }
        return reshaped(shape.filter { $0 != 1 })
    }

    /// Elements `start..<end` by `step` along `dim` (Python's `x[..., start:end:step]`; negative
    /// `start`/`end` count from the end and out-of-range bounds are clipped). A view.
    public func sliced(dim: Int, start: Int = 0, end: Int? = nil, step: Int = 1) -> Tensor {
        precondition(step > 0, "slice: step must be positive, got \(step)")
        let d = Shape.axis(dim, rank: rank, op: "slice")
        let n = shape[d]
        func clip(_ v: Int) -> Int { Swift.min(Swift.max(v < 0 ? v + n : v, 0), n) }
        let s = clip(start), e = Swift.max(clip(end ?? n), s)
        let len = (e - s + step - 1) / step
        var newShape = shape, newStrides = strides
        newShape[d] = len
        newStrides[d] = strides[d] * step
        let full = shape
        return view(shape: newShape, strides: newStrides, offset: offset + s * strides[d], "slice") { g in
            var pad = [(Int, Int)](repeating: (0, 0), count: full.count)
            if step == 1 {
                pad[d] = (s, n - e)
                return g.padded(pad)
            }
            // Scatter the gradient back with the same stride.
            let out = Tensor.zeros(full)
            var o = out
            o.assignStrided(g, dim: d, start: s, step: step)
            return o
        }
    }

    /// Writes `src` into the strided positions of `dim` (no autodiff; helper for slice's gradient).
    mutating func assignStrided(_ src: Tensor, dim d: Int, start: Int, step: Int) {
        makeUniqueContiguous()
        var st = strides
        st[d] *= step
        let dst = Tensor(storage: storage, shape: src.shape, strides: st, offset: offset + start * strides[d], dtype: dtype)
        dst.copyElements(from: src)
    }

    /// Copies `src` (same shape) into the (possibly strided) positions of this view. No autodiff.
    func copyElements(from src: Tensor) {
        precondition(src.shape == shape && src.dtype == dtype, "copy: shapes \(src.shape) and \(shape) differ")
        let es = dtype.byteSize
        let (cs, st) = StridedCopy.collapse(shape: shape, strides: [src.strides, strides])
        StridedCopy.copyRows(shape: cs, from: src.storage.pointer + src.offset * es, strides: st[0],
                             to: storage.pointer + offset * es, strides: st[1], elementSize: es)
    }

    /// A view that repeats size-1 dims to `newShape` (-1 keeps a dim). No memory is copied.
    public func expanded(to newShape: [Int]) -> Tensor {
        precondition(newShape.count >= rank, "expand: cannot expand shape \(shape) to fewer dims \(newShape)")
        let lead = newShape.count - rank
        var target = newShape
        var st = [Int](repeating: 0, count: newShape.count)
        for i in 0..<newShape.count {
            if i < lead { precondition(newShape[i] >= 0, "expand: -1 not allowed in new leading dims"); continue }
            let s = shape[i - lead]
            if target[i] == -1 { target[i] = s }
            precondition(s == target[i] || s == 1, "expand: shape \(shape) cannot expand to \(newShape)")
            st[i] = s == 1 && target[i] != 1 ? 0 : strides[i - lead]
        }
        let original = shape
        return view(shape: target, strides: st, offset: offset, "expand") { $0.summed(toShape: original) }
    }

    /// Constant padding: `pads[i] = (before, after)` for dim `i` (missing trailing dims: none).
    public func padded(_ pads: [(Int, Int)], value: Float = 0) -> Tensor {
        precondition(pads.count <= rank, "pad: \(pads.count) pad pairs for rank \(rank)")
        var outShape = shape
        for (i, p) in pads.enumerated() {
            precondition(p.0 >= 0 && p.1 >= 0, "pad: negative padding \(p) (use sliced(dim:) to crop)")
            outShape[i] += p.0 + p.1
        }
        let out = Tensor.full(outShape, value, dtype: dtype)
        var offset = 0
        let os = out.strides
        for (i, p) in pads.enumerated() { offset += p.0 * os[i] }
        Tensor(storage: out.storage, shape: shape, strides: os, offset: offset, dtype: dtype).copyElements(from: self)
        let original = shape
        return out.recorded("pad", [self]) { g in
            var t = g
            for (i, p) in pads.enumerated() where p.0 + p.1 > 0 {
                t = t.sliced(dim: i, start: p.0, end: p.0 + original[i])
            }
            return [t]
        }
    }

    /// PyTorch `F.pad` order: `[lastBefore, lastAfter, secondLastBefore, ...]`.
    public func padded(torchOrder pad: [Int], value: Float = 0) -> Tensor {
        precondition(pad.count % 2 == 0 && pad.count / 2 <= rank, "pad: bad pad list \(pad) for shape \(shape)")
        var pairs = [(Int, Int)](repeating: (0, 0), count: rank)
        for i in 0..<(pad.count / 2) { pairs[rank - 1 - i] = (pad[2 * i], pad[2 * i + 1]) }
        return padded(pairs, value: value)
    }

    /// Tensors joined along `dim`; all other dims must match.
    public static func concatenated(_ tensors: [Tensor], dim: Int = 0) -> Tensor {
        precondition(!tensors.isEmpty, "cat: no tensors")
        let first = tensors[0]
        let d = Shape.axis(dim, rank: first.rank, op: "cat")
        for t in tensors {
            var a = t.shape, b = first.shape
            precondition(a.count == b.count, "cat: shapes \(first.shape) and \(t.shape) differ in rank")
            a[d] = 0; b[d] = 0
            precondition(a == b && t.dtype == first.dtype,
                         "cat: shapes \(first.shape) and \(t.shape) differ outside dim \(dim)")
        }
        var outShape = first.shape
        outShape[d] = tensors.reduce(0) { $0 + $1.shape[d] }
        let out = Tensor(uninitializedShape: outShape, dtype: first.dtype)
        var start = 0
        var bounds: [(Int, Int)] = []
        for t in tensors {
            let part = Tensor(storage: out.storage, shape: t.shape, strides: out.strides,
                              offset: start * out.strides[d], dtype: out.dtype)
            part.copyElements(from: t)
            bounds.append((start, start + t.shape[d]))
            start += t.shape[d]
        }
        return out.recorded("cat", tensors) { g in
            bounds.map { g.sliced(dim: d, start: $0.0, end: $0.1) }
        }
    }

    /// Tensors of one shape joined along a new dim.
    public static func stacked(_ tensors: [Tensor], dim: Int = 0) -> Tensor {
        precondition(!tensors.isEmpty, "stack: no tensors")
        for t in tensors { precondition(t.shape == tensors[0].shape, "stack: shapes \(tensors[0].shape) and \(t.shape) differ") }
        return concatenated(tensors.map { $0.unsqueezed(dim) }, dim: dim < 0 ? dim + tensors[0].rank + 1 : dim)
    }

    /// Pieces of `size` along `dim` (the last may be smaller).
    public func split(size: Int, dim: Int = 0) -> [Tensor] {
        precondition(size > 0, "split: size must be positive")
        let d = Shape.axis(dim, rank: rank, op: "split")
        return stride(from: 0, to: shape[d], by: size).map { sliced(dim: d, start: $0, end: $0 + size) }
    }

    /// Pieces of the given sizes along `dim`; they must add up to the dim.
    public func split(sizes: [Int], dim: Int = 0) -> [Tensor] {
        let d = Shape.axis(dim, rank: rank, op: "split")
        precondition(sizes.reduce(0, +) == shape[d], "split: sizes \(sizes) do not add up to \(shape[d]) (dim \(dim) of \(shape))")
        var start = 0
        return sizes.map { s in defer { start += s }; return sliced(dim: d, start: start, end: start + s) }
    }
}
