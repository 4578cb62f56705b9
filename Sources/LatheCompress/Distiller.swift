import LatheNN
import LatheTensor

/// Intermediate activations to match between student and teacher (hint learning).
///
/// Each closure runs its model on a batch and returns the logits with the chosen
/// activations, in the same order for both; pair `i` adds
/// `weight * MSE(projections[i](student_i), teacher_i)` (flattened to `[N, D]`) to the loss.
public struct FeatureMatching {
    public var student: (Tensor) -> (logits: Tensor, features: [Tensor])
    public var teacher: (Tensor) -> (logits: Tensor, features: [Tensor])
    /// A learned map per pair from the student's width to the teacher's (nil: same width).
    /// Its parameters are trained with the student.
    public var projections: [Linear?]
    public var weight: Float

    public init(student: @escaping (Tensor) -> (logits: Tensor, features: [Tensor]),
                teacher: @escaping (Tensor) -> (logits: Tensor, features: [Tensor]),
                projections: [Linear?] = [], weight: Float = 1) {
        (self.student, self.teacher, self.projections, self.weight) = (student, teacher, projections, weight)
    }
}

/// Trains a student on a teacher's soft targets (and optionally its activations):
/// the loss is ``Distillation/loss(student:teacher:labels:alpha:temperature:labelSmoothing:)``
/// plus the ``FeatureMatching`` terms.
///
/// The teacher runs in evaluation mode under `noGrad`; the student in training mode. Batches
/// come from a closure of the step index (for a `ClassificationTask`, its `trainBatch`), so
/// runs are reproducible. Pass ``masks`` to keep a pruned student's zeros.
public final class Distiller {
    public let student: Module
    public let teacher: Module
    public var alpha: Float
    public var temperature: Float
    public var features: FeatureMatching?
    public let optimizer: Optimizer
    public var schedule: LRSchedule
    public let baseLearningRate: Float
    public var clipGradNorm: Float?
    public var masks: PruningMasks?

    /// - Parameters:
    ///   - makeOptimizer: builds the optimiser over the student's trainable parameters and
    ///     the projections' (named `projections.<i>.weight`/`.bias`); default AdamW, lr 1e-3.
    public init(student: Module, teacher: Module, alpha: Float = 0.5, temperature: Float = 4, features: FeatureMatching? = nil,
                schedule: LRSchedule = .constant, clipGradNorm: Float? = nil, masks: PruningMasks? = nil,
                makeOptimizer: ([(String, Parameter)]) -> Optimizer = { AdamW($0, learningRate: 1e-3) }) {
        (self.student, self.teacher, self.alpha, self.temperature, self.features) = (student, teacher, alpha, temperature, features)
        (self.schedule, self.clipGradNorm, self.masks) = (schedule, clipGradNorm, masks)
        var params = student.namedParameters.filter { $0.1.requiresGrad }
        for (i, p) in (features?.projections ?? []).enumerated() {
            guard let p else { continue }
            params += p.namedParameters.map { ("projections.\(i).\($0.0)", $0.1) }
        }
        optimizer = makeOptimizer(params)
        baseLearningRate = optimizer.learningRate
    }

    /// The loss on one batch (the student's graph is kept for `backward`).
    public func loss(_ x: Tensor, _ y: Tensor) -> Tensor {
        let wasTraining = teacher.isTraining
        teacher.eval()
        defer { teacher.train(wasTraining) }
        guard let features else {
            let t = noGrad { teacher(x) }
            return Distillation.loss(student: student(x), teacher: t, labels: y, alpha: alpha, temperature: temperature)
        }
        let t = noGrad { features.teacher(x) }
        let s = features.student(x)
        precondition(s.features.count == t.features.count,
                     "Distiller: the student gives \(s.features.count) features, the teacher \(t.features.count)")
        var total = Distillation.loss(student: s.logits, teacher: t.logits, labels: y, alpha: alpha, temperature: temperature)
        for i in s.features.indices {
            let projection = i < features.projections.count ? features.projections[i] : nil
            total = total + Distillation.featureLoss(student: s.features[i], teacher: t.features[i], projection: projection) * features.weight
        }
        return total
    }

    /// One optimiser step on a batch; returns the loss before the step.
    @discardableResult
    public func step(_ x: Tensor, _ y: Tensor) -> Float {
        student.train()
        optimizer.learningRate = schedule.rate(at: optimizer.stepCount, base: baseLearningRate)
        optimizer.zeroGrad()
        let l = loss(x, y)
        l.backward()
        if let clipGradNorm { LatheNN.clipGradNorm(optimizer.parameters.map(\.parameter), maxNorm: clipGradNorm) }
        if let masks { masks.step(optimizer, model: student) } else { optimizer.step() }
        return l.item
    }

    /// `steps` optimiser steps on `batch(optimizer.stepCount)`; returns the losses.
    /// `onStep` gets (steps done, loss).
    @discardableResult
    public func run(steps: Int, batch: (Int) -> (x: Tensor, y: Tensor), onStep: ((Int, Float) -> Void)? = nil) -> [Float] {
        var losses: [Float] = []
        for _ in 0..<steps {
            let (x, y) = batch(optimizer.stepCount)
            let l = step(x, y)
            precondition(l.isFinite, "Distiller: the loss became \(l) at step \(optimizer.stepCount); lower the learning rate")
            losses.append(l)
            onStep?(optimizer.stepCount, l)
        }
        return losses
    }
}
