/// Copies and iteration over strided tensors.
enum StridedCopy {
    /// Copies `src`'s elements in row-major order into dense memory at `dst` (same dtype).
    /// Large copies are split over the thread pool by rows (bytes for a contiguous source).
    static func copy(from src: Tensor, into dst: UnsafeMutableRawPointer) {
        let es = src.dtype.byteSize
        let n = src.count
        if n == 0 { return }
        let base = src.storage.pointer + src.offset * es
        if src.isContiguous {
            let bytes = n * es, grain = elementwiseGrain * 8
            ThreadPool.forChunks(bytes, grain: grain) { r in
                (dst + r.lowerBound).copyMemory(from: base + r.lowerBound, byteCount: r.count)
            }
            return
        }
        let (shape, strides) = collapse(shape: src.shape, strides: [src.strides])
        copyRows(shape: shape, from: base, strides: strides[0], to: dst, strides: Shape.contiguousStrides(shape), elementSize: es)
    }

    /// Copies the elements of a (collapsed) `shape` from `src` to `dst`, each addressed by its own
    /// element strides, row by row (the last dim); rows are split over the thread pool when there
    /// are many elements (each row written by one task).
    static func copyRows(shape: [Int], from src: UnsafeMutableRawPointer, strides ss: [Int],
                         to dst: UnsafeMutableRawPointer, strides ds: [Int], elementSize es: Int) {
        let inner = shape.last!, si = ss.last!, di = ds.last!
        if inner == 0 || Shape.count(shape) == 0 { return }
        ThreadPool.forChunks(Shape.count(shape) / inner, grain: Swift.max(1, elementwiseGrain / inner)) { rows in
            forRows(rows, shape: shape, strides: [ss, ds, ds]) { a, o, _ in
                let p = src + a * es, out = dst + o * es
                if si == 1 && di == 1 {
                    out.copyMemory(from: p, byteCount: inner * es)
                } else {
                    switch es {
                    case 4: copyStrided(p, si, out, di, inner, UInt32.self)
                    case 2: copyStrided(p, si, out, di, inner, UInt16.self)
                    case 8: copyStrided(p, si, out, di, inner, UInt64.self)
                    default: copyStrided(p, si, out, di, inner, UInt8.self)
                    }
                }
            }
        }
    }

    @inline(__always)
    private static func copyStrided<T>(_ p: UnsafeMutableRawPointer, _ s: Int, _ out: UnsafeMutableRawPointer, _ d: Int, _ n: Int,
                                       _: T.Type) {
        let src = p.assumingMemoryBound(to: T.self)
        let dst = out.assumingMemoryBound(to: T.self)
        for i in 0..<n { dst[i * d] = src[i * s] }
    }

    /// Merges adjacent dimensions that are contiguous with each other in every operand.
    /// Returns the collapsed shape (at least one dim) and each operand's strides.
    static func collapse(shape: [Int], strides: [[Int]]) -> ([Int], [[Int]]) {
        var outShape: [Int] = []
        var outStrides = [[Int]](repeating: [], count: strides.count)
        for d in 0..<shape.count where shape[d] != 1 {
            if let last = outShape.last,
               strides.indices.allSatisfy({ outStrides[$0].last! == strides[$0][d] * shape[d] }) {
                outShape[outShape.count - 1] = last * shape[d]
                for k in strides.indices { outStrides[k][outStrides[k].count - 1] = strides[k][d] }
            } else {
                outShape.append(shape[d])
                for k in strides.indices { outStrides[k].append(strides[k][d]) }
            }
        }
        if outShape.isEmpty {
            outShape = [1]
            for k in strides.indices { outStrides[k] = [1] }
        }
        return (outShape, outStrides)
    }

    /// Element offsets of the outer index `i` (row-major over all but the last dim).
    static func outerOffsets(_ i: Int, shape: [Int], strides: [[Int]]) -> [Int] {
        var offs = [Int](repeating: 0, count: strides.count)
        var rem = i
        for d in stride(from: shape.count - 2, through: 0, by: -1) {
            let q = rem % shape[d]
            rem /= shape[d]
            for k in strides.indices { offs[k] += q * strides[k][d] }
        }
        return offs
    }
}

extension StridedCopy {
    /// Calls `body(offA, offB, offC)` for outer rows `rows` (row-major over all but the last
    /// dim) of three operands, stepping offsets like an odometer (no allocation per row).
    static func forRows(_ rows: Range<Int>, shape: [Int], strides: [[Int]], _ body: (Int, Int, Int) -> Void) {
        let outer = shape.count - 1
        if outer == 0 { for _ in rows { body(0, 0, 0) }; return }
        let s0 = strides[0], s1 = strides[1], s2 = strides[2]
        if outer == 1 {
            for r in rows { body(r * s0[0], r * s1[0], r * s2[0]) }
            return
        }
        var idx = [Int](repeating: 0, count: outer)
        var rem = rows.lowerBound
        var a = 0, b = 0, c = 0
        for d in stride(from: outer - 1, through: 0, by: -1) {
            idx[d] = rem % shape[d]
            rem /= shape[d]
            a += idx[d] * s0[d]; b += idx[d] * s1[d]; c += idx[d] * s2[d]
        }
        for _ in rows {
            body(a, b, c)
            var d = outer - 1
            while d >= 0 {
                idx[d] += 1
                a += s0[d]; b += s1[d]; c += s2[d]
                if idx[d] < shape[d] { break }
                a -= s0[d] * shape[d]; b -= s1[d] * shape[d]; c -= s2[d] * shape[d]
                idx[d] = 0
                d -= 1
            }
        }
    }
}
