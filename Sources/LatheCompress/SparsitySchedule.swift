import Foundation
import LatheNN
import LatheTensor

/// The gradual pruning schedule of Zhu & Gupta 2017 ("To prune, or not to prune",
/// https://arxiv.org/abs/1710.01878):
/// `s_t = s_f + (s_i - s_f) (1 - t / n)^3` for `t` in `[0, n]` steps after `begin`,
/// with `t` rounded down to a multiple of `frequency` (masks change only every `frequency`
/// steps). Before `begin` the sparsity is `s_i`, after `begin + n` it is `s_f`.
///
/// Pruning fast at first and slowly near the end gives the network time to recover while
/// few weights are left.
public struct CubicSparsitySchedule: Sendable, Equatable {
    public var initial: Double, final: Double
    public var begin: Int, steps: Int, frequency: Int

    public init(initial: Double = 0, final: Double, begin: Int = 0, steps: Int, frequency: Int = 1) {
        precondition(steps > 0 && frequency > 0, "CubicSparsitySchedule: steps and frequency must be positive")
        precondition((0...1).contains(initial) && (0...1).contains(final), "CubicSparsitySchedule: sparsities must be in [0, 1]")
        (self.initial, self.final, self.begin, self.steps, self.frequency) = (initial, final, begin, steps, frequency)
    }

    /// The target sparsity after `step` optimiser steps.
    public func sparsity(at step: Int) -> Double {
        let elapsed = Swift.max(step - begin, 0)
        let progress = elapsed >= steps ? 1 : Double(elapsed / frequency * frequency) / Double(steps)
        return final + (initial - final) * Foundation.pow(1 - progress, 3)
    }
}

/// Magnitude pruning that follows a ``CubicSparsitySchedule`` during fine-tuning.
///
/// Call ``update(step:)`` after every optimiser step (e.g. from `Trainer.onStep`), or use
/// ``step(_:)`` in your own loop; masks are recomputed when the schedule's target changes
/// and only ever grow.
public final class GradualPruner {
    public let model: Module
    public let parameters: [String]
    public let scope: PruningScope
    public let schedule: CubicSparsitySchedule
    /// The current masks.
    public private(set) var masks: PruningMasks
    /// The sparsity the current masks were made for.
    public private(set) var currentSparsity: Double

    public init(_ model: Module, schedule: CubicSparsitySchedule, parameters: [String]? = nil, scope: PruningScope = .layerwise) {
        self.model = model
        self.parameters = parameters ?? prunableParameters(model)
        self.scope = scope
        self.schedule = schedule
        currentSparsity = schedule.sparsity(at: 0)
        masks = pruneMagnitude(model, sparsity: currentSparsity, parameters: self.parameters, scope: scope)
    }

    /// Brings the masks to the schedule's sparsity after `step` completed steps and applies
    /// them (always, so pruned weights stay zero). Returns whether the masks changed.
    @discardableResult
    public func update(step: Int) -> Bool {
        let target = schedule.sparsity(at: step)
        var changed = false
        if target != currentSparsity {
            masks = magnitudeMasks(model, sparsity: target, parameters: parameters, scope: scope, existing: masks)
            currentSparsity = target
            changed = true
        }
        masks.apply(to: model)
        return changed
    }

    /// One optimiser step with masked gradients, then ``update(step:)`` for the new step count.
    public func step(_ optimizer: Optimizer) {
        masks.maskGradients(of: model)
        optimizer.step()
        update(step: optimizer.stepCount)
    }
}
