import Foundation
import LatheData
import LatheNN
import LatheTensor

public enum DataSplit: String, Sendable { case train, validation, test }

/// A kind of problem as the ``Trainer`` sees it: training batches by index, the loss of a model on
/// a batch, and an evaluation on a split.
///
/// Batches are named tensors (``Batch``), so a task can feed token ids, labels with an ignore
/// index and segment ids as well as one input and one target. `batch(_:)` must be a pure
/// function of the index: a resumed run then sees the batches an uninterrupted one would.
///
/// ```swift
/// struct Regression: TrainingTask {
///     var microBatchesPerEpoch: Int { 10 }
///     func batch(_ index: Int) -> Batch { Batch(["x": ..., "y": ...]) }
///     func loss(_ model: Module, on batch: Batch) throws -> TaskLoss {
///         TaskLoss(Loss.mse(model(batch.required("x")), batch.required("y")))
///     }
///     func evaluate(_ model: Module, split: DataSplit) -> Evaluation { ... }
/// }
/// let trainer = Trainer(model: net, task: Regression(), options: TrainerOptions(steps: 100))
/// ```
public protocol TrainingTask {
    /// Micro-batches in one pass over the training data.
    var microBatchesPerEpoch: Int { get }
    /// Whether ``evaluate(_:split:)`` has test data of its own (default false).
    var hasTestSplit: Bool { get }
    /// Parameters that the task owns and that train with the model (a distillation's
    /// projections), by name; default none.
    var taskParameters: [(String, Parameter)] { get }
    /// Training micro-batch `index` (0, 1, ...): a pure function of the index.
    func batch(_ index: Int) -> Batch
    /// The loss of `model` on a training batch (kept on the tape for `backward`), with metrics.
    func loss(_ model: Module, on batch: Batch) throws -> TaskLoss
    /// Loss (and accuracy, perplexity, ...) of `model` on a split. The trainer calls it in
    /// evaluation mode under `noGrad`.
    func evaluate(_ model: Module, split: DataSplit) -> Evaluation
    /// The epoch that `microBatches` training micro-batches reach (default: over
    /// ``microBatchesPerEpoch``).
    func epoch(afterMicroBatches microBatches: Int) -> Int
}

extension TrainingTask {
    public var hasTestSplit: Bool { false }
    public var taskParameters: [(String, Parameter)] { [] }
    public func epoch(afterMicroBatches microBatches: Int) -> Int { microBatches / Swift.max(microBatchesPerEpoch, 1) }
}

/// Image or feature classification with cross-entropy, shuffled each epoch.
///
/// Batches hold `inputs` and `targets` (``Batch/init(inputs:targets:)``); the loss is
/// cross-entropy with ``labelSmoothing``.
public struct ClassificationTask: TrainingTask {
    public let train: TensorDataset, validation: TensorDataset, test: TensorDataset?
    public let classes: Int
    public let loader: DataLoader
    /// Flatten samples to vectors (for MLPs).
    public let flatten: Bool
    /// Random shifts and flips of the training batches (images only; evaluation is never augmented).
    public let augmentation: ImageAugmentation
    /// Label smoothing of the training loss (the recipe's `training.label_smoothing`).
    public var labelSmoothing: Float
    let seed: UInt64

    public init(train: TensorDataset, validation: TensorDataset, test: TensorDataset?, classes: Int, batchSize: Int, seed: UInt64,
                flatten: Bool, augmentation: ImageAugmentation = ImageAugmentation(), labelSmoothing: Float = 0) {
        precondition(augmentation.isIdentity || train.sampleShape.count == 3,
                     "ClassificationTask: augmentation needs images [C, H, W], got samples of shape \(train.sampleShape)")
        (self.train, self.validation, self.test, self.classes, self.flatten) = (train, validation, test, classes, flatten)
        (self.augmentation, self.seed, self.labelSmoothing) = (augmentation, seed, labelSmoothing)
        loader = DataLoader(train, batchSize: Swift.min(batchSize, train.count), shuffle: true, dropLast: true, seed: seed)
    }

    public var microBatchesPerEpoch: Int { loader.batchesPerEpoch }
    public var hasTestSplit: Bool { test != nil }

    /// The same task (data, batches and seed) with other training augmentation.
    public func with(augmentation: ImageAugmentation) -> ClassificationTask {
        ClassificationTask(train: train, validation: validation, test: test, classes: classes, batchSize: loader.batchSize, seed: seed,
                           flatten: flatten, augmentation: augmentation, labelSmoothing: labelSmoothing)
    }

    /// Why `augmentation` cannot apply to these samples (not images, or a shift as large as the
    /// image), or nil when it can.
    public func augmentationProblem(_ augmentation: ImageAugmentation) -> String? {
        Self.augmentationProblem(augmentation, sampleShape: train.sampleShape)
    }

    static func augmentationProblem(_ a: ImageAugmentation, sampleShape: [Int]) -> String? {
        if a.isIdentity { return nil }
        guard sampleShape.count == 3 else { return "it shifts and flips images [C, H, W], but the samples have shape \(sampleShape)" }
        let side = Swift.min(sampleShape[1], sampleShape[2])
        return a.shift < side ? nil : "a shift of \(a.shift) pixels would empty \(sampleShape[1])x\(sampleShape[2]) images (use at most \(side - 1))"
    }

    func shaped(_ x: Tensor) -> Tensor { flatten ? x.flattened(from: 1) : x }

    public func trainBatch(_ index: Int) -> (x: Tensor, y: Tensor) {
        let b = loader.batch(index % loader.batchesPerEpoch, epoch: index / loader.batchesPerEpoch)
        if augmentation.isIdentity { return (shaped(b.x), b.y) }
        // A stream per batch index, so a resumed run draws what an uninterrupted one would.
        var g = RandomGenerator(seed: seed ^ 0x4155_474D_454E_54, offset: UInt64(index) << 24)
        return (shaped(augmentation.apply(b.x, generator: &g)), b.y)
    }

    public func batch(_ index: Int) -> Batch {
        let (x, y) = trainBatch(index)
        return Batch(inputs: x, targets: y)
    }

    public func loss(_ output: Tensor, _ target: Tensor, labelSmoothing: Float) -> Tensor {
        Loss.crossEntropy(output, target, labelSmoothing: labelSmoothing)
    }

    public func loss(_ model: Module, on batch: Batch) -> TaskLoss {
        TaskLoss(loss(model(batch.inputs), batch.targets, labelSmoothing: labelSmoothing))
    }

    public func evaluate(_ model: Module, split: DataSplit) -> Evaluation {
        Self.evaluate(model, dataset(split), flatten: flatten)
    }

    /// Mean cross-entropy and accuracy over a data set, in batches of 512.
    public static func evaluate(_ model: Module, _ data: TensorDataset, flatten: Bool) -> Evaluation {
        var lossSum = 0.0, correct = 0
        let n = data.count
        for start in stride(from: 0, to: n, by: 512) {
            let idx = Tensor(Array(start..<Swift.min(n, start + 512)))
            var x = data.features.indexSelect(dim: 0, index: idx)
            if flatten { x = x.flattened(from: 1) }
            let y = data.labels.indexSelect(dim: 0, index: idx)
            let logits = model(x)
            lossSum += Double(Loss.crossEntropy(logits, y, reduction: .sum).item)
            correct += zip(logits.argmax(dim: 1).intScalars, y.intScalars).filter { $0 == $1 }.count
        }
        return Evaluation(loss: lossSum / Double(Swift.max(n, 1)), accuracy: Double(correct) / Double(Swift.max(n, 1)), count: n)
    }
}

/// Next-character prediction on a text corpus: random windows for training, fixed windows
/// of the held-out text for validation.
public struct LanguageModelTask: TrainingTask {
    public let train: CharCorpus, validation: CharCorpus
    public let batchSize: Int, context: Int, seed: UInt64, evalBatches: Int
    /// Label smoothing of the training loss (the recipe's `training.label_smoothing`).
    public var labelSmoothing: Float

    public init(corpus: CharCorpus, validationFraction: Double, batchSize: Int, context: Int, seed: UInt64, evalBatches: Int,
                labelSmoothing: Float = 0) {
        (train, validation) = corpus.split(validationFraction: validationFraction)
        (self.batchSize, self.context, self.seed, self.evalBatches) = (batchSize, context, seed, evalBatches)
        self.labelSmoothing = labelSmoothing
    }

    /// One "epoch" is as many windows as the training text has characters.
    public var microBatchesPerEpoch: Int { Swift.max(1, train.count / (batchSize * context)) }
    public var hasTestSplit: Bool { false }

    public func trainBatch(_ index: Int) -> (x: Tensor, y: Tensor) {
        var g = RandomGenerator(seed: seed ^ 0x4C41_5448_45, offset: UInt64(index) << 24)
        return train.batch(size: batchSize, context: context, generator: &g)
    }

    public func batch(_ index: Int) -> Batch {
        let (x, y) = trainBatch(index)
        return Batch(inputs: x, targets: y)
    }

    public func loss(_ output: Tensor, _ target: Tensor, labelSmoothing: Float) -> Tensor {
        Loss.crossEntropy(output.reshaped([-1, output.shape.last!]), target.reshaped([-1]), labelSmoothing: labelSmoothing)
    }

    public func loss(_ model: Module, on batch: Batch) -> TaskLoss {
        TaskLoss(loss(model(batch.inputs), batch.targets, labelSmoothing: labelSmoothing))
    }

    public func evaluate(_ model: Module, split: DataSplit) -> Evaluation {
        let corpus = split == .train ? train : validation
        var lossSum = 0.0, count = 0
        for (x, y) in corpus.evaluationBatches(context: context, batchSize: batchSize).prefix(evalBatches) {
            let logits = model(x)
            lossSum += Double(Loss.crossEntropy(logits.reshaped([-1, logits.shape.last!]), y.reshaped([-1]), reduction: .sum).item)
            count += y.count
        }
        return Evaluation(loss: lossSum / Double(Swift.max(count, 1)), accuracy: nil, count: count)
    }
}

/// Builds the data side of a recipe from ``DataRegistry``.
func makeTask(_ r: Recipe, relativeTo directory: URL?) throws -> TrainingTask {
    func path(_ p: String) -> URL {
        p.hasPrefix("/") || directory == nil ? URL(fileURLWithPath: p) : directory!.appendingPathComponent(p)
    }
    let entry = try lookup(DataRegistry.shared, r.data.name, key: "data.name")
    let flatten = ModelRegistry.shared[r.model.name]?.flattensInput ?? false
    return try entry.build(r, path, flatten)
}

/// Builds the model of a recipe from ``ModelRegistry``, sized from the data.
func makeModel(_ r: Recipe, task: TrainingTask) throws -> Module {
    try lookup(ModelRegistry.shared, r.model.name, key: "model.name").build(r, task)
}

func lookup<E>(_ registry: Registry<E>, _ name: String, key: String) throws -> E {
    do { return try registry.lookup(name) } catch let e as RegistryError {
        throw RecipeError(file: "recipe", key: key, message: e.description)
    }
}
