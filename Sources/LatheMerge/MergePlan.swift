import Foundation

/// Which output tensor comes from which input tensors, with which parameters: mergekit's plan
/// (mergekit/plan.py), built apart from the math so that the merge can stream one tensor at a time.
///
/// `models:` becomes one slice whose sources are every model's whole layer range (the base
/// appended when it is not listed). Tensors outside the layers come first (embeddings, from the
/// first slice's sources, at t = 0) and last (final norm, `lm_head`, from the last slice's
/// sources, at t = 0); each slice then gives its layers in order, renumbered from 0, layer `i`
/// of a slice of `L` at t = i/(L − 1) (1 when L = 1) for gradients. A parameter comes from the
/// first scope that sets it for the tensor: the slice source of that model, the slice, the
/// config's `parameters`, then the method's default. Filters match the input tensor's name for
/// per-model parameters and the output tensor's name for shared ones.
public struct MergePlan: Sendable {
    public struct Input: Sendable, Equatable {
        /// Index into ``MergePlan/models``.
        public var model: Int
        public var name: String
    }

    public struct Tensor: Sendable {
        public var name: String
        public var shape: [Int]
        public var inputs: [Input]
        /// Which of `inputs` is the base model's tensor.
        public var baseIndex: Int?
        public var shared: [String: ResolvedValue]
        /// Per input (nil entries for parameters a base does not take).
        public var perInput: [[String: ResolvedValue]]
        /// Output layer fraction used for gradients.
        public var t: Double
    }

    public let method: MergeMethod
    /// The models by path, as the config names them.
    public let models: [String]
    public let tensors: [Tensor]
    /// Layers in the output.
    public let layerCount: Int
    /// Non-fatal remarks (parameters the method does not use).
    public let warnings: [String]

    /// A tensor name split around its layer index (`model.layers.3.mlp.up_proj.weight` →
    /// `model.layers.`, 3, `.mlp.up_proj.weight`), nil outside the layers.
    static func layerParts(_ name: String) -> (prefix: String, layer: Int, suffix: String)? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        for i in 0..<max(0, parts.count - 1) where ["layers", "h", "blocks", "layer"].contains(parts[i]) {
            if let layer = Int(parts[i + 1]), layer >= 0 {
                let prefix = parts[...i].joined(separator: ".") + "."
                let suffix = "." + parts[(i + 2)...].joined(separator: ".")
                return (prefix, layer, suffix == "." ? "" : suffix)
            }
        }
        return nil
    }

    /// Tensors outside the layers that come before them (embeddings).
    static func isPreLayer(_ name: String) -> Bool { name.contains("embed") || name.contains("wte") || name.contains("wpe") }

    /// What the plan needs of an input model: its tensors' shapes by name and the layer count
    /// its config declares (`num_hidden_layers`; nil: one past the highest layer index found).
    public struct InputLayout: Sendable, Equatable {
        public var shapes: [String: [Int]]
        public var declaredLayers: Int?
        public init(shapes: [String: [Int]], declaredLayers: Int?) { (self.shapes, self.declaredLayers) = (shapes, declaredLayers) }
        var tensorNames: [String] { Array(shapes.keys) }
        func shape(of name: String) -> [Int]? { shapes[name] }
    }

    /// Builds the plan; `sources[i]` describes the model `models[i]`. Reads no file.
    public init(config: MergeConfig, file: String, models: [String], sources: [InputLayout]) throws {
        guard let method = MergeMethod(rawValue: config.mergeMethod) else {
            throw MergeConfigError(file: file, key: "merge_method", message:
                "'\(config.mergeMethod)' is not a method Lathe has (\(MergeMethod.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self.method = method
        self.models = models
        func index(_ m: String) -> Int { models.firstIndex(of: m)! }

        // Layers per model and the tensors of each.
        var layerNames: [[Int: [(prefix: String, suffix: String)]]] = []
        var outside: [[String]] = []
        var layerCounts: [Int] = []
        for s in sources {
            var byLayer: [Int: [(prefix: String, suffix: String)]] = [:], other: [String] = []
            for name in s.tensorNames.sorted() {
                if let p = Self.layerParts(name) { byLayer[p.layer, default: []].append((p.prefix, p.suffix)) } else { other.append(name) }
            }
            layerNames.append(byLayer)
            outside.append(other)
            layerCounts.append(s.declaredLayers ?? ((byLayer.keys.max() ?? -1) + 1))
        }

        // Parameter names: a typo is an error, another method's parameter a warning.
        var warnings: [String] = []
        let known = Set(method.parameters.map(\.name))
        var scopes: [(String, MergeConfig.Parameters)] = [("parameters", config.parameters)]
        for (i, m) in (config.models ?? []).enumerated() { scopes.append(("models[\(i)].parameters", m.parameters)) }
        for (i, s) in (config.slices ?? []).enumerated() {
            scopes.append(("slices[\(i)].parameters", s.parameters))
            for (j, src) in s.sources.enumerated() { scopes.append(("slices[\(i)].sources[\(j)].parameters", src.parameters)) }
        }
        for (key, params) in scopes {
            for name in params.keys.sorted() where !known.contains(name) {
                if MergeMethod.allParameterNames.contains(name) {
                    warnings.append("\(key).\(name) is not used by \(method.rawValue)")
                } else {
                    let takes = method.parameters.map(\.name).joined(separator: ", ")
                    throw MergeConfigError(file: file, key: "\(key).\(name)", message:
                        "unknown parameter (\(method.rawValue) takes \(takes.isEmpty ? "none" : takes))")
                }
            }
        }
        self.warnings = warnings

        // models → one slice over every model's layers.
        var slices = config.slices ?? []
        if let entries = config.models {
            var sourcesIn: [MergeConfig.SliceSource] = entries.map {
                MergeConfig.SliceSource(model: $0.model, layerRange: 0..<layerCounts[index($0.model)], parameters: $0.parameters)
            }
            if let base = config.baseModel, !entries.contains(where: { $0.model == base }) {
                sourcesIn.append(MergeConfig.SliceSource(model: base, layerRange: 0..<layerCounts[index(base)], parameters: [:]))
            }
            slices = [MergeConfig.Slice(sources: sourcesIn, baseModel: nil, parameters: [:])]
        }

        // Structure of each slice.
        let contract = method.contract
        for (i, s) in slices.enumerated() {
            let key = config.slices != nil ? "slices[\(i)]" : "models"
            let names = s.sources.map(\.model)
            if let dup = names.first(where: { m in names.filter { $0 == m }.count > 1 }) {
                throw MergeConfigError(file: file, key: key, message: "\(dup) is listed twice; each model can be one input of a slice")
            }
            let base = s.baseModel ?? config.baseModel
            let hasBase = base.map { names.contains($0) } ?? false
            if contract.base == true && !hasBase {
                throw MergeConfigError(file: file, key: key, message: "\(method.rawValue) needs a base model among its inputs (base_model: ...)")
            }
            if names.count < contract.minInputs {
                throw MergeConfigError(file: file, key: key, message: "\(method.rawValue) needs at least \(contract.minInputs) inputs, found \(names.count)")
            }
            if let maxInputs = contract.maxInputs, names.count > maxInputs {
                throw MergeConfigError(file: file, key: key, message: "\(method.rawValue) takes at most \(maxInputs) input\(maxInputs == 1 ? "" : "s") per slice, found \(names.count)"
                                       + (method == .passthrough ? " (passthrough stacks slices: give each slice one source)" : ""))
            }
            let lengths = s.sources.map(\.layerRange.count)
            if Set(lengths).count > 1 {
                throw MergeConfigError(file: file, key: key, message: "all sources of a slice need the same number of layers, found \(lengths)")
            }
            for (j, src) in s.sources.enumerated() where src.layerRange.upperBound > layerCounts[index(src.model)] {
                throw MergeConfigError(file: file, key: "\(key).sources[\(j)].layer_range", message:
                    "\(src.layerRange.lowerBound)..<\(src.layerRange.upperBound) is past the \(layerCounts[index(src.model)]) layers of \(src.model)")
            }
        }

        var tensors: [Tensor] = []
        func resolve(_ p: MergeMethod.Parameter, _ chain: [MergeConfig.Parameters], name: String, t: Double, model: String?) throws -> ResolvedValue {
            for scope in chain {
                guard let setting = scope[p.name] else { continue }
                do {
                    if let v = try setting.evaluate(tensorName: name, t: t, kind: p.kind) { return v }
                } catch {
                    throw MergeConfigError(file: file, key: p.name, message: "\(error.message) (for \(name))")
                }
            }
            if let d = p.defaultValue { return p.kind == .bool ? .bool(d != 0) : .number(d) }
            if p.optional { return .none }
            throw MergeConfigError(file: file, key: p.name, message:
                "missing for \(model.map { "\($0): " } ?? "")\(name); set it under parameters (globally, per model or per slice)")
        }
        func plan(output: String, inputNames: [String], slice: MergeConfig.Slice, t: Double) throws {
            let base = slice.baseModel ?? config.baseModel
            let modelNames = slice.sources.map(\.model)
            var inputs: [Input] = []
            for (m, n) in zip(modelNames, inputNames) { inputs.append(Input(model: index(m), name: n)) }
            // A tensor no input has (a tied lm_head) is left out; one only some have is an error.
            let present = inputs.map { sources[$0.model].shape(of: $0.name) != nil }
            if !present.contains(true) { return }
            if let missing = present.firstIndex(of: false) {
                let having = present.firstIndex(of: true)!
                throw MergeError.architectureMismatch(
                    "\(inputs[having].name) is in \(models[inputs[having].model]) but \(inputs[missing].name) is not in \(models[inputs[missing].model]): "
                    + "the models do not have the same tensors (different architectures, or one ties lm_head to the embedding); merge models of one architecture")
            }
            let baseIndex = base.flatMap { modelNames.firstIndex(of: $0) }
            var shared: [String: ResolvedValue] = [:]
            for p in method.parameters where p.scope == .shared {
                shared[p.name] = try resolve(p, [slice.parameters, config.parameters], name: output, t: t, model: nil)
            }
            var perInput: [[String: ResolvedValue]] = []
            for (k, m) in modelNames.enumerated() {
                let chain = slice.sources.filter { $0.model == m }.map(\.parameters) + [slice.parameters, config.parameters]
                var values: [String: ResolvedValue] = [:]
                for p in method.parameters where p.scope == .everyInput || (p.scope == .nonBase && k != baseIndex) {
                    values[p.name] = try resolve(p, chain, name: inputNames[k], t: t, model: m)
                }
                perInput.append(values)
            }
            tensors.append(Tensor(name: output, shape: sources[inputs[0].model].shape(of: inputs[0].name) ?? [], inputs: inputs,
                                  baseIndex: baseIndex, shared: shared, perInput: perInput, t: t))
        }
        func outsideNames(_ slice: MergeConfig.Slice, pre: Bool) -> [String] {
            var names: [String] = []
            for src in slice.sources {
                for n in outside[index(src.model)] where Self.isPreLayer(n) == pre && !names.contains(n) { names.append(n) }
            }
            return names
        }
        for name in outsideNames(slices[0], pre: true) {
            try plan(output: name, inputNames: Array(repeating: name, count: slices[0].sources.count), slice: slices[0], t: 0)
        }
        var outLayer = 0
        for s in slices {
            let length = s.sources[0].layerRange.count
            for offset in 0..<length {
                let t = length > 1 ? Double(offset) / Double(length - 1) : 1
                // The tensors of this layer: the union over the sources, in the first source's order.
                var suffixes: [(prefix: String, suffix: String)] = []
                for src in s.sources {
                    for p in layerNames[index(src.model)][src.layerRange.lowerBound + offset] ?? []
                    where !suffixes.contains(where: { $0.prefix == p.prefix && $0.suffix == p.suffix }) { suffixes.append(p) }
                }
                for p in suffixes {
                    let inputNames = s.sources.map { "\(p.prefix)\($0.layerRange.lowerBound + offset)\(p.suffix)" }
                    try plan(output: "\(p.prefix)\(outLayer)\(p.suffix)", inputNames: inputNames, slice: s, t: t)
                }
                outLayer += 1
            }
        }
        for name in outsideNames(slices[slices.count - 1], pre: false) {
            try plan(output: name, inputNames: Array(repeating: name, count: slices[slices.count - 1].sources.count), slice: slices[slices.count - 1], t: 0)
        }
        self.tensors = tensors
        self.layerCount = outLayer
    }
}
