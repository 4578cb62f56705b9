import Foundation
import LatheData
import Yams

/// A training recipe: what to train, on what, how, and where to write results.
///
/// Recipes are YAML files (see `Recipes/`). Every key is checked: an unknown key or a value
/// of the wrong type is a ``RecipeError`` naming the key and the file.
public struct Recipe: Sendable, Equatable {
    public struct Model: Sendable, Equatable {
        /// A name of ``ModelRegistry`` (`digits-mlp`, `digits-cnn`, `small-resnet`, `char-gpt`, ...).
        public var name = "digits-cnn"
        public var hidden = 128
        /// digits-cnn: output channels of its two convolutions.
        public var channels = [32, 64]
        public var dropout: Float = 0
        public var dModel = 128, layers = 4, heads = 4, context = 64
        public var rope = true
        /// Gradient checkpointing per transformer block.
        public var checkpointing = false
    }

    public struct DataSpec: Sendable, Equatable {
        /// A name of ``DataRegistry`` (`digits`, `fashion-mnist`, `csv`, `shakespeare`, ...).
        public var name = "digits"
        /// A file or directory for data sets that are not bundled.
        public var path: String?
        /// Train / validation / test fractions for data sets without fixed splits.
        public var split: [Double] = [0.8, 0.1, 0.1]
        public var splitSeed: UInt64 = 0
        /// For `csv`: the label column (negative counts from the end).
        public var labelColumn = -1
        /// For text: the fraction held out for validation.
        public var validationFraction = 0.1
        /// Random shifts and flips of the training images (`augment: {shift: 2, horizontal_flip: true}`).
        public var augmentation = ImageAugmentation()
    }

    public struct OptimizerSpec: Sendable, Equatable {
        /// `sgd`, `adam` or `adamw`.
        public var name = "adamw"
        public var lr: Float = 1e-3
        public var momentum: Float = 0
        public var nesterov = false
        public var weightDecay: Float? = nil
        public var betas: [Float] = [0.9, 0.999]
        public var eps: Float = 1e-8
    }

    public struct ScheduleSpec: Sendable, Equatable {
        /// `constant`, `step` or `cosine`.
        public var name = "constant"
        public var warmupSteps = 0
        public var stepSize = 1000
        public var gamma: Float = 0.1
        public var minLR: Float = 0
    }

    public struct Training: Sendable, Equatable {
        /// Train for whole epochs, or for `steps` optimiser updates (one of the two).
        public var epochs: Int? = nil
        public var steps: Int? = nil
        public var batchSize = 64
        /// Micro-batches per optimiser update (gradient accumulation).
        public var accumulation = 1
        public var clipGradNorm: Float? = nil
        public var labelSmoothing: Float = 0
        /// Evaluate on the validation split every N updates (default: once per epoch).
        public var evalEvery: Int? = nil
        /// Write a checkpoint every N updates (default: at each evaluation).
        public var checkpointEvery: Int? = nil
        /// Evaluation batches for language models.
        public var evalBatches = 20
    }

    public var model = Model()
    public var data = DataSpec()
    public var optimizer = OptimizerSpec()
    public var schedule = ScheduleSpec()
    public var training = Training()
    public var seed: UInt64 = 0
    public var threads: Int? = nil
    /// Output directory for checkpoints, models and logs.
    public var output = "runs/run"
    /// The compression pipeline of `lathe compress` (nil: none).
    public var compress: CompressSpec? = nil

    public init() {}
}

/// A recipe that cannot be used, with the file and key at fault.
public struct RecipeError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let key: String?
    public let message: String

    public init(file: String, key: String?, message: String) { (self.file, self.key, self.message) = (file, key, message) }

    public var description: String {
        if let key { return "\(file): \(key): \(message)" }
        return "\(file): \(message)"
    }
}

extension Recipe {
    /// Reads a recipe file, applying `overrides` (`key.path=value`, the value parsed as YAML).
    public static func load(contentsOf url: URL, overrides: [String] = []) throws -> Recipe {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw RecipeError(file: url.path, key: nil, message: "cannot read the recipe (does the file exist?)")
        }
        return try parse(text, file: url.path, overrides: overrides)
    }

    /// Parses recipe YAML; `file` names the source in errors.
    public static func parse(_ text: String, file: String = "<recipe>", overrides: [String] = []) throws -> Recipe {
        var reader = Reader(file: file)
        return try reader.recipe(yamlMapping(text, file: file, overrides: overrides))
    }

    /// The top-level mapping of recipe YAML with `overrides` applied.
    static func yamlMapping(_ text: String, file: String, overrides: [String]) throws -> [String: Any] {
        let root: Any?
        do { root = try Yams.load(yaml: text) } catch {
            throw RecipeError(file: file, key: nil, message: "not valid YAML: \(error)")
        }
        guard var dict = (root ?? [String: Any]()) as? [String: Any] else {
            throw RecipeError(file: file, key: nil, message: "the top level must be a mapping of keys to values")
        }
        for o in overrides {
            guard let eq = o.firstIndex(of: "="), eq != o.startIndex else {
                throw RecipeError(file: file, key: nil, message: "--set \(o): expected key=value, e.g. optimizer.lr=0.01")
            }
            let path = o[..<eq].split(separator: ".").map(String.init)
            let valueText = String(o[o.index(after: eq)...])
            // The value is YAML (numbers, lists, true/false); `null` removes the key.
            let parsed: Any?? = try? Yams.load(yaml: valueText)
            let value: Any? = parsed ?? valueText
            dict = setting(dict, path: path[...], value: value)
        }
        return dict
    }

    private static func setting(_ dict: [String: Any], path: ArraySlice<String>, value: Any?) -> [String: Any] {
        var d = dict
        guard let first = path.first else { return d }
        if path.count == 1 { d[first] = value; return d }
        d[first] = setting(d[first] as? [String: Any] ?? [:], path: path.dropFirst(), value: value)
        return d
    }
}

/// Typed, key-checked reading of the YAML tree.
struct Reader {
    let file: String

    func fail(_ key: String, _ message: String) -> RecipeError { RecipeError(file: file, key: key, message: message) }

    /// `prefix`: the path of `dict` in the recipe (`data.` for a key inside `data`), for messages.
    func section(_ dict: [String: Any], _ key: String, allowed: Set<String>, prefix: String = "") throws -> [String: Any] {
        guard let v = dict[key] else { return [:] }
        let key = prefix + key
        guard let mapping = v as? [String: Any] else { throw fail(key, "expected a mapping of keys to values") }
        // `key: null` (or `--set key=null`) means "not set".
        let d = mapping.filter { !($0.value is NSNull) }
        if let unknown = d.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw fail("\(key).\(unknown)", "unknown key (known: \(allowed.sorted().joined(separator: ", ")))")
        }
        return d
    }

    /// The `augment: {shift: N, horizontal_flip: B}` mapping of `dict`, if present.
    func augmentation(_ dict: [String: Any], prefix: String) throws -> ImageAugmentation? {
        guard dict["augment"] != nil else { return nil }
        let a = try section(dict, "augment", allowed: ["shift", "horizontal_flip"], prefix: prefix)
        let shift = try int(a, prefix + "augment.", "shift") ?? 0
        if !(0...4096).contains(shift) { throw fail(prefix + "augment.shift", "must be a number of pixels from 0 to 4096, got \(shift)") }
        return ImageAugmentation(shift: shift, horizontalFlip: try bool(a, prefix + "augment.", "horizontal_flip") ?? false)
    }

    func int(_ d: [String: Any], _ section: String, _ key: String) throws -> Int? {
        guard let v = d[key] else { return nil }
        if let i = v as? Int { return i }
        if let x = v as? Double, let i = Int(exactly: x) { return i }
        throw fail("\(section)\(key)", "expected an integer, got \(describe(v))")
    }

    func double(_ d: [String: Any], _ section: String, _ key: String) throws -> Double? {
        guard let v = d[key] else { return nil }
        if let x = v as? Double { return x }
        if let i = v as? Int { return Double(i) }
        throw fail("\(section)\(key)", "expected a number, got \(describe(v))")
    }

    func float(_ d: [String: Any], _ section: String, _ key: String) throws -> Float? {
        try double(d, section, key).map(Float.init)
    }

    func bool(_ d: [String: Any], _ section: String, _ key: String) throws -> Bool? {
        guard let v = d[key] else { return nil }
        if let b = v as? Bool { return b }
        throw fail("\(section)\(key)", "expected true or false, got \(describe(v))")
    }

    func string(_ d: [String: Any], _ section: String, _ key: String, oneOf: [String]? = nil) throws -> String? {
        guard let v = d[key] else { return nil }
        guard let s = v as? String ?? (v as? Int).map(String.init) ?? (v as? Double).map({ String($0) }) else {
            throw fail("\(section)\(key)", "expected a string, got \(describe(v))")
        }
        if let oneOf, !oneOf.contains(s) {
            throw fail("\(section)\(key)", "'\(s)' is not one of \(oneOf.joined(separator: ", "))")
        }
        return s
    }

    func doubles(_ d: [String: Any], _ section: String, _ key: String) throws -> [Double]? {
        guard let v = d[key] else { return nil }
        guard let a = v as? [Any] else { throw fail("\(section)\(key)", "expected a list of numbers, got \(describe(v))") }
        return try a.map { x in
            if let x = x as? Double { return x }
            if let i = x as? Int { return Double(i) }
            throw fail("\(section)\(key)", "expected a list of numbers, got \(describe(v))")
        }
    }

    func describe(_ v: Any) -> String {
        if let s = v as? String { return "'\(s)'" }
        if v is [Any] { return "a list" }
        if v is [String: Any] { return "a mapping" }
        return "\(v)"
    }

    func positive(_ value: Int?, _ key: String) throws -> Int? {
        if let value, value < 1 { throw fail(key, "must be at least 1, got \(value)") }
        return value
    }

    /// The `optimizer` section of `root`.
    func optimizerSpec(_ root: [String: Any]) throws -> Recipe.OptimizerSpec {
        var o = Recipe.OptimizerSpec()
        let d = try section(root, "optimizer", allowed: ["name", "lr", "momentum", "nesterov", "weight_decay", "betas", "eps"])
        o.name = try string(d, "optimizer.", "name", oneOf: ["sgd", "adam", "adamw"]) ?? o.name
        o.lr = try float(d, "optimizer.", "lr") ?? o.lr
        if !(o.lr > 0) { throw fail("optimizer.lr", "must be positive, got \(o.lr)") }
        o.momentum = try float(d, "optimizer.", "momentum") ?? o.momentum
        o.nesterov = try bool(d, "optimizer.", "nesterov") ?? o.nesterov
        o.weightDecay = try float(d, "optimizer.", "weight_decay")
        o.betas = try doubles(d, "optimizer.", "betas")?.map(Float.init) ?? o.betas
        if o.betas.count != 2 { throw fail("optimizer.betas", "expected two numbers, e.g. [0.9, 0.999]") }
        o.eps = try float(d, "optimizer.", "eps") ?? o.eps
        return o
    }

    /// The `schedule` section of `root`.
    func scheduleSpec(_ root: [String: Any]) throws -> Recipe.ScheduleSpec {
        var s_ = Recipe.ScheduleSpec()
        let s = try section(root, "schedule", allowed: ["name", "warmup_steps", "step_size", "gamma", "min_lr"])
        s_.name = try string(s, "schedule.", "name", oneOf: ["constant", "step", "cosine"]) ?? s_.name
        s_.warmupSteps = try int(s, "schedule.", "warmup_steps") ?? s_.warmupSteps
        s_.stepSize = try positive(int(s, "schedule.", "step_size"), "schedule.step_size") ?? s_.stepSize
        s_.gamma = try float(s, "schedule.", "gamma") ?? s_.gamma
        s_.minLR = try float(s, "schedule.", "min_lr") ?? s_.minLR
        return s_
    }

    mutating func recipe(_ root: [String: Any]) throws -> Recipe {
        let top: Set<String> = ["model", "data", "optimizer", "schedule", "training", "seed", "threads", "output", "compress"]
        if let unknown = root.keys.sorted().first(where: { !top.contains($0) }) {
            throw fail(unknown, "unknown key (known: \(top.sorted().joined(separator: ", ")))")
        }
        var r = Recipe()
        let m = try section(root, "model", allowed: ["name", "hidden", "channels", "dropout", "d_model", "layers", "heads", "context", "rope",
                                                     "checkpointing"])
        r.model.name = try string(m, "model.", "name", oneOf: ModelRegistry.shared.names) ?? r.model.name
        r.model.hidden = try positive(int(m, "model.", "hidden"), "model.hidden") ?? r.model.hidden
        r.model.dropout = try float(m, "model.", "dropout") ?? r.model.dropout
        if let c = try doubles(m, "model.", "channels") {
            guard c.count == 2, c.allSatisfy({ $0 >= 1 && $0 == $0.rounded() && $0 <= 4096 }) else {
                throw fail("model.channels", "expected two channel counts (whole numbers from 1 to 4096), got \(c)")
            }
            r.model.channels = c.map { Int($0) }
        }
        if !(0..<1).contains(r.model.dropout) { throw fail("model.dropout", "must be in [0, 1), got \(r.model.dropout)") }
        r.model.dModel = try positive(int(m, "model.", "d_model"), "model.d_model") ?? r.model.dModel
        r.model.layers = try positive(int(m, "model.", "layers"), "model.layers") ?? r.model.layers
        r.model.heads = try positive(int(m, "model.", "heads"), "model.heads") ?? r.model.heads
        r.model.context = try positive(int(m, "model.", "context"), "model.context") ?? r.model.context
        r.model.rope = try bool(m, "model.", "rope") ?? r.model.rope
        r.model.checkpointing = try bool(m, "model.", "checkpointing") ?? r.model.checkpointing
        if m["channels"] != nil, r.model.name != "digits-cnn" { throw fail("model.channels", "applies to digits-cnn, not \(r.model.name)") }
        if r.model.dModel % r.model.heads != 0 { throw fail("model.heads", "d_model \(r.model.dModel) is not divisible by \(r.model.heads) heads") }

        let d = try section(root, "data", allowed: ["name", "path", "split", "split_seed", "label_column", "validation_fraction", "augment"])
        r.data.name = try string(d, "data.", "name", oneOf: DataRegistry.shared.names) ?? r.data.name
        r.data.path = try string(d, "data.", "path")
        r.data.split = try doubles(d, "data.", "split") ?? r.data.split
        if r.data.split.count != 3 || r.data.split.contains(where: { $0 < 0 }) || Swift.abs(r.data.split.reduce(0, +) - 1) > 1e-6 {
            throw fail("data.split", "expected three non-negative fractions adding up to 1 (train, validation, test), got \(r.data.split)")
        }
        if r.data.split[0] <= 0 || r.data.split[1] <= 0 {
            throw fail("data.split", "the train and validation fractions must be positive (the best model is chosen on validation), got \(r.data.split)")
        }
        r.data.splitSeed = try int(d, "data.", "split_seed").map { UInt64(truncatingIfNeeded: $0) } ?? r.data.splitSeed
        r.data.labelColumn = try int(d, "data.", "label_column") ?? r.data.labelColumn
        r.data.validationFraction = try double(d, "data.", "validation_fraction") ?? r.data.validationFraction
        if !(r.data.validationFraction > 0 && r.data.validationFraction < 1) {
            throw fail("data.validation_fraction", "must be between 0 and 1 (exclusive), got \(r.data.validationFraction)")
        }
        if let a = try augmentation(d, prefix: "data.") {
            r.data.augmentation = a
            if DataRegistry.shared[r.data.name]?.kind == .text { throw fail("data.augment", "applies to images, not to the text data set '\(r.data.name)'") }
        }

        r.optimizer = try optimizerSpec(root)
        r.schedule = try scheduleSpec(root)

        let t = try section(root, "training", allowed: ["epochs", "steps", "batch_size", "accumulation", "clip_grad_norm",
                                                         "label_smoothing", "eval_every", "checkpoint_every", "eval_batches"])
        r.training.epochs = try positive(int(t, "training.", "epochs"), "training.epochs")
        r.training.steps = try positive(int(t, "training.", "steps"), "training.steps")
        if (r.training.epochs == nil) == (r.training.steps == nil) {
            throw fail("training", "give exactly one of training.epochs and training.steps")
        }
        r.training.batchSize = try positive(int(t, "training.", "batch_size"), "training.batch_size") ?? r.training.batchSize
        r.training.accumulation = try positive(int(t, "training.", "accumulation"), "training.accumulation") ?? r.training.accumulation
        r.training.clipGradNorm = try float(t, "training.", "clip_grad_norm")
        r.training.labelSmoothing = try float(t, "training.", "label_smoothing") ?? r.training.labelSmoothing
        if !(0..<1).contains(r.training.labelSmoothing) {
            throw fail("training.label_smoothing", "must be in [0, 1), got \(r.training.labelSmoothing)")
        }
        r.training.evalEvery = try positive(int(t, "training.", "eval_every"), "training.eval_every")
        r.training.checkpointEvery = try positive(int(t, "training.", "checkpoint_every"), "training.checkpoint_every")
        r.training.evalBatches = try positive(int(t, "training.", "eval_batches"), "training.eval_batches") ?? r.training.evalBatches

        r.seed = try int(root, "", "seed").map { UInt64(truncatingIfNeeded: $0) } ?? r.seed
        r.threads = try positive(int(root, "", "threads"), "threads")
        r.output = try string(root, "", "output") ?? r.output
        r.compress = try compress(root)
        return r
    }
}
