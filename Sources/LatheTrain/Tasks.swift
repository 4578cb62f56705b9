import Foundation
import LatheData
import LatheNN
import LatheTensor

public enum DataSplit: String, Sendable { case train, validation, test }

/// What the training loop needs from a kind of problem: batches by index, the loss and an
/// evaluation on a split.
public protocol TrainingTask {
    /// Micro-batches in one pass over the training data.
    var microBatchesPerEpoch: Int { get }
    var hasTestSplit: Bool { get }
    /// The training micro-batch with global index `index` (a pure function of it).
    func trainBatch(_ index: Int) -> (x: Tensor, y: Tensor)
    func loss(_ output: Tensor, _ target: Tensor, labelSmoothing: Float) -> Tensor
    func evaluate(_ model: Module, split: DataSplit) -> Evaluation
}

/// Image or feature classification with cross-entropy, shuffled each epoch.
public struct ClassificationTask: TrainingTask {
    public let train: TensorDataset, validation: TensorDataset, test: TensorDataset?
    public let classes: Int
    public let loader: DataLoader
    /// Flatten samples to vectors (for MLPs).
    public let flatten: Bool
    /// Random shifts and flips of the training batches (images only; evaluation is never augmented).
    public let augmentation: ImageAugmentation
    let seed: UInt64

    public init(train: TensorDataset, validation: TensorDataset, test: TensorDataset?, classes: Int, batchSize: Int, seed: UInt64,
                flatten: Bool, augmentation: ImageAugmentation = ImageAugmentation()) {
        precondition(augmentation.isIdentity || train.sampleShape.count == 3,
                     "ClassificationTask: augmentation needs images [C, H, W], got samples of shape \(train.sampleShape)")
        (self.train, self.validation, self.test, self.classes, self.flatten) = (train, validation, test, classes, flatten)
        (self.augmentation, self.seed) = (augmentation, seed)
        loader = DataLoader(train, batchSize: Swift.min(batchSize, train.count), shuffle: true, dropLast: true, seed: seed)
    }

    public var microBatchesPerEpoch: Int { loader.batchesPerEpoch }
    public var hasTestSplit: Bool { test != nil }

    /// The same task (data, batches and seed) with other training augmentation.
    public func with(augmentation: ImageAugmentation) -> ClassificationTask {
        ClassificationTask(train: train, validation: validation, test: test, classes: classes, batchSize: loader.batchSize, seed: seed,
                           flatten: flatten, augmentation: augmentation)
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

    public func loss(_ output: Tensor, _ target: Tensor, labelSmoothing: Float) -> Tensor {
        Loss.crossEntropy(output, target, labelSmoothing: labelSmoothing)
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

    public init(corpus: CharCorpus, validationFraction: Double, batchSize: Int, context: Int, seed: UInt64, evalBatches: Int) {
        (train, validation) = corpus.split(validationFraction: validationFraction)
        (self.batchSize, self.context, self.seed, self.evalBatches) = (batchSize, context, seed, evalBatches)
    }

    /// One "epoch" is as many windows as the training text has characters.
    public var microBatchesPerEpoch: Int { Swift.max(1, train.count / (batchSize * context)) }
    public var hasTestSplit: Bool { false }

    public func trainBatch(_ index: Int) -> (x: Tensor, y: Tensor) {
        var g = RandomGenerator(seed: seed ^ 0x4C41_5448_45, offset: UInt64(index) << 24)
        return train.batch(size: batchSize, context: context, generator: &g)
    }

    public func loss(_ output: Tensor, _ target: Tensor, labelSmoothing: Float) -> Tensor {
        Loss.crossEntropy(output.reshaped([-1, output.shape.last!]), target.reshaped([-1]), labelSmoothing: labelSmoothing)
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

/// Builds the data side of a recipe.
func makeTask(_ r: Recipe, relativeTo directory: URL?) throws -> TrainingTask {
    func path(_ p: String) -> URL {
        p.hasPrefix("/") || directory == nil ? URL(fileURLWithPath: p) : directory!.appendingPathComponent(p)
    }
    let flatten = r.model.name == "digits-mlp"
    switch r.data.name {
    case "shakespeare":
        let corpus = try r.data.path.map { try CharCorpus(text: String(contentsOf: path($0), encoding: .utf8)) } ?? CharCorpus.shakespeare()
        return LanguageModelTask(corpus: corpus, validationFraction: r.data.validationFraction, batchSize: r.training.batchSize,
                                 context: r.model.context, seed: r.seed, evalBatches: r.training.evalBatches)
    case "fashion-mnist":
        let dir = r.data.path.map(path)
        let trainAll = try FashionMNIST.load(directory: dir, split: .train)
        let test = try FashionMNIST.load(directory: dir, split: .test)
        let trainFraction = r.data.split[0] / Swift.max(r.data.split[0] + r.data.split[1], 1e-12)
        let parts = try trainAll.split(fractions: [trainFraction, 1 - trainFraction], seed: r.data.splitSeed)
        if let problem = ClassificationTask.augmentationProblem(r.data.augmentation, sampleShape: trainAll.sampleShape) {
            throw RecipeError(file: "recipe", key: "data.augment", message: "\(problem); change or remove data.augment")
        }
        return ClassificationTask(train: parts[0], validation: parts[1], test: test, classes: 10, batchSize: r.training.batchSize,
                                  seed: r.seed, flatten: flatten, augmentation: r.data.augmentation)
    default:
        let all: TensorDataset
        switch r.data.name {
        case "csv":
            guard let p = r.data.path else {
                throw RecipeError(file: "recipe", key: "data.path", message: "a csv data set needs data.path")
            }
            all = try CSV.loadNumeric(path(p), labelColumn: r.data.labelColumn)
        case "digits":
            all = try Digits.load()
        default:
            throw RecipeError(file: "recipe", key: "data.name", message: "unknown data set '\(r.data.name)'")
        }
        if let problem = ClassificationTask.augmentationProblem(r.data.augmentation, sampleShape: all.sampleShape) {
            throw RecipeError(file: "recipe", key: "data.augment", message: "\(problem); change or remove data.augment")
        }
        let parts = try all.split(fractions: r.data.split, seed: r.data.splitSeed)
        let classes = all.classes ?? (all.labels.intScalars.max() ?? 0) + 1
        return ClassificationTask(train: parts[0], validation: parts[1], test: parts[2].count > 0 ? parts[2] : nil, classes: classes,
                                  batchSize: r.training.batchSize, seed: r.seed, flatten: flatten, augmentation: r.data.augmentation)
    }
}

/// Builds the model of a recipe, sized from the data.
func makeModel(_ r: Recipe, task: TrainingTask) throws -> Module {
    let m = r.model
    if let lm = task as? LanguageModelTask {
        guard m.name == "char-gpt" else {
            throw RecipeError(file: "recipe", key: "model.name", message: "'\(m.name)' cannot model text; use char-gpt")
        }
        let gpt = CharGPT(CharGPT.Config(vocab: lm.train.vocabSize, context: m.context, dModel: m.dModel, heads: m.heads,
                                         layers: m.layers, rope: m.rope), seed: r.seed)
        gpt.checkpointing = m.checkpointing
        return gpt
    }
    guard let c = task as? ClassificationTask else { preconditionFailure("unknown task") }
    let sample = c.train.sampleShape
    switch m.name {
    case "digits-mlp":
        return Models.digitsMLP(inFeatures: sample.reduce(1, *), hidden: m.hidden, classes: c.classes, seed: r.seed)
    case "digits-cnn", "small-resnet":
        guard sample.count == 3, sample[1] == sample[2], sample[1] % 4 == 0 else {
            throw RecipeError(file: "recipe", key: "model.name",
                              message: "'\(m.name)' needs square images [C, H, W] with H a multiple of 4; the data has samples of shape \(sample)")
        }
        if m.name == "small-resnet" { return SmallResNet(inChannels: sample[0], classes: c.classes, seed: r.seed) }
        return DigitsCNN(inChannels: sample[0], classes: c.classes, image: sample[1], channels: (m.channels[0], m.channels[1]), hidden: m.hidden,
                         dropout: m.dropout, seed: r.seed)
    default:
        throw RecipeError(file: "recipe", key: "model.name", message: "'\(m.name)' cannot classify; use digits-mlp, digits-cnn or small-resnet")
    }
}
