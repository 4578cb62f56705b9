/// A shape error: the op and the shapes involved. Ops on tensors treat these as programmer
/// errors and stop with ``description``; the throwing helpers let callers that take
/// shapes from outside (files, recipes) report them instead.
public struct ShapeError: Error, CustomStringConvertible, Equatable {
    public let op: String
    public let message: String
    public var description: String { "\(op): \(message)" }
}

/// Shape arithmetic shared by the ops.
public enum Shape {
    public static func count(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var s = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i] = s
            s *= max(shape[i], 1)
        }
        return strides
    }

    static func isContiguous(shape: [Int], strides: [Int]) -> Bool {
        var expected = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) where shape[i] != 1 {
            if strides[i] != expected { return false }
            expected *= shape[i]
        }
        return true
    }

    /// Normalises a possibly negative axis; stops with a message if out of range.
    static func axis(_ axis: Int, rank: Int, op: String) -> Int {
        let a = axis < 0 ? axis + rank : axis
        precondition(a >= 0 && a < max(rank, 1), "\(op): dim \(axis) is out of range for a tensor of rank \(rank)")
        return a
    }

    /// NumPy broadcasting of two shapes.
    public static func broadcast(_ a: [Int], _ b: [Int], op: String = "broadcast") throws(ShapeError) -> [Int] {
        let rank = max(a.count, b.count)
        var out = [Int](repeating: 1, count: rank)
        for i in 0..<rank {
            let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
            let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
            if da == db || db == 1 { out[i] = da } else if da == 1 { out[i] = db } else {
                throw ShapeError(op: op, message: "shapes \(a) and \(b) do not broadcast (dim \(i): \(da) vs \(db))")
            }
        }
        return out
    }

    /// Broadcasting that stops with the op's name and both shapes on mismatch.
    static func broadcastOrDie(_ a: [Int], _ b: [Int], op: String) -> [Int] {
        do { return try broadcast(a, b, op: op) } catch { preconditionFailure(error.description) }
    }

    /// Strides to read a tensor of `shape`/`strides` as if it had shape `target` (right-aligned,
    /// size-1 and missing dims get stride 0).
    static func broadcastStrides(shape: [Int], strides: [Int], to target: [Int]) -> [Int] {
        var out = [Int](repeating: 0, count: target.count)
        let lead = target.count - shape.count
        for i in 0..<shape.count where shape[i] != 1 {
            out[lead + i] = strides[i]
        }
        return out
    }

    /// Resolves one -1 entry of a requested shape against an element count.
    static func resolve(_ requested: [Int], count: Int, op: String) -> [Int] {
        precondition(requested.allSatisfy { $0 >= -1 }, "\(op): negative size in \(requested)")
        var shape = requested
        let unknown = shape.indices.filter { shape[$0] == -1 }
        precondition(unknown.count <= 1, "\(op): at most one -1 allowed in \(requested)")
        if let u = unknown.first {
            let known = shape.enumerated().filter { $0.offset != u }.reduce(1) { $0 * $1.element }
            precondition(known > 0 && count % known == 0, "\(op): cannot infer -1 in \(requested) for \(count) elements")
            shape[u] = count / known
        }
        precondition(Shape.count(shape) == count, "\(op): shape \(requested) does not hold \(count) elements")
        return shape
    }
}
