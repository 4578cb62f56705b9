import LatheNN

extension Recipe.OptimizerSpec {
    /// The optimiser this section describes, over `parameters` (named, as its state dict names them).
    public func makeOptimizer(_ parameters: [(String, Parameter)]) -> Optimizer {
        switch name {
        case "sgd":
            return SGD(parameters, learningRate: lr, momentum: momentum, weightDecay: weightDecay ?? 0, nesterov: nesterov)
        case "adam":
            return Adam(parameters, learningRate: lr, betas: (betas[0], betas[1]), eps: eps, weightDecay: weightDecay ?? 0)
        default:
            return AdamW(parameters, learningRate: lr, betas: (betas[0], betas[1]), eps: eps, weightDecay: weightDecay ?? 0.01)
        }
    }
}

extension Recipe.ScheduleSpec {
    /// The learning-rate schedule of a run of `totalSteps` optimiser steps (a cosine decays over
    /// the steps after the warm-up).
    public func schedule(totalSteps: Int) -> LRSchedule {
        var base: LRSchedule
        switch name {
        case "step": base = .step(stepSize: stepSize, gamma: gamma)
        case "cosine": base = .cosine(totalSteps: Swift.max(1, totalSteps - warmupSteps), minRate: minLR)
        default: base = .constant
        }
        if warmupSteps > 0 { base = .warmup(warmupSteps: warmupSteps, after: base) }
        return base
    }
}
