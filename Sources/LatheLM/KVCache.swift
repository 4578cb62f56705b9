/// Keys and values of the positions a model has seen, per layer, so that decoding a token
/// costs one position's work instead of the whole sequence's.
///
/// Storage is one contiguous block per layer and kind, `[kvHeads, capacity, headDim]`, filled
/// up to ``length``. With a `window`, only the last `window` positions are ever attended to,
/// and the cache keeps at most `window` of them (a ring buffer would save more memory; this
/// version keeps the capacity and stops growing past it by discarding the oldest positions).
public final class KVCache {
    public let layers: Int
    public let kvHeads: Int
    public let headDim: Int
    /// Positions the cache can hold (``reserve(_:)`` grows it).
    public private(set) var capacity: Int
    var keys: [[Float]]
    var values: [[Float]]
    /// Positions stored (the next token's position).
    public private(set) var length = 0

    public init(layers: Int, kvHeads: Int, headDim: Int, capacity: Int) {
        precondition(layers >= 1 && kvHeads >= 1 && headDim >= 1 && capacity >= 1, "KVCache: sizes must be positive")
        (self.layers, self.kvHeads, self.headDim, self.capacity) = (layers, kvHeads, headDim, capacity)
        let block = [Float](repeating: 0, count: kvHeads * capacity * headDim)
        keys = Array(repeating: block, count: layers)
        values = keys
    }

    /// A cache sized for `config` and `capacity` positions.
    public convenience init(config: DecoderConfig, capacity: Int) {
        self.init(layers: config.layers, kvHeads: config.kvHeads, headDim: config.headDim, capacity: capacity)
    }

    /// Empties the cache (keeping its storage).
    public func reset() { length = 0 }

    /// Writes `rows` new positions of `layer` (rows of `kvHeads * headDim` floats) after the
    /// stored ones. The caller advances ``length`` once every layer has written (``advance(by:)``).
    func write(layer: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, rows: Int) {
        precondition(length + rows <= capacity, "KVCache: \(length + rows) positions exceed the capacity \(capacity)")
        let rowFloats = kvHeads * headDim
        keys[layer].withUnsafeMutableBufferPointer { kp in
            values[layer].withUnsafeMutableBufferPointer { vp in
                for r in 0..<rows {
                    for h in 0..<kvHeads {
                        let dst = (h * capacity + length + r) * headDim
                        let src = r * rowFloats + h * headDim
                        (kp.baseAddress! + dst).update(from: k + src, count: headDim)
                        (vp.baseAddress! + dst).update(from: v + src, count: headDim)
                    }
                }
            }
        }
    }

    /// Marks `rows` more positions as stored.
    public func advance(by rows: Int) {
        precondition(length + rows <= capacity, "KVCache: \(length + rows) positions exceed the capacity \(capacity)")
        length += rows
    }

    /// Drops positions from `position` on (to re-run a different continuation).
    public func truncate(to position: Int) {
        precondition(position >= 0 && position <= length, "KVCache: cannot truncate to \(position) of \(length)")
        length = position
    }

    /// Grows the storage to hold at least `positions` positions, keeping the stored ones.
    public func reserve(_ positions: Int) {
        guard positions > capacity else { return }
        let old = capacity
        func regrown(_ block: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: kvHeads * positions * headDim)
            for h in 0..<kvHeads {
                let n = length * headDim
                out.withUnsafeMutableBufferPointer { o in
                    block.withUnsafeBufferPointer { b in
                        (o.baseAddress! + h * positions * headDim).update(from: b.baseAddress! + h * old * headDim, count: n)
                    }
                }
            }
            return out
        }
        keys = keys.map(regrown)
        values = values.map(regrown)
        capacity = positions
    }

    /// Bytes of key and value storage.
    public var bytes: Int { 2 * layers * kvHeads * capacity * headDim * MemoryLayout<Float>.size }
}
