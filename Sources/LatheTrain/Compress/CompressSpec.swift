import Foundation
import LatheData

/// The `compress:` section of a recipe: the variants `lathe compress` makes from the trained
/// baseline, each from the baseline's weights, and then compares in a report.
///
/// ```yaml
/// compress:
///   calibration_batches: 8
///   stages:
///     - {name: int8, method: quantize, scheme: int8, observer: mse}
///     - {name: int4, method: quantize, scheme: int4, group_size: 32}
///     - {name: int8-qat, method: qat, steps: 300, lr: 0.0001}
///     - {name: pruned-50, method: prune, prune: structured, ratio: 0.5, steps: 300}
///     - {name: sparse-90, method: prune, prune: global, sparsity: 0.9, gradual: true, steps: 600}
///     - {name: student, method: distill, student: {channels: [8, 16], hidden: 32}, steps: 1200, seeds: 3}
/// ```
/// A compression stage's method: what `lathe compress` does for it.
public enum CompressMethod: String, CaseIterable, Sendable {
    case quantize, qat, prune, distill

    /// The stage keys this method reads (besides `name` and `method`).
    public var keys: Set<String> {
        switch self {
        case .quantize: ["scheme", "group_size", "symmetric", "observer", "keep_first_last"]
        case .qat: ["steps", "lr", "ranges", "observer", "keep_first_last"]
        case .prune: ["prune", "sparsity", "ratio", "gradual", "steps", "lr"]
        case .distill: ["student", "steps", "lr", "alpha", "temperature", "seeds", "augment"]
        }
    }
}

/// How a `quantize` stage quantizes.
public enum QuantizeScheme: String, CaseIterable, Sendable {
    /// int8 weights and activations, activation ranges calibrated on training batches.
    case int8
    /// int8 weights, activations quantized per batch.
    case int8Dynamic = "int8-dynamic"
    /// Group-wise int4 weights of `Linear` layers, float activations.
    case int4
    /// Group-wise int8 weights of `Linear` layers, float activations.
    case int8Weight = "int8-weight"

    public var isGroupwise: Bool { self == .int4 || self == .int8Weight }
}

/// How static int8 calibrates activation ranges.
public enum ObserverName: String, CaseIterable, Sendable {
    case minmax, percentile, mse
}

/// How QAT follows activation ranges.
public enum QATRanges: String, CaseIterable, Sendable {
    /// Moving average of each batch's min and max.
    case ema
    /// Trained clipping bounds.
    case learned
}

/// Which weights a `prune` stage removes.
public enum PruneMethod: String, CaseIterable, Sendable {
    /// Each weight loses `sparsity` of its entries.
    case magnitude
    /// One magnitude threshold across all weights.
    case global
    /// `ratio` of the channels of every layer that feeds another.
    case structured
    /// Two of every four consecutive inputs.
    case twoFour = "2:4"
}

public struct CompressSpec: Sendable, Equatable {
    public struct Stage: Sendable, Equatable {
        public var name: String
        public var method: CompressMethod
        /// quantize.
        public var scheme = QuantizeScheme.int8
        public var groupSize = 64
        public var symmetric = true
        /// Calibration of static int8 (quantize, qat).
        public var observer = ObserverName.minmax
        public var keepFirstLast = false
        /// Fine-tuning (prune), QAT or distillation steps; learning rate.
        public var steps = 0
        public var lr: Float = 1e-3
        /// qat.
        public var ranges = QATRanges.ema
        /// prune.
        public var prune = PruneMethod.global
        public var sparsity = 0.9
        public var ratio = 0.5
        /// prune (magnitude, global): reach the sparsity on a cubic schedule over the first
        /// two thirds of the steps instead of at once.
        public var gradual = false
        /// distill: the student's `model` keys, as `--set` overrides (`model.hidden=32`).
        public var student: [String] = []
        public var alpha: Float = 0.5
        public var temperature: Float = 4
        /// distill: seeds to train the KD student and the plain (cross-entropy) student with;
        /// the report gives the mean accuracy of each.
        public var seeds = 1
        /// distill: random shifts and flips of the distillation batches, for both students (nil: the
        /// recipe's `data.augment`). The teacher labels each augmented image, so the KD student
        /// learns the teacher's function beyond the training images themselves.
        public var augmentation: ImageAugmentation?

        public init(name: String, method: CompressMethod) { (self.name, self.method) = (name, method) }
    }

    /// Training batches that static int8 calibrates on.
    public var calibrationBatches = 8
    public var stages: [Stage] = []

    public init(stages: [Stage] = []) { self.stages = stages }
}

extension Reader {
    /// A value of `key` that must be one of `T`'s raw values.
    func choice<T: RawRepresentable & CaseIterable>(_ d: [String: Any], _ section: String, _ key: String, _: T.Type) throws -> T?
    where T.RawValue == String {
        try string(d, section, key, oneOf: T.allCases.map(\.rawValue)).flatMap(T.init(rawValue:))
    }

    func compress(_ root: [String: Any]) throws -> CompressSpec? {
        guard root["compress"] != nil, !(root["compress"] is NSNull) else { return nil }
        let c = try section(root, "compress", allowed: ["calibration_batches", "stages"])
        var spec = CompressSpec()
        spec.calibrationBatches = try positive(int(c, "compress.", "calibration_batches"), "compress.calibration_batches") ?? spec.calibrationBatches
        guard let list = c["stages"] as? [Any], !list.isEmpty else {
            throw fail("compress.stages", "expected a list of stages, each a mapping with name and method (quantize, qat, prune or distill)")
        }
        var names = Set<String>()
        for (i, item) in list.enumerated() {
            let key = "compress.stages[\(i)]"
            guard let d = (item as? [String: Any])?.filter({ !($0.value is NSNull) }) else { throw fail(key, "expected a mapping, got \(describe(item))") }
            guard let method = try choice(d, key + ".", "method", CompressMethod.self) else {
                throw fail(key + ".method", "missing (\(CompressMethod.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            let allowed = method.keys.union(["name", "method"])
            if let unknown = d.keys.sorted().first(where: { !allowed.contains($0) }) {
                throw fail("\(key).\(unknown)", "not a key of \(method) stages (known: \(allowed.sorted().joined(separator: ", ")))")
            }
            guard let name = try string(d, key + ".", "name"), !name.isEmpty,
                  name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw fail(key + ".name", "missing or not a plain name (letters, digits, - and _; it names the variant's file)")
            }
            // A distill stage also writes <name>-no-kd; baseline is the trained model.
            let taken = method == .distill ? [name, name + "-no-kd"] : [name]
            guard name != "baseline", taken.allSatisfy({ !names.contains($0) }) else {
                throw fail(key + ".name", "'\(name)' is taken (by another stage, a distill stage's <name>-no-kd, or baseline, the trained model)")
            }
            names.formUnion(taken)
            var s = CompressSpec.Stage(name: name, method: method)
            let p = key + "."
            s.scheme = try choice(d, p, "scheme", QuantizeScheme.self) ?? s.scheme
            s.groupSize = try positive(int(d, p, "group_size"), p + "group_size") ?? s.groupSize
            if s.groupSize % 16 != 0 { throw fail(p + "group_size", "must be a multiple of 16 (32, 64, 128), got \(s.groupSize)") }
            s.symmetric = try bool(d, p, "symmetric") ?? s.symmetric
            s.observer = try choice(d, p, "observer", ObserverName.self) ?? s.observer
            s.keepFirstLast = try bool(d, p, "keep_first_last") ?? s.keepFirstLast
            s.steps = try int(d, p, "steps") ?? s.steps
            if s.steps < 0 || (s.steps == 0 && (method == .qat || method == .distill)) {
                throw fail(p + "steps", "must be \(method == .prune ? "at least 0" : "at least 1"), got \(s.steps)")
            }
            s.lr = try float(d, p, "lr") ?? s.lr
            if !(s.lr > 0) { throw fail(p + "lr", "must be positive, got \(s.lr)") }
            s.ranges = try choice(d, p, "ranges", QATRanges.self) ?? s.ranges
            s.prune = try choice(d, p, "prune", PruneMethod.self) ?? s.prune
            s.sparsity = try double(d, p, "sparsity") ?? s.sparsity
            if !(0..<1).contains(s.sparsity) { throw fail(p + "sparsity", "must be in [0, 1), got \(s.sparsity)") }
            s.ratio = try double(d, p, "ratio") ?? s.ratio
            if !(0..<1).contains(s.ratio) { throw fail(p + "ratio", "must be in [0, 1), got \(s.ratio)") }
            s.gradual = try bool(d, p, "gradual") ?? s.gradual
            if s.gradual, !(s.prune == .magnitude || s.prune == .global) || s.steps < 3 {
                throw fail(p + "gradual", "applies to magnitude and global pruning with at least 3 steps")
            }
            if let student = d["student"] {
                guard let m = student as? [String: Any] else { throw fail(p + "student", "expected a mapping of model keys, e.g. {channels: [8, 16], hidden: 32}") }
                s.student = m.keys.sorted().map { "model.\($0)=\(yamlText(m[$0]!))" }
            }
            s.alpha = try float(d, p, "alpha") ?? s.alpha
            if !(0...1).contains(s.alpha) { throw fail(p + "alpha", "must be in [0, 1], got \(s.alpha)") }
            s.temperature = try float(d, p, "temperature") ?? s.temperature
            if !(s.temperature > 0) { throw fail(p + "temperature", "must be positive, got \(s.temperature)") }
            s.seeds = try positive(int(d, p, "seeds"), p + "seeds") ?? s.seeds
            s.augmentation = try augmentation(d, prefix: p)
            if s.augmentation != nil, let data = (root["data"] as? [String: Any])?["name"] as? String, DataRegistry.shared[data]?.kind == .text {
                throw fail(p + "augment", "applies to images, not to the text data set '\(data)'")
            }
            spec.stages.append(s)
        }
        return spec
    }

    /// A YAML value back as flow-style text (for `--set` overrides).
    func yamlText(_ v: Any) -> String {
        if let a = v as? [Any] { return "[" + a.map(yamlText).joined(separator: ", ") + "]" }
        if let b = v as? Bool { return b ? "true" : "false" }
        return "\(v)"
    }
}
