import Foundation
import LatheIO

/// Where and how LoRA adapters go (Hu et al. 2021, https://arxiv.org/abs/2106.09685), with PEFT's
/// `LoraConfig` semantics so that `adapter_config.json` reads and writes without loss.
///
/// A linear layer at module path `key` (`model.layers.0.self_attn.q_proj`) is adapted when it
/// matches ``targets`` (a name suffix `key == t || key.hasSuffix("." + t)`, a regex matching the
/// whole key, or every linear layer but the output head), is not ``excluded``, and, when ``layers``
/// is set, its layer index (the first `.<name>.<number>.` of the key, or the number after one of
/// ``layersPattern``) is listed. Its rank and alpha come from the first entry of ``rankPattern`` /
/// ``alphaPattern`` whose pattern matches the end of the key after a dot (`(.*\.)?(pattern)`).
///
/// The adapter adds `scaling · B A x` with `scaling = alpha / r`, or `alpha / sqrt(r)` with
/// ``useRSLoRA`` (Kalajdzievski 2023, https://arxiv.org/abs/2312.03732). ``useDoRA`` adds the
/// magnitude vector of DoRA (Liu et al. 2024, https://arxiv.org/abs/2402.09353).
public struct LoRAConfig: Sendable, Equatable {
    /// Which modules an adapter wraps.
    public enum Targets: Sendable, Equatable {
        /// Module names matched as suffixes after a dot, or whole keys.
        case names([String])
        /// A regular expression that must match the whole module key.
        case regex(String)
        /// Every linear layer except the output projection (PEFT's `"all-linear"`).
        case allLinear
    }

    /// A per-module override: modules whose key ends (after a dot) with a match of `pattern`.
    public struct Override<Value: Sendable & Equatable>: Sendable, Equatable {
        public var pattern: String
        public var value: Value
        public init(_ pattern: String, _ value: Value) { (self.pattern, self.value) = (pattern, value) }
    }

    public var targets: Targets
    /// `r`: the rank of A `[r, in]` and B `[out, r]`.
    public var rank: Int
    /// `lora_alpha`.
    public var alpha: Double
    /// `lora_dropout`: dropout on the adapter's input, in training only.
    public var dropout: Float
    /// `layers_to_transform`: only these layer indices (nil: all).
    public var layers: [Int]?
    /// `layers_pattern`: the names before the layer index (`layers`, `h`), nil: any.
    public var layersPattern: [String]?
    /// `exclude_modules`: names or a regex (``Targets/allLinear`` is not allowed here).
    public var excluded: Targets?
    public var rankPattern: [Override<Int>]
    public var alphaPattern: [Override<Double>]
    public var useRSLoRA: Bool
    public var useDoRA: Bool
    /// `base_model_name_or_path`, recorded in the file for the reader.
    public var baseModel: String?

    public init(targets: Targets, rank: Int = 8, alpha: Double = 8, dropout: Float = 0, layers: [Int]? = nil,
                layersPattern: [String]? = nil, excluded: Targets? = nil, rankPattern: [Override<Int>] = [],
                alphaPattern: [Override<Double>] = [], useRSLoRA: Bool = false, useDoRA: Bool = false, baseModel: String? = nil) {
        (self.targets, self.rank, self.alpha, self.dropout, self.layers, self.layersPattern) = (targets, rank, alpha, dropout, layers, layersPattern)
        (self.excluded, self.rankPattern, self.alphaPattern, self.useRSLoRA, self.useDoRA) = (excluded, rankPattern, alphaPattern, useRSLoRA, useDoRA)
        self.baseModel = baseModel
    }

    /// The last `n` of `count` layer indices (mlx-lm's `num_layers`), for ``layers``.
    public static func lastLayers(_ n: Int, of count: Int) -> [Int] {
        Array(Swift.max(0, count - n)..<count)
    }

    /// Checks the numbers and compiles the patterns; throws a ``LoRAError`` naming the field.
    public func validate() throws(LoRAError) {
        guard rank >= 1, rank <= 1 << 16 else { throw LoRAError("r must be in 1...65536, got \(rank)") }
        guard Float(alpha).isFinite else { throw LoRAError("lora_alpha must be a finite float32 number, got \(alpha)") }
        guard dropout >= 0, dropout < 1 else { throw LoRAError("lora_dropout must be in [0, 1), got \(dropout)") }
        if let layers, layers.contains(where: { $0 < 0 }) { throw LoRAError("layers_to_transform holds a negative index") }
        if case .regex = targets, layers != nil { throw LoRAError("layers_to_transform cannot be used when target_modules is a regex (as in PEFT)") }
        if case .names(let n) = targets, n.isEmpty { throw LoRAError("target_modules is an empty list") }
        if case .allLinear? = excluded { throw LoRAError("exclude_modules cannot be all-linear") }
        for o in rankPattern where !(o.value >= 1 && o.value <= 1 << 16) {
            throw LoRAError("rank_pattern['\(o.pattern)'] must be in 1...65536, got \(o.value)")
        }
        for o in alphaPattern where !Float(o.value).isFinite { throw LoRAError("alpha_pattern['\(o.pattern)'] must be a finite float32 number") }
        for (field, written, pattern) in patterns where (try? Regex(pattern)) == nil {
            throw LoRAError("\(field): '\(written)' is not a regular expression Lathe can read")
        }
    }

    /// (field, pattern as written, the regex Lathe builds from it).
    private var patterns: [(String, String, String)] {
        var out: [(String, String, String)] = []
        if case .regex(let r) = targets { out.append(("target_modules", r, r)) }
        if case .regex(let r)? = excluded { out.append(("exclude_modules", r, r)) }
        out += rankPattern.map { ("rank_pattern", $0.pattern, "(.*\\.)?(\($0.pattern))") }
        out += alphaPattern.map { ("alpha_pattern", $0.pattern, "(.*\\.)?(\($0.pattern))") }
        for p in layersPattern ?? [] { out.append(("layers_pattern", p, "(?:^|.*?\\.)\(p)\\.([0-9]+)\\.")) }
        return out
    }

    private static func fullMatch(_ pattern: String, _ key: String) -> Bool {
        guard let r = try? Regex(pattern) else { return false }
        return (try? r.wholeMatch(in: key)) != nil
    }

    private static func matches(_ t: Targets, _ key: String, isOutput: Bool) -> Bool {
        switch t {
        case .names(let names): names.contains { key == $0 || key.hasSuffix("." + $0) }
        case .regex(let r): fullMatch(r, key)
        case .allLinear: !isOutput
        }
    }

    /// The layer index in `key`: the number of the first `.<name>.<number>.` (or after one of
    /// ``layersPattern``), as PEFT finds it.
    func layerIndex(_ key: String) -> Int? {
        let candidates = layersPattern.map { $0.map { "(?:^|.*?\\.)\($0)\\.([0-9]+)\\." } } ?? [".*?\\.[^.]*\\.([0-9]+)\\."]
        for p in candidates {
            guard let r = try? Regex(p), let m = try? r.prefixMatch(in: key), m.output.count > 1,
                  let s = m.output[1].substring else { continue }
            return Int(s)
        }
        return nil
    }

    /// Whether the linear layer at `key` gets an adapter. `isOutput`: it is the model's output
    /// projection (never adapted by ``Targets/allLinear``).
    public func adapts(_ key: String, isOutput: Bool = false) -> Bool {
        if let excluded, LoRAConfig.matches(excluded, key, isOutput: false) { return false }
        guard LoRAConfig.matches(targets, key, isOutput: isOutput) else { return false }
        guard let layers else { return true }
        guard let i = layerIndex(key) else { return false }
        return layers.contains(i)
    }

    private static func override<V>(_ list: [Override<V>], _ key: String) -> V? {
        list.first { fullMatch("(.*\\.)?(\($0.pattern))", key) }?.value
    }

    /// The rank of the adapter at `key` (``rankPattern`` first).
    public func rank(for key: String) -> Int { LoRAConfig.override(rankPattern, key) ?? rank }

    /// The alpha of the adapter at `key` (``alphaPattern`` first).
    public func alpha(for key: String) -> Double { LoRAConfig.override(alphaPattern, key) ?? alpha }

    /// `alpha / r`, or `alpha / sqrt(r)` with rsLoRA, for the adapter at `key` (computed in
    /// double precision as PEFT does, then rounded to float).
    public func scaling(for key: String) -> Float {
        let r = Double(rank(for: key)), a = alpha(for: key)
        return Float(useRSLoRA ? a / r.squareRoot() : a / r)
    }
}

/// A LoRA configuration or adapter that cannot be used, with what is wrong.
public struct LoRAError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - adapter_config.json

extension LoRAConfig {
    /// Keys of PEFT's `LoraConfig` that do not change what the adapter computes.
    static let informationalKeys: Set<String> = [
        "peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode", "peft_version", "auto_mapping",
        "init_lora_weights", "megatron_core", "qalora_group_size", "loftq_config", "ensure_weight_tying",
    ]
    /// Keys Lathe reads.
    static let readKeys: Set<String> = [
        "r", "lora_alpha", "lora_dropout", "target_modules", "layers_to_transform", "layers_pattern", "exclude_modules",
        "rank_pattern", "alpha_pattern", "use_rslora", "use_dora", "bias", "lora_bias", "fan_in_fan_out", "modules_to_save",
    ]

    /// Reads PEFT's `adapter_config.json` for a LoRA adapter. Keys that change the computation in
    /// ways Lathe does not implement (`fan_in_fan_out`, trainable biases, `modules_to_save`,
    /// other PEFT methods' options) are errors naming the key, not silently ignored.
    public static func peft(_ json: JSONValue) throws(LoRAError) -> LoRAConfig {
        guard let members = json.objectMembers else { throw LoRAError("adapter_config.json: expected a JSON object, got \(json.kindName)") }
        func bad(_ m: String) -> LoRAError { LoRAError("adapter_config.json: " + m) }
        let type = json["peft_type"]?.stringValue
        guard type == "LORA" else {
            throw bad("peft_type is \(type.map { "'\($0)'" } ?? "missing"); Lathe reads LORA adapters (LoRA, rsLoRA, DoRA)")
        }
        for (key, value) in members where !readKeys.contains(key) && !informationalKeys.contains(key) {
            switch value {
            case .null, .bool(false): continue
            case .object(let m) where m.isEmpty: continue
            case .array(let a) where a.isEmpty: continue
            default: throw bad("\(key) is set (\(JSONWriter.serialize(value, indent: nil).prefix(60))); Lathe does not support it")
            }
        }
        func bool(_ key: String) throws(LoRAError) -> Bool {
            guard let v = json[key], !v.isNull else { return false }
            guard let b = v.boolValue else { throw bad("\(key) must be true or false, got \(v.kindName)") }
            return b
        }
        func number(_ key: String, _ v: JSONValue) throws(LoRAError) -> Double {
            guard let d = v.doubleValue, d.isFinite else { throw bad("\(key) must be a finite number, got \(v.kindName)") }
            return d
        }
        func strings(_ key: String, _ v: JSONValue) throws(LoRAError) -> [String] {
            if let s = v.stringValue { return [s] }
            guard let a = v.arrayValue else { throw bad("\(key) must be a string or a list of strings, got \(v.kindName)") }
            var out: [String] = []
            for item in a {
                guard let s = item.stringValue else { throw bad("\(key) must hold strings, found \(item.kindName)") }
                out.append(s)
            }
            return out
        }
        func targets(_ key: String, _ v: JSONValue) throws(LoRAError) -> Targets {
            if let s = v.stringValue { return s.lowercased() == "all-linear" ? .allLinear : .regex(s) }
            return .names(try strings(key, v))
        }
        guard let rv = json["r"], let r = rv.intValue else { throw bad("r is missing or not an integer") }
        guard let target = json["target_modules"], !target.isNull else {
            throw bad("target_modules is missing (PEFT fills in the architecture's defaults when it saves; this file has none)")
        }
        var c = LoRAConfig(targets: try targets("target_modules", target), rank: r)
        if let v = json["lora_alpha"], !v.isNull { c.alpha = try number("lora_alpha", v) }
        if let v = json["lora_dropout"], !v.isNull { c.dropout = Float(try number("lora_dropout", v)) }
        if let v = json["layers_to_transform"], !v.isNull {
            if let i = v.intValue { c.layers = [i] } else {
                guard let a = v.arrayValue else { throw bad("layers_to_transform must be an integer or a list of integers") }
                var layers: [Int] = []
                for item in a {
                    guard let i = item.intValue else { throw bad("layers_to_transform must hold integers, found \(item.kindName)") }
                    layers.append(i)
                }
                c.layers = layers
            }
        }
        if let v = json["layers_pattern"], !v.isNull {
            let p = try strings("layers_pattern", v)
            c.layersPattern = p.isEmpty ? nil : p
        }
        if let v = json["exclude_modules"], !v.isNull {
            c.excluded = try targets("exclude_modules", v)
            if case .names(let n)? = c.excluded, n.isEmpty { c.excluded = nil }
        }
        for (key, isRank) in [("rank_pattern", true), ("alpha_pattern", false)] {
            guard let v = json[key], !v.isNull else { continue }
            guard let m = v.objectMembers else { throw bad("\(key) must be an object of pattern: number") }
            for (pattern, value) in m {
                if isRank {
                    guard let i = value.intValue else { throw bad("\(key)['\(pattern)'] must be an integer") }
                    c.rankPattern.append(Override(pattern, i))
                } else {
                    c.alphaPattern.append(Override(pattern, try number("\(key)['\(pattern)']", value)))
                }
            }
        }
        c.useRSLoRA = try bool("use_rslora")
        c.useDoRA = try bool("use_dora")
        if let v = json["bias"], !v.isNull, v.stringValue != "none" {
            throw bad("bias is \(JSONWriter.serialize(v, indent: nil)); Lathe's adapters train no biases (\"none\")")
        }
        if try bool("lora_bias") { throw bad("lora_bias is true; Lathe's adapters have no bias on lora_B") }
        if try bool("fan_in_fan_out") { throw bad("fan_in_fan_out is true (GPT-2 Conv1D layouts); Lathe adapts [out, in] linear layers only") }
        if let v = json["modules_to_save"], !v.isNull, v.arrayValue?.isEmpty != true {
            throw bad("modules_to_save is set; Lathe's adapters hold LoRA weights only, not full copies of modules")
        }
        c.baseModel = json["base_model_name_or_path"]?.stringValue
        do { try c.validate() } catch { throw bad(error.message) }
        return c
    }

    /// The config as PEFT writes `adapter_config.json` (sorted keys, two-space indent), with the
    /// keys that describe this adapter and PEFT's defaults for the rest it needs.
    public func peftJSON() -> JSONValue {
        func number(_ x: Double) -> JSONValue { x == x.rounded() && Swift.abs(x) < 1e15 ? .int(Int(x)) : .double(x) }
        func targetsJSON(_ t: Targets) -> JSONValue {
            switch t {
            case .names(let n): .array(n.map { .string($0) })
            case .regex(let r): .string(r)
            case .allLinear: .string("all-linear")
            }
        }
        let members: [(String, JSONValue)] = [
            ("alpha_pattern", .object(alphaPattern.map { ($0.pattern, number($0.value)) })),
            ("base_model_name_or_path", baseModel.map { .string($0) } ?? .null),
            ("bias", .string("none")),
            ("exclude_modules", excluded.map(targetsJSON) ?? .null),
            ("fan_in_fan_out", .bool(false)),
            ("inference_mode", .bool(true)),
            ("init_lora_weights", .bool(true)),
            ("layers_pattern", layersPattern.map { .array($0.map { .string($0) }) } ?? .null),
            ("layers_to_transform", layers.map { .array($0.map { .int($0) }) } ?? .null),
            ("lora_alpha", number(alpha)),
            ("lora_bias", .bool(false)),
            ("lora_dropout", .double(Double(dropout))),
            ("modules_to_save", .null),
            ("peft_type", .string("LORA")),
            ("r", .int(rank)),
            ("rank_pattern", .object(rankPattern.map { ($0.pattern, .int($0.value)) })),
            ("revision", .null),
            ("target_modules", targetsJSON(targets)),
            ("task_type", .string("CAUSAL_LM")),
            ("use_dora", .bool(useDoRA)),
            ("use_rslora", .bool(useRSLoRA)),
        ]
        return .object(members.map { (key: $0.0, value: $0.1) })
    }
}
