import Foundation
import LatheData
import LatheNN

/// A name → entry table that the recipe parser, the trainer and the command line all read,
/// so that adding a model, a data set or anything else chosen by name is one `register` call
/// (for example at the start of a program, or in a library's setup function).
///
/// Names keep the order they were registered in (help texts and errors list them so). A
/// second registration under a name replaces the first.
public final class Registry<Entry: Sendable>: @unchecked Sendable {
    /// What the registry holds, for messages ("model", "data set").
    public let kind: String
    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private var order: [String] = []

    public init(kind: String) { self.kind = kind }

    public func register(_ name: String, _ entry: Entry) {
        lock.lock()
        defer { lock.unlock() }
        if entries.updateValue(entry, forKey: name) == nil { order.append(name) }
    }

    public subscript(name: String) -> Entry? {
        lock.lock()
        defer { lock.unlock() }
        return entries[name]
    }

    /// Registered names in registration order.
    public var names: [String] {
        lock.lock()
        defer { lock.unlock() }
        return order
    }

    /// The entry of `name`, or an error that names it and lists the known names.
    public func lookup(_ name: String) throws -> Entry {
        if let e = self[name] { return e }
        throw RegistryError(kind: kind, name: name, known: names)
    }
}

/// A name no registry entry answers to.
public struct RegistryError: Error, CustomStringConvertible, Equatable {
    public let kind: String
    public let name: String
    public let known: [String]
    public var description: String { "unknown \(kind) '\(name)' (known: \(known.joined(separator: ", ")))" }
    public init(kind: String, name: String, known: [String]) { (self.kind, self.name, self.known) = (kind, name, known) }
}

// MARK: - Models

/// How a model of a recipe is built.
public struct ModelEntry: Sendable {
    /// One line for help texts.
    public var summary: String
    /// Classifiers that take flat feature vectors (an MLP) instead of images.
    public var flattensInput: Bool
    /// Builds the recipe's model for the task's data (its sizes come from the data); throws a
    /// ``RecipeError`` when the model cannot fit the task.
    public var build: @Sendable (Recipe, TrainingTask) throws -> Module

    public init(summary: String, flattensInput: Bool = false, build: @escaping @Sendable (Recipe, TrainingTask) throws -> Module) {
        (self.summary, self.flattensInput, self.build) = (summary, flattensInput, build)
    }
}

/// The models recipes can name (`model.name`).
public enum ModelRegistry {
    public static let shared: Registry<ModelEntry> = {
        let r = Registry<ModelEntry>(kind: "model")
        r.register("digits-mlp", ModelEntry(summary: "MLP classifier (hidden)", flattensInput: true) { recipe, task in
            let c = try classification(task, recipe)
            return Models.digitsMLP(inFeatures: c.train.sampleShape.reduce(1, *), hidden: recipe.model.hidden, classes: c.classes, seed: recipe.seed)
        })
        r.register("digits-cnn", ModelEntry(summary: "two-convolution CNN (channels, hidden, dropout)") { recipe, task in
            let (c, sample) = try squareImages(task, recipe)
            let m = recipe.model
            return DigitsCNN(inChannels: sample[0], classes: c.classes, image: sample[1], channels: (m.channels[0], m.channels[1]),
                             hidden: m.hidden, dropout: m.dropout, seed: recipe.seed)
        })
        r.register("small-resnet", ModelEntry(summary: "small residual CNN") { recipe, task in
            let (c, sample) = try squareImages(task, recipe)
            return SmallResNet(inChannels: sample[0], classes: c.classes, seed: recipe.seed)
        })
        r.register("char-gpt", ModelEntry(summary: "character-level GPT (d_model, layers, heads, context, rope)") { recipe, task in
            guard let lm = task as? LanguageModelTask else {
                throw RecipeError(file: "recipe", key: "model.name", message: "'char-gpt' models text; the data set '\(recipe.data.name)' is not text")
            }
            let m = recipe.model
            let gpt = CharGPT(CharGPT.Config(vocab: lm.train.vocabSize, context: m.context, dModel: m.dModel, heads: m.heads,
                                             layers: m.layers, rope: m.rope), seed: recipe.seed)
            gpt.checkpointing = m.checkpointing
            return gpt
        })
        return r
    }()

    static func classification(_ task: TrainingTask, _ recipe: Recipe) throws -> ClassificationTask {
        guard let c = task as? ClassificationTask else {
            throw RecipeError(file: "recipe", key: "model.name", message: "'\(recipe.model.name)' cannot model text; use char-gpt")
        }
        return c
    }

    static func squareImages(_ task: TrainingTask, _ recipe: Recipe) throws -> (ClassificationTask, [Int]) {
        let c = try classification(task, recipe)
        let sample = c.train.sampleShape
        guard sample.count == 3, sample[1] == sample[2], sample[1] % 4 == 0 else {
            throw RecipeError(file: "recipe", key: "model.name",
                              message: "'\(recipe.model.name)' needs square images [C, H, W] with H a multiple of 4; the data has samples of shape \(sample)")
        }
        return (c, sample)
    }
}

// MARK: - Data sets

/// How a data set of a recipe is loaded.
public struct DataEntry: Sendable {
    public enum Kind: Sendable { case images, table, text }

    public var kind: Kind
    public var summary: String
    /// Loads the data and splits it into a task. `path` resolves a recipe path (relative to
    /// the recipe's folder when there is one); `flatten` asks for flat feature vectors.
    public var build: @Sendable (_ recipe: Recipe, _ path: (String) -> URL, _ flatten: Bool) throws -> TrainingTask
    /// What a split's sample indices count (for prediction files): "rows of ...".
    public var indexDescription: @Sendable (_ recipe: Recipe, _ split: DataSplit) -> String

    public init(kind: Kind, summary: String,
                indexDescription: @escaping @Sendable (Recipe, DataSplit) -> String = { r, _ in "the rows of \(r.data.path ?? r.data.name)" },
                build: @escaping @Sendable (Recipe, (String) -> URL, Bool) throws -> TrainingTask) {
        (self.kind, self.summary, self.indexDescription, self.build) = (kind, summary, indexDescription, build)
    }
}

/// The data sets recipes can name (`data.name`).
public enum DataRegistry {
    public static let shared: Registry<DataEntry> = {
        let r = Registry<DataEntry>(kind: "data set")
        r.register("digits", DataEntry(kind: .images, summary: "the bundled 8x8 digits (1,797 images)",
                                       indexDescription: { _, _ in "Digits.load(): rows of Sources/LatheData/Resources/digits.csv.gz, pixels / 16" }) { recipe, _, flatten in
            try splitClassification(Digits.load(), recipe, flatten: flatten)
        })
        r.register("fashion-mnist", DataEntry(kind: .images, summary: "Fashion-MNIST (IDX files; data.path or the Debian package's folder)",
                                              indexDescription: { _, split in split == .test ? "the official Fashion-MNIST test set" : "the official Fashion-MNIST training set" }) { recipe, path, flatten in
            let dir = recipe.data.path.map(path)
            let trainAll = try FashionMNIST.load(directory: dir, split: .train)
            let test = try FashionMNIST.load(directory: dir, split: .test)
            let trainFraction = recipe.data.split[0] / Swift.max(recipe.data.split[0] + recipe.data.split[1], 1e-12)
            let parts = try trainAll.split(fractions: [trainFraction, 1 - trainFraction], seed: recipe.data.splitSeed)
            try checkAugmentation(recipe, trainAll.sampleShape)
            return ClassificationTask(train: parts[0], validation: parts[1], test: test, classes: 10, batchSize: recipe.training.batchSize,
                                      seed: recipe.seed, flatten: flatten, augmentation: recipe.data.augmentation,
                                  labelSmoothing: recipe.training.labelSmoothing)
        })
        r.register("csv", DataEntry(kind: .table, summary: "a numeric CSV file (data.path, data.label_column)") { recipe, path, flatten in
            guard let p = recipe.data.path else {
                throw RecipeError(file: "recipe", key: "data.path", message: "a csv data set needs data.path")
            }
            return try splitClassification(CSV.loadNumeric(path(p), labelColumn: recipe.data.labelColumn), recipe, flatten: flatten)
        })
        r.register("shakespeare", DataEntry(kind: .text, summary: "the bundled Shakespeare text (characters), or data.path") { recipe, path, _ in
            let corpus = try recipe.data.path.map { try CharCorpus(text: String(contentsOf: path($0), encoding: .utf8)) } ?? CharCorpus.shakespeare()
            return LanguageModelTask(corpus: corpus, validationFraction: recipe.data.validationFraction, batchSize: recipe.training.batchSize,
                                     context: recipe.model.context, seed: recipe.seed, evalBatches: recipe.training.evalBatches,
                                     labelSmoothing: recipe.training.labelSmoothing)
        })
        return r
    }()

    static func checkAugmentation(_ recipe: Recipe, _ sampleShape: [Int]) throws {
        if let problem = ClassificationTask.augmentationProblem(recipe.data.augmentation, sampleShape: sampleShape) {
            throw RecipeError(file: "recipe", key: "data.augment", message: "\(problem); change or remove data.augment")
        }
    }

    /// A data set without fixed splits, split by the recipe's fractions.
    static func splitClassification(_ all: TensorDataset, _ recipe: Recipe, flatten: Bool) throws -> ClassificationTask {
        try checkAugmentation(recipe, all.sampleShape)
        let parts = try all.split(fractions: recipe.data.split, seed: recipe.data.splitSeed)
        let classes = all.classes ?? (all.labels.intScalars.max() ?? 0) + 1
        return ClassificationTask(train: parts[0], validation: parts[1], test: parts[2].count > 0 ? parts[2] : nil, classes: classes,
                                  batchSize: recipe.training.batchSize, seed: recipe.seed, flatten: flatten, augmentation: recipe.data.augmentation,
                                  labelSmoothing: recipe.training.labelSmoothing)
    }
}
