import LatheCompress
import LatheNN
import LatheTensor

/// Knowledge distillation as a ``TrainingTask``: the student (the trainer's model) learns the
/// teacher's soft targets and the labels,
/// ``Distillation/loss(student:teacher:labels:alpha:temperature:labelSmoothing:)``, plus the
/// ``FeatureMatching`` terms when given (their projections train with the student, as
/// ``TrainingTask/taskParameters`` named `projections.<i>.weight`/`.bias`).
///
/// The teacher runs in evaluation mode under `noGrad`. Batches hold `inputs` and `targets` and
/// come from a closure of the batch index (for another task, its `batch(_:)`); the evaluation
/// is the data task's, of the student alone.
public struct DistillationTask: TrainingTask {
    public let teacher: Module
    public var alpha: Float
    public var temperature: Float
    public var features: FeatureMatching?
    public let microBatchesPerEpoch: Int
    public let hasTestSplit: Bool
    let batches: (Int) -> Batch
    let evaluation: ((Module, DataSplit) -> Evaluation)?

    /// Batches and evaluation from `data` (a ``ClassificationTask``, ...).
    public init(teacher: Module, data: TrainingTask, alpha: Float = 0.5, temperature: Float = 4, features: FeatureMatching? = nil) {
        self.init(teacher: teacher, alpha: alpha, temperature: temperature, features: features, microBatchesPerEpoch: data.microBatchesPerEpoch,
                  hasTestSplit: data.hasTestSplit, batches: { data.batch($0) }, evaluation: { data.evaluate($0, split: $1) })
    }

    /// Batches from a closure; without `evaluation`, evaluating gives NaN.
    public init(teacher: Module, alpha: Float = 0.5, temperature: Float = 4, features: FeatureMatching? = nil, microBatchesPerEpoch: Int = 1,
                hasTestSplit: Bool = false, batches: @escaping (Int) -> Batch, evaluation: ((Module, DataSplit) -> Evaluation)? = nil) {
        (self.teacher, self.alpha, self.temperature, self.features) = (teacher, alpha, temperature, features)
        (self.microBatchesPerEpoch, self.hasTestSplit, self.batches, self.evaluation) = (microBatchesPerEpoch, hasTestSplit, batches, evaluation)
    }

    public var taskParameters: [(String, Parameter)] {
        var params: [(String, Parameter)] = []
        for (i, p) in (features?.projections ?? []).enumerated() {
            guard let p else { continue }
            params += p.namedParameters.map { ("projections.\(i).\($0.0)", $0.1) }
        }
        return params
    }

    public func batch(_ index: Int) -> Batch { batches(index) }

    public func loss(_ student: Module, on batch: Batch) -> TaskLoss {
        TaskLoss(loss(student, batch.inputs, batch.targets))
    }

    /// The loss on one batch (the student's graph is kept for `backward`).
    public func loss(_ student: Module, _ x: Tensor, _ y: Tensor) -> Tensor {
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
                     "DistillationTask: the student gives \(s.features.count) features, the teacher \(t.features.count)")
        var total = Distillation.loss(student: s.logits, teacher: t.logits, labels: y, alpha: alpha, temperature: temperature)
        for i in s.features.indices {
            let projection = i < features.projections.count ? features.projections[i] : nil
            total = total + Distillation.featureLoss(student: s.features[i], teacher: t.features[i], projection: projection) * features.weight
        }
        return total
    }

    public func evaluate(_ model: Module, split: DataSplit) -> Evaluation {
        evaluation?(model, split) ?? Evaluation(loss: .nan, accuracy: nil, count: 0)
    }
}

/// Trains a student on a teacher's soft targets (and optionally its activations) in memory: a
/// ``Trainer`` on a ``DistillationTask``, without files or evaluation. Pass ``masks`` to keep a
/// pruned student's zeros (hooks mask the gradients after backward and the weights after the step).
///
/// The optimiser lives as long as the distiller, so consecutive ``run(steps:batch:onStep:)`` calls
/// continue one run: batch indices and the schedule follow `optimizer.stepCount`.
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
        let task = DistillationTask(teacher: teacher, features: features, batches: { _ in Batch() })
        optimizer = makeOptimizer(student.namedParameters.filter { $0.1.requiresGrad } + task.taskParameters)
        baseLearningRate = optimizer.learningRate
    }

    /// The loss on one batch (the student's graph is kept for `backward`).
    public func loss(_ x: Tensor, _ y: Tensor) -> Tensor {
        task { _ in Batch(inputs: x, targets: y) }.loss(student, x, y)
    }

    func task(_ batches: @escaping (Int) -> Batch) -> DistillationTask {
        DistillationTask(teacher: teacher, alpha: alpha, temperature: temperature, features: features, batches: batches)
    }

    /// One optimiser step on a batch; returns the loss before the step.
    @discardableResult
    public func step(_ x: Tensor, _ y: Tensor) -> Float {
        run(steps: 1) { _ in (x, y) }[0]
    }

    /// `steps` optimiser steps on `batch(optimizer.stepCount)`; returns the losses.
    /// `onStep` gets (steps done, loss).
    @discardableResult
    public func run(steps: Int, batch: @escaping (Int) -> (x: Tensor, y: Tensor), onStep: ((Int, Float) -> Void)? = nil) -> [Float] {
        let optimizer = self.optimizer
        var options = TrainerOptions(steps: optimizer.stepCount + steps, schedule: schedule, clipGradNorm: clipGradNorm) { _ in optimizer }
        options.learningRate = baseLearningRate
        let trainer = Trainer(model: student, task: task { let (x, y) = batch($0); return Batch(inputs: x, targets: y) }, options: options)
        trainer.step = optimizer.stepCount
        if let masks {
            trainer.add(.afterBackward) { masks.maskGradients(of: $0.model) }
            trainer.add(.afterStep) { masks.apply(to: $0.model) }
        }
        var losses: [Float] = []
        trainer.onStep = { r in
            losses.append(Float(r.loss))
            onStep?(r.step, Float(r.loss))
        }
        do { try trainer.run() } catch { preconditionFailure("Distiller: \(error); lower the learning rate") }
        return losses
    }
}
