import Foundation

/// A counter-based random generator (Philox-4x32-10, Salmon et al., SC'11).
///
/// Element `i` of a draw depends only on the seed, the generator's offset and `i`, so
/// results are the same whatever the thread count. Each draw advances ``offset`` by the
/// number of 4-word blocks it used; saving `(seed, offset)` saves the whole state.
public struct RandomGenerator: Sendable, Hashable, Codable {
    public let seed: UInt64
    /// Blocks of four 32-bit words consumed so far.
    public var offset: UInt64

    public init(seed: UInt64, offset: UInt64 = 0) {
        self.seed = seed
        self.offset = offset
    }

    /// The four words of block `counter` (Philox-4x32 with 10 rounds).
    @inline(__always)
    static func philox(seed: UInt64, counter: UInt64) -> (UInt32, UInt32, UInt32, UInt32) {
        var c0 = UInt32(truncatingIfNeeded: counter), c1 = UInt32(truncatingIfNeeded: counter >> 32)
        var c2: UInt32 = 0, c3: UInt32 = 0
        var k0 = UInt32(truncatingIfNeeded: seed), k1 = UInt32(truncatingIfNeeded: seed >> 32)
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let n0 = UInt32(truncatingIfNeeded: p1 >> 32) ^ c1 ^ k0
            let n2 = UInt32(truncatingIfNeeded: p0 >> 32) ^ c3 ^ k1
            c1 = UInt32(truncatingIfNeeded: p1)
            c3 = UInt32(truncatingIfNeeded: p0)
            c0 = n0
            c2 = n2
            k0 &+= 0x9E37_79B9
            k1 &+= 0xBB67_AE85
        }
        return (c0, c1, c2, c3)
    }

    /// Reserves blocks for `count` elements (4 per block) and returns the first block.
    mutating func reserve(_ count: Int) -> UInt64 {
        let start = offset
        offset &+= UInt64((count + 3) / 4)
        return start
    }

    /// Fills `count` floats: `body(words)` maps a block's 4 words to 4 values.
    mutating func fill(_ count: Int, into p: UnsafeMutablePointer<Float>,
                       _ body: @escaping ((UInt32, UInt32, UInt32, UInt32)) -> (Float, Float, Float, Float)) {
        let start = reserve(count)
        let seed = self.seed
        let blocks = (count + 3) / 4
        ThreadPool.forChunks(blocks, grain: 4096) { r in
            for b in r {
                let v = body(RandomGenerator.philox(seed: seed, counter: start &+ UInt64(b)))
                let i = b * 4
                p[i] = v.0
                if i + 1 < count { p[i + 1] = v.1 }
                if i + 2 < count { p[i + 2] = v.2 }
                if i + 3 < count { p[i + 3] = v.3 }
            }
        }
    }
}

/// Uniform in [0, 1) from the top 24 bits.
@inline(__always) func unitFloat(_ u: UInt32) -> Float { Float(u >> 8) * 0x1p-24 }
/// Uniform in (0, 1], safe for log.
@inline(__always) func unitFloatOpen(_ u: UInt32) -> Float { Float((u >> 8) + 1) * 0x1p-24 }

extension Tensor {
    /// Uniform values in `[low, high)`.
    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1, generator: inout RandomGenerator) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        let span = high - low
        generator.fill(t.count, into: t.floatPointer) { w in
            (low + span * unitFloat(w.0), low + span * unitFloat(w.1), low + span * unitFloat(w.2), low + span * unitFloat(w.3))
        }
        return t
    }

    /// Normal values with `mean` and `std` (Box-Muller on each pair of words).
    public static func normal(_ shape: [Int], mean: Float = 0, std: Float = 1, generator: inout RandomGenerator) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        generator.fill(t.count, into: t.floatPointer) { w in
            let r0 = Foundation.sqrt(-2 * Foundation.log(Double(unitFloatOpen(w.0))))
            let r1 = Foundation.sqrt(-2 * Foundation.log(Double(unitFloatOpen(w.2))))
            let a0 = 2 * Double.pi * Double(unitFloat(w.1)), a1 = 2 * Double.pi * Double(unitFloat(w.3))
            return (mean + std * Float(r0 * Foundation.cos(a0)), mean + std * Float(r0 * Foundation.sin(a0)),
                    mean + std * Float(r1 * Foundation.cos(a1)), mean + std * Float(r1 * Foundation.sin(a1)))
        }
        return t
    }

    /// 1 with probability `p`, else 0 (float32).
    public static func bernoulli(_ shape: [Int], p: Float, generator: inout RandomGenerator) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        generator.fill(t.count, into: t.floatPointer) { w in
            (unitFloat(w.0) < p ? 1 : 0, unitFloat(w.1) < p ? 1 : 0, unitFloat(w.2) < p ? 1 : 0, unitFloat(w.3) < p ? 1 : 0)
        }
        return t
    }

    /// Integers uniform in `[low, high)` (int64).
    public static func randint(_ shape: [Int], low: Int, high: Int, generator: inout RandomGenerator) -> Tensor {
        precondition(high > low, "randint: empty range [\(low), \(high))")
        let n = Shape.count(shape)
        let out = Tensor(uninitializedShape: shape, dtype: .int64)
        let p = out.pointer(as: Int64.self)
        let start = generator.reserve(n * 2)
        let span = UInt64(high - low)
        // Two words per value: a 64-bit draw; the modulo bias is below 2^-32 for spans < 2^32.
        for b in 0..<((n + 1) / 2) {
            let w = RandomGenerator.philox(seed: generator.seed, counter: start &+ UInt64(b))
            let v0 = (UInt64(w.0) << 32 | UInt64(w.1)) % span, v1 = (UInt64(w.2) << 32 | UInt64(w.3)) % span
            p[2 * b] = Int64(low) + Int64(v0)
            if 2 * b + 1 < n { p[2 * b + 1] = Int64(low) + Int64(v1) }
        }
        return out
    }

    /// A random permutation of `0..<n` (int64), by Fisher-Yates.
    public static func permutation(_ n: Int, generator: inout RandomGenerator) -> Tensor {
        var values = Array(0..<n)
        if n > 1 {
            let draws = randint([n], low: 0, high: Int(UInt32.max), generator: &generator).intScalars
            for i in stride(from: n - 1, to: 0, by: -1) {
                values.swapAt(i, draws[i] % (i + 1))
            }
        }
        return Tensor(values)
    }
}

/// Fan-in and fan-out of a weight shape as PyTorch computes them: `[out, in, k...]`.
public func fans(_ shape: [Int]) -> (fanIn: Int, fanOut: Int) {
    precondition(shape.count >= 2, "fans: weight shape \(shape) needs at least 2 dims")
    let receptive = shape.dropFirst(2).reduce(1, *)
    return (shape[1] * receptive, shape[0] * receptive)
}

/// Weight initialisers (He et al. 2015; Glorot & Bengio 2010), as in `torch.nn.init`.
public enum Init {
    /// Uniform in `[-b, b]`, `b = gain * sqrt(3 / fanIn)`, gain `sqrt(2 / (1 + a^2))` (leaky ReLU slope `a`).
    public static func kaimingUniform(_ shape: [Int], a: Float = 0, generator: inout RandomGenerator) -> Tensor {
        let gain = Foundation.sqrt(2 / (1 + a * a))
        let bound = gain * Foundation.sqrt(3 / Float(fans(shape).fanIn))
        return Tensor.uniform(shape, low: -bound, high: bound, generator: &generator)
    }

    /// Normal with `std = gain / sqrt(fanIn)`.
    public static func kaimingNormal(_ shape: [Int], a: Float = 0, generator: inout RandomGenerator) -> Tensor {
        let gain = Foundation.sqrt(2 / (1 + a * a))
        return Tensor.normal(shape, std: gain / Foundation.sqrt(Float(fans(shape).fanIn)), generator: &generator)
    }

    /// Uniform in `[-b, b]`, `b = gain * sqrt(6 / (fanIn + fanOut))`.
    public static func xavierUniform(_ shape: [Int], gain: Float = 1, generator: inout RandomGenerator) -> Tensor {
        let f = fans(shape)
        let bound = gain * Foundation.sqrt(6 / Float(f.fanIn + f.fanOut))
        return Tensor.uniform(shape, low: -bound, high: bound, generator: &generator)
    }

    /// Normal with `std = gain * sqrt(2 / (fanIn + fanOut))`.
    public static func xavierNormal(_ shape: [Int], gain: Float = 1, generator: inout RandomGenerator) -> Tensor {
        let f = fans(shape)
        return Tensor.normal(shape, std: gain * Foundation.sqrt(2 / Float(f.fanIn + f.fanOut)), generator: &generator)
    }
}
