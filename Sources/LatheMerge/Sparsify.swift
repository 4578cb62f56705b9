import Foundation
import LatheTensor

/// Drops entries of a task vector (`delta`, `count` floats, in place) as mergekit's
/// `sparsify` does (mergekit/sparsify.py), optionally rescaling what is kept.
///
/// - magnitude (TIES): keep the `k = max(1, ⌊density·n⌋)` largest |δ|;
/// - magnitudeOutliers (breadcrumbs): sort |δ| ascending, drop the `n − ⌊density·n⌋ − ⌊γ·n⌋`
///   smallest and the `⌊γ·n⌋` largest;
/// - random (DARE): keep each entry with probability `density`;
/// - dellaMagprune (DELLA): per row (a 1-D tensor is one row), the entry of rank r (0 for the
///   smallest |δ|) of a row of c is kept with probability `(density − ε) + r/(c−1)·2ε`.
///
/// Rescaling (`rescale`): mergekit's matches the L1 norm: kept · (Σ|δ| / Σ|kept|), unless
/// either sum is below 1e-7. ``DARERescale/inverseDensity`` divides by `density` instead, as
/// PEFT's DARE does. Random draws come from Lathe's counter-based generator: entry i uses
/// word i of the stream of `generator`, so a seed gives the same mask at any thread count.
public enum Sparsify {
    static let grain = 1 << 16

    public static func apply(_ method: MergeMethod.Sparsification, delta: UnsafeMutablePointer<Float>, count n: Int, rowLength: Int,
                      density: Double, gamma: Double, epsilon: Double, rescale: DARERescale?, generator: RandomGenerator,
                      tensor: String) throws {
        guard density.isFinite else { throw MergeError.invalidParameter(tensor: tensor, message: "density is \(density); give a number in [0, 1]") }
        guard gamma.isFinite, (0...1).contains(gamma) else { throw MergeError.invalidParameter(tensor: tensor, message: "gamma is \(gamma); give a number in [0, 1]") }
        guard epsilon.isFinite else { throw MergeError.invalidParameter(tensor: tensor, message: "epsilon is \(epsilon); give a number in (0, 1)") }
        // Below 0 drops everything and above 1 keeps everything, as in mergekit; the clamp keeps ⌊density·n⌋ in range.
        let density = min(max(density, -1), 2)
        switch method {
        case .magnitude:
            if density >= 1 { return }
            if density <= 0 || n == 0 { delta.update(repeating: 0, count: n); return }
            let k = max(1, Int(density * Double(n)))
            let before = rescale != nil ? l1(delta, n) : 0
            keepRanks(delta, n, from: n - k, to: n)
            if let rescale { rescaleKept(delta, n, before: before, density: density, how: rescale) }
        case .magnitudeOutliers:
            if density >= 1 { return }
            let target = Int(density * Double(n)), top = Int(gamma * Double(n))
            let bottom = max(0, n - target - top)
            let before = rescale != nil ? l1(delta, n) : 0
            keepRanks(delta, n, from: bottom, to: min(n, bottom + target))
            if let rescale { rescaleKept(delta, n, before: before, density: density, how: rescale) }
        case .random:
            if density >= 1 { return }
            let before = rescale != nil ? l1(delta, n) : 0
            let p = Float(density)
            withUniforms(generator, count: n) { start, u in
                for i in 0..<u.count where !(u[i] < p) { delta[start + i] = 0 }
            }
            if let rescale { rescaleKept(delta, n, before: before, density: density, how: rescale) }
        case .dellaMagprune:
            if density >= 1 { return }
            if density <= 0 { delta.update(repeating: 0, count: n); return }
            guard density + epsilon < 1, density - epsilon > 0 else {
                throw MergeError.invalidParameter(tensor: tensor, message: "epsilon \(epsilon) must leave density ± epsilon inside (0, 1) (density \(density))")
            }
            let before = rescale != nil ? l1(delta, n) : 0
            let cols = max(1, rowLength), rows = n / cols
            let low = Float(density - epsilon), span = Float(epsilon)
            // Keep probabilities first (they depend on the row's ranks), then one pass of draws.
            let probs = UnsafeMutablePointer<Float>.allocate(capacity: n)
            defer { probs.deallocate() }
            ThreadPool.forChunks(rows, grain: max(1, grain / cols)) { r in
                var order = [Int32](repeating: 0, count: cols)
                for row in r {
                    let x = delta + row * cols
                    for j in 0..<cols { order[j] = Int32(j) }
                    order.sort { abs(x[Int($0)]) < abs(x[Int($1)]) }
                    for (rank, j) in order.enumerated() {
                        // mergekit: ((rank+1) − 1) / (cols − 1), clamped; then (d − ε) + norm·2·ε in float32.
                        let norm = cols > 1 ? min(1, max(0, Float(rank) / Float(cols - 1))) : Float.nan
                        probs[row * cols + Int(j)] = low + norm * 2 * span
                    }
                }
            }
            withUniforms(generator, count: n) { start, u in
                for i in 0..<u.count where !(u[i] < probs[start + i]) { delta[start + i] = 0 }
            }
            if let rescale { rescaleKept(delta, n, before: before, density: density, how: rescale) }
        }
    }

    /// Calls `body(start, uniforms)` over `count` draws in chunks (a multiple of 4 long, so each
    /// chunk starts on a block of the generator).
    static func withUniforms(_ generator: RandomGenerator, count: Int, _ body: @escaping (Int, [Float]) -> Void) {
        let chunk = grain
        let chunks = (count + chunk - 1) / chunk
        ThreadPool.forEach(chunks) { c in
            let start = c * chunk, len = min(chunk, count - start)
            var g = RandomGenerator(seed: generator.seed, offset: generator.offset &+ UInt64(start / 4))
            let u = Tensor.uniform([len], generator: &g).scalars
            body(start, u)
        }
    }

    /// Sum of |x| in float64 (fixed chunks, added in order: the same at any thread count).
    static func l1(_ x: UnsafeMutablePointer<Float>, _ n: Int) -> Double {
        MergeKernels.sum(n) { Double(abs(x[$0])) }
    }

    static func rescaleKept(_ x: UnsafeMutablePointer<Float>, _ n: Int, before: Double, density: Double, how: DARERescale) {
        let factor: Float
        switch how {
        case .l1:
            let after = l1(x, n)
            let b = Float(before), a = Float(after)
            guard b >= 1e-7, a >= 1e-7 else { return }
            factor = b / a
        case .inverseDensity:
            guard density > 0 else { return }
            factor = Float(1 / density)
        }
        ThreadPool.forChunks(n, grain: grain) { r in for i in r { x[i] *= factor } }
    }

    /// Zeroes every entry whose rank by |x| (ascending, 0-based) is outside `from..<to`; ties in
    /// |x| at either boundary are broken by position.
    static func keepRanks(_ x: UnsafeMutablePointer<Float>, _ n: Int, from: Int, to: Int) {
        guard to > from else { x.update(repeating: 0, count: n); return }
        if from == 0 && to == n { return }
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { scratch.deallocate() }
        for i in 0..<n { scratch[i] = abs(x[i]) }
        // lo: value at rank `from`; hi: value at rank `to − 1`.
        let lo = from > 0 ? select(scratch, n, rank: from) : -Float.infinity
        let hi = to < n ? select(scratch, n, rank: to - 1) : Float.infinity
        // How many entries equal to lo (hi) are kept: ranks from..<to among the ties.
        var below = 0, equalLo = 0, equalHi = 0, belowHi = 0
        for i in 0..<n {
            let a = abs(x[i])
            if a < lo { below += 1 }
            if a == lo { equalLo += 1 }
            if a < hi { belowHi += 1 }
            if a == hi { equalHi += 1 }
        }
        if lo == hi {
            var keep = to - from
            for i in 0..<n {
                let a = abs(x[i])
                if a == lo, keep > 0 { keep -= 1 } else { x[i] = 0 }
            }
            return
        }
        // Ties at lo: ranks below..<below+equalLo; keep those ≥ from. Ties at hi: keep those < to.
        var skipLo = from - below, keepHi = to - belowHi
        for i in 0..<n {
            let a = abs(x[i])
            if a == lo {
                if skipLo > 0 { skipLo -= 1; x[i] = 0 }
            } else if a == hi {
                if keepHi > 0 { keepHi -= 1 } else { x[i] = 0 }
            } else if a < lo || a > hi {
                x[i] = 0
            }
        }
        _ = (equalLo, equalHi)
    }

    /// The value of rank `rank` (ascending) of `v[0..<n]`, by quickselect; reorders `v`.
    static func select(_ v: UnsafeMutablePointer<Float>, _ n: Int, rank: Int) -> Float {
        var lo = 0, hi = n - 1
        while hi > lo {
            // Median of three as the pivot.
            let mid = lo + (hi - lo) / 2
            if v[mid] < v[lo] { (v[mid], v[lo]) = (v[lo], v[mid]) }
            if v[hi] < v[lo] { (v[hi], v[lo]) = (v[lo], v[hi]) }
            if v[hi] < v[mid] { (v[hi], v[mid]) = (v[mid], v[hi]) }
            let pivot = v[mid]
            var i = lo, j = hi
            while i <= j {
                while v[i] < pivot { i += 1 }
                while v[j] > pivot { j -= 1 }
                if i <= j { (v[i], v[j]) = (v[j], v[i]); i += 1; j -= 1 }
            }
            if rank <= j { hi = j } else if rank >= i { lo = i } else { return v[rank] }
        }
        return v[rank]
    }
}

/// How DARE and DELLA rescale the kept entries of a task vector.
public enum DARERescale: String, Sendable {
    /// mergekit's: match the L1 norm of the task vector before dropping (its default, `rescale: true`).
    case l1
    /// PEFT's (and the DARE paper's): divide by `density`.
    case inverseDensity = "inverse_density"
}
