import Foundation
import Yams

/// A merge as mergekit's YAML describes it (`mergekit-yaml` configs; mergekit/config.py).
///
/// ```yaml
/// merge_method: ties
/// base_model: ./base
/// models:
///   - model: ./math
///     parameters: {weight: 0.5, density: [0.3, 0.7]}   # a gradient over the layers
///   - model: ./code
///     parameters:
///       weight: [{filter: self_attn, value: 0.2}, {value: 0.6}]   # chosen by tensor name
/// parameters: {normalize: true}
/// dtype: bfloat16
/// tokenizer_source: base
/// ```
///
/// Either `models` (every model's layers merged with each other) or `slices` (layer ranges of
/// the sources stacked into the output, as for passthrough "frankenmerges"). A key Lathe does not
/// know is an error naming it.
public struct MergeConfig: Sendable, Equatable {
    public var mergeMethod: String
    public var baseModel: String?
    public var models: [ModelEntry]?
    public var slices: [Slice]?
    public var parameters: Parameters
    /// The dtype mergekit computes in; Lathe always computes in float32 and writes the output in
    /// `outDType ?? dtype`.
    public var dtype: String?
    public var outDType: String?
    /// `base`, a model, or `union` (not supported: an error).
    public var tokenizerSource: String?
    public var chatTemplate: String?

    public typealias Parameters = [String: ParameterSetting]

    public struct ModelEntry: Sendable, Equatable {
        public var model: String
        public var parameters: Parameters
    }

    public struct SliceSource: Sendable, Equatable {
        public var model: String
        /// Layers `lowerBound..<upperBound` of the model.
        public var layerRange: Range<Int>
        public var parameters: Parameters
    }

    public struct Slice: Sendable, Equatable {
        public var sources: [SliceSource]
        public var baseModel: String?
        public var parameters: Parameters
    }

    /// Every model the config names, base first, without repeats.
    public var referencedModels: [String] {
        var out: [String] = []
        func add(_ m: String) { if !out.contains(m) { out.append(m) } }
        if let baseModel { add(baseModel) }
        for m in models ?? [] { add(m.model) }
        for s in slices ?? [] {
            if let b = s.baseModel { add(b) }
            for src in s.sources { add(src.model) }
        }
        return out
    }
}

/// A scalar parameter value as YAML gives it.
public enum ParameterValue: Sendable, Equatable, CustomStringConvertible {
    case number(Double)
    case bool(Bool)
    case string(String)

    public var description: String {
        switch self {
        case .number(let x): "\(x)"
        case .bool(let b): "\(b)"
        case .string(let s): "'\(s)'"
        }
    }
}

/// A parameter's setting (mergekit's `ParameterSetting`): a scalar; a list of scalars, a
/// gradient over the layers; or a list of `{filter, value}` conditions, the first whose filter
/// is a substring of the tensor name (or absent, or `*`) giving the value.
public indirect enum ParameterSetting: Sendable, Equatable {
    case scalar(ParameterValue)
    case gradient([ParameterValue])
    case conditions([(filter: String?, value: ParameterSetting)])

    public static func == (a: ParameterSetting, b: ParameterSetting) -> Bool {
        switch (a, b) {
        case let (.scalar(x), .scalar(y)): x == y
        case let (.gradient(x), .gradient(y)): x == y
        case let (.conditions(x), .conditions(y)): x.count == y.count && zip(x, y).allSatisfy { $0.filter == $1.filter && $0.value == $1.value }
        default: false
        }
    }
}

/// A merge config that cannot be used: where (`key`, a path such as `models[1].parameters`) and why.
public struct MergeConfigError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let key: String?
    public let message: String

    public init(file: String, key: String?, message: String) { (self.file, self.key, self.message) = (file, key, message) }

    public var description: String { key.map { "\(file): \($0): \(message)" } ?? "\(file): \(message)" }
}

extension MergeConfig {
    /// Reads a merge config file.
    public static func load(contentsOf url: URL) throws -> MergeConfig {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw MergeConfigError(file: url.path, key: nil, message: "cannot read the merge config (does the file exist?)")
        }
        return try parse(text, file: url.path)
    }

    /// Parses mergekit YAML; `file` names the source in errors.
    public static func parse(_ text: String, file: String = "<merge config>") throws -> MergeConfig {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw MergeConfigError(file: file, key: nil, message: "not valid YAML: \(error)")
        }
        let root = try node.map { try Self.plainValue($0, file: file) }
        let p = Parser(file: file)
        let top = try p.mapping(root, at: nil)
        try p.onlyKeys(top, ["merge_method", "base_model", "models", "slices", "parameters", "dtype", "out_dtype", "tokenizer_source",
                             "tokenizer", "chat_template", "name"], at: nil,
                       unsupported: ["modules": "per-module configs (multimodal models) are not supported; use models or slices"])
        guard let method = try p.string(top["merge_method"], at: "merge_method") else {
            throw MergeConfigError(file: file, key: "merge_method", message: "missing (e.g. merge_method: linear)")
        }
        var config = MergeConfig(mergeMethod: method, baseModel: try p.string(top["base_model"], at: "base_model"), models: nil, slices: nil,
                                 parameters: try p.parameters(top["parameters"], at: "parameters"),
                                 dtype: try p.string(top["dtype"], at: "dtype"), outDType: try p.string(top["out_dtype"], at: "out_dtype"),
                                 tokenizerSource: try p.string(top["tokenizer_source"], at: "tokenizer_source"),
                                 chatTemplate: try p.string(top["chat_template"], at: "chat_template"))
        if let tok = top["tokenizer"] {
            guard config.tokenizerSource == nil else {
                throw MergeConfigError(file: file, key: "tokenizer", message: "give tokenizer_source or tokenizer, not both")
            }
            let t = try p.mapping(tok, at: "tokenizer")
            try p.onlyKeys(t, ["source"], at: "tokenizer",
                           unsupported: ["tokens": "adding or editing tokens is not supported", "pad_to_multiple_of": "padding the vocabulary is not supported"])
            config.tokenizerSource = try p.string(t["source"], at: "tokenizer.source")
        }
        if let models = top["models"] {
            config.models = try p.list(models, at: "models").enumerated().map { i, m in
                let key = "models[\(i)]"
                // mergekit also accepts a bare model reference.
                if let s = m as? String { return ModelEntry(model: s, parameters: [:]) }
                let d = try p.mapping(m, at: key)
                try p.onlyKeys(d, ["model", "parameters"], at: key)
                guard let model = try p.string(d["model"], at: key + ".model") else {
                    throw MergeConfigError(file: file, key: key, message: "missing model (a folder, .safetensors or .gguf path)")
                }
                return ModelEntry(model: model, parameters: try p.parameters(d["parameters"], at: key + ".parameters"))
            }
        }
        if let slices = top["slices"] {
            config.slices = try p.list(slices, at: "slices").enumerated().map { i, s in
                let key = "slices[\(i)]"
                let d = try p.mapping(s, at: key)
                try p.onlyKeys(d, ["sources", "base_model", "parameters"], at: key,
                               unsupported: ["residual_weight": "residual_weight is not supported"])
                guard let sourcesValue = d["sources"] else { throw MergeConfigError(file: file, key: key, message: "missing sources") }
                let sources = try p.list(sourcesValue, at: key + ".sources").enumerated().map { j, src in
                    let k = "\(key).sources[\(j)]"
                    let sd = try p.mapping(src, at: k)
                    try p.onlyKeys(sd, ["model", "layer_range", "parameters"], at: k)
                    guard let model = try p.string(sd["model"], at: k + ".model") else {
                        throw MergeConfigError(file: file, key: k, message: "missing model")
                    }
                    guard let r = sd["layer_range"] as? [Any], r.count == 2, let a = p.int(r[0]), let b = p.int(r[1]), a >= 0, b >= a else {
                        throw MergeConfigError(file: file, key: k + ".layer_range", message: "expected [first, end) as two integers, e.g. [0, 16]")
                    }
                    return SliceSource(model: model, layerRange: a..<b, parameters: try p.parameters(sd["parameters"], at: k + ".parameters"))
                }
                guard !sources.isEmpty else { throw MergeConfigError(file: file, key: key + ".sources", message: "is empty") }
                return Slice(sources: sources, baseModel: try p.string(d["base_model"], at: key + ".base_model"),
                             parameters: try p.parameters(d["parameters"], at: key + ".parameters"))
            }
        }
        let given = [config.models.map { !$0.isEmpty }, config.slices.map { !$0.isEmpty }].compactMap { $0 }.filter { $0 }.count
        guard given == 1 else {
            throw MergeConfigError(file: file, key: nil, message: "give exactly one of models or slices (a non-empty list)")
        }
        return config
    }

    /// The most values (scalars, lists, mappings, counting every alias expansion) a config may stand for.
    public static let maxExpandedNodes = 100_000

    /// The YAML tree as strings, numbers, booleans, `NSNull`, `[Any]` and `[String: Any]`.
    ///
    /// Yams's own conversion traps on a key that is not a scalar (`? [a, b]: 1`) and on a base-60
    /// number that overflows (`3333330033970226:6:1`), and builds every
    /// alias expansion, so a few lines of aliases of aliases ("billion laughs") would stand for
    /// billions of values; this one counts values as it goes and stops at ``maxExpandedNodes``.
    /// Keys are plain strings (Yams rejects a key given twice); merge keys (`<<`) are not supported.
    static func plainValue(_ root: Node, file: String) throws -> Any {
        var count = 0
        func convert(_ node: Node, _ path: String?) throws -> Any {
            count += 1
            guard count <= maxExpandedNodes else {
                throw MergeConfigError(file: file, key: nil, message:
                    "the YAML stands for more than \(maxExpandedNodes) values once its aliases (*name) are expanded; a merge config needs far fewer")
            }
            switch node {
            case .scalar(let scalar):
                // YAML 1.1 reads 1:30 as 90 (base 60), and Yams traps when such a number overflows; no
                // merge config needs one, so a scalar with a colon stays a string.
                return scalar.string.contains(":") ? scalar.string : Constructor.default.any(from: node)
            case .sequence(let s): return try s.enumerated().map { i, n in try convert(n, "\(path ?? "")[\(i)]") }
            case .mapping(let m):
                var out: [String: Any] = [:]
                for (k, v) in m {
                    guard case .scalar(let scalar) = k else {
                        throw MergeConfigError(file: file, key: path, message: "a key is a list or a mapping; keys are plain names")
                    }
                    let key = scalar.string, keyPath = path.map { "\($0).\(key)" } ?? key
                    if key == "<<" {
                        throw MergeConfigError(file: file, key: keyPath, message: "YAML merge keys (<<) are not supported; write the keys out")
                    }
                    out[key] = try convert(v, keyPath)
                }
                return out
            case .alias:
                throw MergeConfigError(file: file, key: path, message: "an unresolved alias")
            }
        }
        return try convert(root, nil)
    }

    struct Parser {
        let file: String

        func fail(_ key: String?, _ message: String) -> MergeConfigError { MergeConfigError(file: file, key: key, message: message) }

        func mapping(_ v: Any?, at key: String?) throws -> [String: Any] {
            guard let d = v as? [String: Any] else {
                throw fail(key, v == nil ? "expected a mapping, found nothing" : "expected a mapping of keys to values")
            }
            return d
        }

        func list(_ v: Any, at key: String) throws -> [Any] {
            guard let l = v as? [Any] else { throw fail(key, "expected a list") }
            return l
        }

        func onlyKeys(_ d: [String: Any], _ known: [String], at key: String?, unsupported: [String: String] = [:]) throws {
            for k in d.keys.sorted() where !known.contains(k) {
                let path = key.map { "\($0).\(k)" } ?? k
                if let why = unsupported[k] { throw fail(path, why) }
                throw fail(path, "unknown key (known here: \(known.joined(separator: ", ")))")
            }
        }

        func string(_ v: Any?, at key: String) throws -> String? {
            switch v {
            case nil, is NSNull: return nil
            case let s as String: return s
            case let i as Int: return String(i)
            case let d as Double: return String(d)
            default: throw fail(key, "expected a string")
            }
        }

        func int(_ v: Any) -> Int? {
            if let i = v as? Int { return i }
            if let d = v as? Double, d == d.rounded(), abs(d) < 1e15 { return Int(d) }
            return nil
        }

        func parameters(_ v: Any?, at key: String) throws -> MergeConfig.Parameters {
            guard let v, !(v is NSNull) else { return [:] }
            let d = try mapping(v, at: key)
            var out: MergeConfig.Parameters = [:]
            for (name, value) in d { out[name] = try setting(value, at: "\(key).\(name)") }
            return out
        }

        func scalar(_ v: Any) -> ParameterValue? {
            switch v {
            case let b as Bool: return .bool(b)
            case let i as Int: return .number(Double(i))
            case let d as Double: return .number(d)
            case let s as String: return .string(s)
            default: return nil
            }
        }

        func setting(_ v: Any, at key: String) throws -> ParameterSetting {
            if let s = scalar(v) { return .scalar(s) }
            if let d = v as? [String: Any] { return .conditions([try condition(d, at: key)]) }
            guard let l = v as? [Any] else { throw fail(key, "expected a number, a list of numbers (a gradient) or a list of {filter, value}") }
            if l.allSatisfy({ scalar($0) != nil }) { return .gradient(l.map { scalar($0)! }) }
            return .conditions(try l.enumerated().map { i, c in
                guard let d = c as? [String: Any] else { throw fail("\(key)[\(i)]", "mix of values and {filter, value} conditions; use one kind") }
                return try condition(d, at: "\(key)[\(i)]")
            })
        }

        func condition(_ d: [String: Any], at key: String) throws -> (filter: String?, value: ParameterSetting) {
            try onlyKeys(d, ["filter", "value"], at: key)
            guard let value = d["value"] else { throw fail(key, "a condition needs a value (e.g. {filter: self_attn, value: 0.5})") }
            let inner = try setting(value, at: key + ".value")
            if case .conditions = inner { throw fail(key + ".value", "a condition's value is a number or a gradient, not more conditions") }
            return (try string(d["filter"], at: key + ".filter"), inner)
        }
    }
}
