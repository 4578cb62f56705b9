import Foundation
import LatheIO
import LatheLM
import LatheNN
import LatheTensor

/// Makes a LoRA adapter from a fine-tuned model and its base: for each targeted linear weight,
/// `Δ = W_ft − W_base` (in double precision) and its truncated SVD at rank r give `B = U_r S_r`
/// `[out, r]` and `A = V_rᵀ` `[r, in]` (``LowRank``, PEFT's split), with `lora_alpha = r` so the
/// adapter's scale is 1 and `W_base + B A` is the best rank-r approximation of `W_ft` in the
/// Frobenius norm (Eckart–Young): its error is `sqrt(Σ_{i>r} σᵢ²)`. At r ≥ min(out, in) the
/// adapter reproduces the fine-tune up to float32 rounding of the factors.
///
/// Layers whose weights did not change are skipped. Changes an adapter cannot hold — embeddings,
/// the output head, norms, biases, linear layers outside the targets — are reported, not captured.
public enum LoRAExtraction {
    public struct Options: Sendable {
        public var rank: Int
        /// Module names (`q_proj`) or paths matched as suffixes after a dot; nil: every linear
        /// weight (2-D `.weight` tensors) except embeddings and the output head.
        public var targets: [String]?
        /// `base_model_name_or_path` written in the config.
        public var baseModelName: String?
        public init(rank: Int, targets: [String]? = nil, baseModelName: String? = nil) { (self.rank, self.targets, self.baseModelName) = (rank, targets, baseModelName) }
    }

    /// One extracted (or skipped) linear layer.
    public struct Layer: Sendable {
        public var module: String
        public var shape: [Int]
        /// ‖Δ‖_F.
        public var deltaNorm: Double
        /// ‖Δ − B A‖_F / ‖Δ‖_F of the rank-r factors (from the tail singular values; 0 when skipped).
        public var relativeError: Double
        public var skipped: Bool { deltaNorm == 0 }
    }

    public struct Result {
        public var config: LoRAConfig
        public var tensors: [String: Tensor]
        public var layers: [Layer]
        /// Tensors that differ but are not in the adapter: name, largest |difference|, and whether
        /// it is a linear weight outside the targets (which a wider `targets` would capture).
        public var notCaptured: [(name: String, maxDifference: Double, linear: Bool)]
        /// Tensors that only one of the two models has.
        public var unmatched: [String]
    }

    /// Whether the weight named `name` (a `<module>.weight`, 2-D) is an extraction candidate.
    static func isLinear(_ name: String, shape: [Int]?) -> Bool {
        guard name.hasSuffix(".weight"), shape?.count == 2 else { return false }
        let module = String(name.dropLast(".weight".count))
        let last = module.split(separator: ".").last.map(String.init) ?? module
        return !module.contains("embed") && last != "lm_head" && last != "wte" && last != "wpe"
    }

    static func matches(_ module: String, _ targets: [String]) -> Bool {
        targets.contains { module == $0 || module.hasSuffix("." + $0) }
    }

    /// Extracts the adapter of `model` (the fine-tune) over `base`, held in memory.
    /// - Parameter progress: called with (done, total, module) after each targeted layer.
    public static func extract(model: some TensorSource, base: some TensorSource, options: Options,
                               progress: (Int, Int, String) -> Void = { _, _, _ in }) throws -> Result {
        let (candidates, linear) = try select(model: model, base: base, options: options)
        var tensors: [String: Tensor] = [:]
        var layers: [Layer] = []
        for (done, name) in candidates.enumerated() {
            let (layer, a, b) = try factor(name, model: model, base: base, rank: options.rank)
            if let a, let b {
                tensors[PEFTAdapter.prefix + layer.module + ".lora_A.weight"] = a
                tensors[PEFTAdapter.prefix + layer.module + ".lora_B.weight"] = b
            }
            layers.append(layer)
            progress(done + 1, candidates.count, layer.module)
        }
        guard !tensors.isEmpty else { throw nothingChanged(candidates.count) }
        return try finish(model: model, base: base, options: options, candidates: candidates, linear: linear, layers: layers, tensors: tensors)
    }

    /// Extracts the adapter into the PEFT folder `folder`, writing each layer's factors as they
    /// are computed (a first pass finds the changed layers), so that memory holds one layer's
    /// factors rather than the adapter: a full-rank adapter is as large as the model. The result's
    /// `tensors` is empty.
    public static func extract(model: some TensorSource, base: some TensorSource, options: Options, to folder: URL,
                               progress: (Int, Int, String) -> Void = { _, _, _ in }) throws -> Result {
        let (candidates, linear) = try select(model: model, base: base, options: options)
        let r = options.rank
        var changed: [String] = []
        var layers: [Layer] = []
        for name in candidates {
            let d = try difference(name, model: model, base: base)
            if d.norm2 == 0 { layers.append(Layer(module: String(name.dropLast(".weight".count)), shape: d.shape, deltaNorm: 0, relativeError: 0)) } else { changed.append(name) }
        }
        guard !changed.isEmpty else { throw nothingChanged(candidates.count) }
        var entries: [SafeTensors.StreamedEntry] = []
        for name in changed {
            let module = String(name.dropLast(".weight".count)), shape = base.shape(of: name)!
            entries.append(.init(name: PEFTAdapter.prefix + module + ".lora_A.weight", shape: [r, shape[1]], dtype: .float32))
            entries.append(.init(name: PEFTAdapter.prefix + module + ".lora_B.weight", shape: [shape[0], r], dtype: .float32))
        }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var pendingB: Tensor?
        try SafeTensors.write(streaming: entries, metadata: ["format": "pt"], to: folder.appendingPathComponent(PEFTAdapter.weightsFile)) { i in
            if i % 2 == 1, let b = pendingB { pendingB = nil; return b }
            let (layer, a, b) = try factor(changed[i / 2], model: model, base: base, rank: r)
            guard let a, let b else { throw LoRAError("\(changed[i / 2]) changed between two reads") }
            layers.append(layer)
            pendingB = b
            progress(i / 2 + 1, changed.count, layer.module)
            return a
        }
        layers.sort { $0.module < $1.module }
        let result = try finish(model: model, base: base, options: options, candidates: candidates, linear: linear, layers: layers, tensors: [:])
        try AtomicFile.write(JSONWriter.serialize(result.config.peftJSON()) + "\n", to: folder.appendingPathComponent(PEFTAdapter.configFile))
        return result
    }

    static func nothingChanged(_ count: Int) -> LoRAError {
        LoRAError("none of the \(count) targeted linear weights differ between the two models; there is nothing to extract")
    }

    /// The targeted linear weights (sorted) and all linear weights of the base, after checking names and shapes.
    static func select(model: some TensorSource, base: some TensorSource, options: Options) throws -> (candidates: [String], linear: [String]) {
        let r = options.rank
        guard r >= 1, r <= 1 << 16 else { throw LoRAError("the rank must be in 1...65536, got \(r)") }
        if let t = options.targets, t.isEmpty || t.contains(where: \.isEmpty) { throw LoRAError("--targets names no module") }
        let modelNames = Set(model.tensorNames)
        let linear = base.tensorNames.filter { isLinear($0, shape: base.shape(of: $0)) }.sorted()
        let candidates = linear.filter { name in options.targets.map { matches(String(name.dropLast(".weight".count)), $0) } ?? true }
        if candidates.isEmpty {
            let available = Set(linear.map { $0.dropLast(".weight".count).split(separator: ".").last.map(String.init) ?? $0 }).sorted()
            throw LoRAError(options.targets == nil ? "the base model has no linear weights to extract"
                            : "no linear weight of the base model matches --targets \(options.targets!.joined(separator: ",")) (its linear modules: \(available.joined(separator: ", ")))")
        }
        for name in candidates {
            guard modelNames.contains(name) else { throw LoRAError("the fine-tuned model has no \(name), which the base has; is it a fine-tune of this base?") }
            let s0 = base.shape(of: name)!, s1 = model.shape(of: name)!
            guard s0 == s1 else { throw LoRAError("\(name) is \(s1) in the fine-tuned model but \(s0) in the base; extract-lora needs a fine-tune of this base (same architecture and size)") }
        }
        return (candidates, linear)
    }

    /// `W_ft − W_base` of the weight `name` in double precision, and its squared Frobenius norm.
    static func difference(_ name: String, model: some TensorSource, base: some TensorSource) throws -> (delta: [Double], norm2: Double, shape: [Int]) {
        let shape = base.shape(of: name)!
        let count = shape[0] * shape[1]
        let wb = try base.float32Tensor(named: name).contiguous().scalars, wf = try model.float32Tensor(named: name).contiguous().scalars
        guard wb.count == count, wf.count == count else { throw LoRAError("\(name): \(wb.count) and \(wf.count) values for the shape \(shape)") }
        var delta = [Double](repeating: 0, count: count)
        var norm2 = 0.0
        for i in 0..<count {
            let d = Double(wf[i]) - Double(wb[i])
            guard d.isFinite else { throw LoRAError("\(name) holds NaN or infinite values") }
            delta[i] = d
            norm2 += d * d
        }
        return (delta, norm2, shape)
    }

    /// The layer of weight `name` and, when it changed, its factors A `[r, in]` and B `[out, r]`.
    static func factor(_ name: String, model: some TensorSource, base: some TensorSource, rank r: Int) throws -> (Layer, Tensor?, Tensor?) {
        let module = String(name.dropLast(".weight".count))
        let (delta, norm2, shape) = try difference(name, model: model, base: base)
        if norm2 == 0 { return (Layer(module: module, shape: shape, deltaNorm: 0, relativeError: 0), nil, nil) }
        let f: LowRankFactors
        do { f = try LowRank.factor(delta, rows: shape[0], columns: shape[1], rank: r) } catch { throw LoRAError("\(name): \(error)") }
        let layer = Layer(module: module, shape: shape, deltaNorm: norm2.squareRoot(), relativeError: min(1, f.tailNorm / norm2.squareRoot()))
        return (layer, Tensor(f.a.map(Float.init), shape: [r, shape[1]]), Tensor(f.b.map(Float.init), shape: [shape[0], r]))
    }

    /// What the adapter does not hold, and the config.
    static func finish(model: some TensorSource, base: some TensorSource, options: Options, candidates: [String], linear: [String],
                       layers: [Layer], tensors: [String: Tensor]) throws -> Result {
        let baseNames = Set(base.tensorNames), modelNames = Set(model.tensorNames)
        var notCaptured: [(String, Double, Bool)] = []
        let linearNames = Set(linear)
        let targeted = Set(candidates)
        for name in baseNames.intersection(modelNames).sorted() where !targeted.contains(name) {
            let a = try base.float32Tensor(named: name), b = try model.float32Tensor(named: name)
            guard a.shape == b.shape else { notCaptured.append((name, .infinity, false)); continue }
            let x = a.contiguous().scalars, y = b.contiguous().scalars
            var worst = 0.0
            for i in x.indices { worst = max(worst, abs(Double(y[i]) - Double(x[i]))) }
            if worst > 0 || worst.isNaN { notCaptured.append((name, worst, linearNames.contains(name))) }
        }
        let unmatched = baseNames.symmetricDifference(modelNames).sorted()

        // Targets: the short names when every layer of those names is in the adapter, else the exact paths.
        let extracted = layers.filter { !$0.skipped }.map(\.module)
        let shortNames = Set(extracted.map { $0.split(separator: ".").last.map(String.init) ?? $0 })
        let covered = linear.map { String($0.dropLast(".weight".count)) }.filter { matches($0, Array(shortNames)) }
        let targets: LoRAConfig.Targets = Set(covered) == Set(extracted) ? .names(shortNames.sorted()) : .names(extracted.sorted())
        let config = LoRAConfig(targets: targets, rank: options.rank, alpha: Double(options.rank), baseModel: options.baseModelName)
        return Result(config: config, tensors: tensors, layers: layers, notCaptured: notCaptured, unmatched: unmatched)
    }

    /// Checks, from their `config.json`, that `model` can be a fine-tune of `base` and that
    /// their linear weights are `[out, in]` (GPT-2's Conv1D `[in, out]` would need PEFT's
    /// `fan_in_fan_out`, which Lathe's adapters do not have).
    public static func checkCompatible(model: HuggingFaceWeights, base: HuggingFaceWeights) throws {
        let types = [model, base].map { $0.config?["model_type"]?.stringValue }
        if types.contains("gpt2") {
            throw LoRAError("GPT-2's Conv1D layers store [in, out] weights, which need fan_in_fan_out adapters; extract-lora writes [out, in] LoRA only")
        }
        if let a = types[0], let b = types[1], a != b {
            throw LoRAError("the fine-tuned model is a \(a) and the base a \(b); extract-lora needs a fine-tune of this base")
        }
    }

    /// Writes the adapter of `result` as a PEFT folder.
    public static func write(_ result: Result, to folder: URL) throws {
        try AdapterArithmetic.writeAdapter(config: result.config, tensors: result.tensors, to: folder)
    }
}
