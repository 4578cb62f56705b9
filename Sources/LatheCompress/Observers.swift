import CLatheKernels
import LatheTensor

/// Records the values a tensor takes over calibration batches and proposes a clipping range
/// for its quantization.
///
/// See ``MinMaxObserver``, ``PercentileObserver`` and ``MSEObserver``; ``ObserverKind`` makes one.
public protocol RangeObserver: AnyObject {
    /// Records one batch.
    func observe(_ x: Tensor)
    /// The range to quantize to (`min <= 0 <= max` is not required; ``AffineParams`` widens it).
    var range: (min: Float, max: Float) { get }
}

/// Which observer calibration uses.
public enum ObserverKind: Equatable, Sendable {
    /// The extreme values seen.
    case minMax
    /// The given percentile of the values (e.g. 99.99) and its mirror (100 - p).
    case percentile(Float)
    /// The range, among shrunken min-max ranges, that minimises the uint8 round-trip MSE.
    case mse

    public func makeObserver(symmetric: Bool = false) -> RangeObserver {
        switch self {
        case .minMax: MinMaxObserver()
        case .percentile(let p): PercentileObserver(percentile: p)
        case .mse: MSEObserver(symmetric: symmetric)
        }
    }
}

/// The smallest and largest value seen (NaNs skipped).
public final class MinMaxObserver: RangeObserver {
    public private(set) var min = Float.infinity, max = -Float.infinity
    public init() {}
    public func observe(_ x: Tensor) {
        guard x.count > 0 else { return }
        x.to(.float32).withUnsafeBufferPointer { b in
            var lo: Float = 0, hi: Float = 0
            lathe_minmax_f32(b.baseAddress!, b.count, &lo, &hi)
            if !lo.isNaN { min = Swift.min(min, lo); max = Swift.max(max, hi) }
        }
    }
    public var range: (min: Float, max: Float) { min <= max ? (min, max) : (0, 0) }
}

/// Keeps a deterministic sample of the values (every `stride`-th, the stride doubling whenever
/// the sample reaches `capacity`) for the observers that need the distribution.
public class SampleObserver {
    public let capacity: Int
    private(set) var samples: [Float] = []
    private var stride = 1, phase = 0
    let minMax = MinMaxObserver()

    public init(capacity: Int = 1 << 20) { self.capacity = capacity }

    public func observe(_ x: Tensor) {
        minMax.observe(x)
        x.to(.float32).withUnsafeBufferPointer { b in
            for v in b where !v.isNaN {
                if phase == 0 { samples.append(v) }
                phase = (phase + 1) % stride
                if samples.count >= capacity {
                    samples = Swift.stride(from: 0, to: samples.count, by: 2).map { samples[$0] }
                    stride *= 2
                    phase = 0
                }
            }
        }
    }
}

/// Clips to the `percentile` and `100 - percentile` of the values (nearest rank on a
/// deterministic sample), ignoring rare outliers.
public final class PercentileObserver: SampleObserver, RangeObserver {
    public let percentile: Float
    public init(percentile: Float = 99.99, capacity: Int = 1 << 20) {
        precondition(percentile > 50 && percentile <= 100, "PercentileObserver: percentile must be in (50, 100], got \(percentile)")
        self.percentile = percentile
        super.init(capacity: capacity)
    }
    public var range: (min: Float, max: Float) {
        guard !samples.isEmpty else { return (0, 0) }
        let sorted = samples.sorted(), n = sorted.count
        let hiIndex = Swift.min(n - 1, Int((Double(percentile) / 100 * Double(n)).rounded(.up)) - 1)
        let loIndex = Swift.max(0, n - 1 - hiIndex)
        return (sorted[loIndex], sorted[Swift.max(hiIndex, 0)])
    }
}

/// Searches clipping ranges `[a·min, a·max]` for `a` in `(0, 1]` (100 candidates) and keeps the
/// one whose uint8 quantize-dequantize round trip has the smallest mean squared error on the
/// sample: the trade-off between rounding error (wide range) and clipping error (narrow).
public final class MSEObserver: SampleObserver, RangeObserver {
    public let symmetric: Bool
    public let candidates: Int
    public init(symmetric: Bool = false, candidates: Int = 100, capacity: Int = 1 << 16) {
        self.symmetric = symmetric
        self.candidates = candidates
        super.init(capacity: capacity)
    }

    public var range: (min: Float, max: Float) {
        let full = minMax.range
        guard !samples.isEmpty, full.min < full.max else { return full }
        var best = full, bestErr = Double.infinity
        for i in (1...candidates).reversed() {
            let a = Float(i) / Float(candidates)
            let r = (full.min * a, full.max * a)
            let p = AffineParams(min: r.0, max: r.1, symmetric: symmetric)
            var err = 0.0
            for v in samples { let d = Double(v - p.dequantize(p.quantize(v))); err += d * d }
            if err < bestErr { bestErr = err; best = r }
        }
        return best
    }
}
