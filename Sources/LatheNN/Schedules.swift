import Foundation

/// A learning-rate schedule: the rate for a (0-based) step.
public enum LRSchedule: Sendable, Equatable {
    /// The base rate throughout.
    case constant
    /// Multiplied by `gamma` every `stepSize` steps.
    case step(stepSize: Int, gamma: Float)
    /// Cosine from the base rate down to `minRate` over `totalSteps` (Loshchilov & Hutter 2017).
    case cosine(totalSteps: Int, minRate: Float)
    /// Linear warm-up from 0 over `warmupSteps`, then `after` (counted from the end of the warm-up).
    indirect case warmup(warmupSteps: Int, after: LRSchedule)

    /// The rate at `step` for base rate `base`.
    public func rate(at step: Int, base: Float) -> Float {
        switch self {
        case .constant:
            return base
        case let .step(stepSize, gamma):
            return base * Foundation.pow(gamma, Float(step / Swift.max(stepSize, 1)))
        case let .cosine(total, minRate):
            let t = Swift.min(Float(step) / Float(Swift.max(total, 1)), 1)
            return minRate + (base - minRate) * 0.5 * (1 + Foundation.cos(Float.pi * t))
        case let .warmup(warmupSteps, after):
            if step < warmupSteps { return base * Float(step + 1) / Float(warmupSteps) }
            return after.rate(at: step - warmupSteps, base: base)
        }
    }
}
