#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Seconds per call of something timed several times: every sample, the best and the median.
public struct TimingResult: Sendable, Equatable {
    /// Seconds per call, one value per timed repetition.
    public var samples: [Double]
    public var best: Double { samples.min() ?? .nan }
    public var median: Double { Timing.median(samples) }

    public init(samples: [Double]) { self.samples = samples }
}

/// The one way Lathe times things: a warm-up, then repetitions that each run the call often
/// enough to last `minTime`, reporting seconds per call; the median and the best of the
/// repetitions are the figures to quote.
public enum Timing {
    /// Seconds of monotonic time.
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// The median of `xs` (NaN when empty).
    public static func median(_ xs: [Double]) -> Double {
        guard !xs.isEmpty else { return .nan }
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// Calls per repetition so that one repetition lasts about `minTime`, from the time of
    /// `warmup` calls (at least one call).
    static func callsPerRepetition(minTime: Double, warmup: Int, _ call: () -> Void) -> Int {
        let start = now()
        for _ in 0..<Swift.max(1, warmup) { call() }
        let once = (now() - start) / Double(Swift.max(1, warmup))
        return Swift.max(1, Int(minTime / Swift.max(once, 1e-9)))
    }

    /// Times `call`: `warmup` untimed calls, then `repeats` repetitions of enough calls to
    /// last `minTime` seconds (`minTime` 0: one call each).
    public static func measure(repeats: Int, minTime: Double = 0.05, warmup: Int = 1, _ call: () -> Void) -> TimingResult {
        let inner = minTime > 0 ? callsPerRepetition(minTime: minTime, warmup: warmup, call) : 1
        if minTime <= 0 { for _ in 0..<warmup { call() } }
        var samples: [Double] = []
        for _ in 0..<Swift.max(1, repeats) {
            let t0 = now()
            for _ in 0..<inner { call() }
            samples.append((now() - t0) / Double(inner))
        }
        return TimingResult(samples: samples)
    }

    /// Times several calls that take turns, round after round, so that a change in the
    /// machine's load reaches all of them alike (each round runs each call for about `minTime`).
    public static func interleaved(_ calls: [() -> Void], rounds: Int = 7, minTime: Double = 0.05, warmupTime: Double = 0.03) -> [TimingResult] {
        let inner = calls.map { call -> Int in
            let start = now()
            var warm = 0
            while warm < 3 || now() - start < warmupTime { call(); warm += 1 }
            return Swift.max(1, Int(minTime / Swift.max((now() - start) / Double(warm), 1e-9)))
        }
        var samples = Array(repeating: [Double](), count: calls.count)
        for _ in 0..<Swift.max(1, rounds) {
            for (i, call) in calls.enumerated() {
                let t0 = now()
                for _ in 0..<inner[i] { call() }
                samples[i].append((now() - t0) / Double(inner[i]))
            }
        }
        return samples.map(TimingResult.init)
    }
}
