import Foundation
import LatheIO
import LatheLM
import LatheTensor

/// Merges models tensor by tensor: each output tensor's inputs are read (mapped files,
/// converted to float32), merged and written before the next, so peak memory is about one
/// tensor per input plus the output tensor, whatever the model size.
public enum Merger {
    public enum OutputFormat: Sendable, Equatable {
        /// A Hugging Face folder: config.json, model.safetensors (or shards), tokenizer files.
        case folder
        /// One safetensors file, the tensors only.
        case safetensors
        /// A GGUF file of this type (through a Hugging Face folder written next to it, then removed).
        case gguf(GGUFTypeRules)
    }

    public struct Options: Sendable {
        public var format: OutputFormat = .folder
        /// Overrides the config's `out_dtype` / `dtype` (float32 when neither says).
        public var dtype: DType?
        /// Largest shard of a folder's weights, in bytes (nil: one file).
        public var maxShardBytes: Int?
        /// Seed of DARE's and DELLA's random masks.
        public var seed: UInt64 = 0
        /// How DARE/DELLA rescale kept entries when `rescale` is on (mergekit's L1 by default).
        public var dareRescale: DARERescale = .l1
        public init() {}
    }

    public struct Report: Sendable {
        public var tensors: Int
        public var parameters: Int
        public var layers: Int
        public var files: [URL]
        public var seconds: Double
        public var warnings: [String]
    }

    /// The dtype a config names (`float32`, `float16`, `bfloat16` and their short forms).
    public static func dtype(named name: String) -> DType? {
        switch name.lowercased() {
        case "float32", "fp32", "f32", "float": .float32
        case "float16", "fp16", "f16", "half": .float16
        case "bfloat16", "bf16": .bfloat16
        default: nil
        }
    }

    /// Where the model `m` of the config read from `file` is: `m` from the current directory if
    /// something is there, else from the config's folder (as written when neither has it).
    public static func modelPath(_ m: String, configFile file: String) -> String {
        let inFolder = URL(fileURLWithPath: file).deletingLastPathComponent().appendingPathComponent(m).path
        if !FileManager.default.fileExists(atPath: m), !m.hasPrefix("/"), FileManager.default.fileExists(atPath: inFolder) { return inFolder }
        return m
    }

    /// Runs the merge `config` (read from `file`; relative model paths are taken from the
    /// current directory, else from the config's folder) into `output`. `progress(done, total,
    /// name)` is called after each tensor.
    @discardableResult
    public static func merge(_ config: MergeConfig, file: String, output: URL, options: Options = Options(),
                             progress: (Int, Int, String) -> Void = { _, _, _ in }, warn: (String) -> Void = { _ in }) throws -> Report {
        let t0 = Timing.now()
        let models = config.referencedModels
        var sources: [HuggingFaceWeights] = []
        for m in models {
            let path = modelPath(m, configFile: file)
            guard FileManager.default.fileExists(atPath: path) else {
                throw MergeConfigError(file: file, key: nil, message: "model \(m): no such folder or file (Lathe reads local Hugging Face folders, .safetensors and .gguf files)")
            }
            sources.append(try HuggingFaceWeights.open(path))
        }
        let outDTypeName = config.outDType ?? config.dtype
        var outDType = options.dtype ?? .float32
        if options.dtype == nil, let name = outDTypeName {
            guard let d = dtype(named: name) else {
                throw MergeConfigError(file: file, key: config.outDType != nil ? "out_dtype" : "dtype", message: "'\(name)': Lathe writes float32, float16 or bfloat16")
            }
            outDType = d
        }
        // Shapes first (the error names the tensor), then what config.json says.
        let plan = try MergePlan(config: config, file: file, models: models, sources: sources)
        for w in plan.warnings { warn(w) }
        try checkShapes(plan, sources: sources)
        try checkCompatible(models: models, sources: sources)

        // The model whose config.json and tokenizer the output takes.
        let reference = config.baseModel ?? models[0]
        var tokenizerModel = reference
        if let t = config.tokenizerSource {
            switch t {
            case "base": tokenizerModel = config.baseModel ?? models[0]
            case "union":
                throw MergeConfigError(file: file, key: "tokenizer_source", message:
                    "'union' (a merged vocabulary) is not supported; give base or one of the models, whose vocabulary the others must share")
            default:
                guard models.contains(t) || FileManager.default.fileExists(atPath: t) else {
                    throw MergeConfigError(file: file, key: "tokenizer_source", message: "'\(t)' is neither base nor a model of this merge")
                }
                tokenizerModel = t
            }
        }

        let entries = plan.tensors.map { SafeTensors.StreamedEntry(name: $0.name, shape: $0.shape, dtype: outDType) }
        // The writer wraps errors raised while producing a tensor; the first is kept to be rethrown as it was.
        final class Failure: @unchecked Sendable { var error: Error? }
        let failure = Failure()
        let produce: (Int) throws -> LatheTensor.Tensor = { i in
            do {
                let t = try mergeTensor(plan.tensors[i], plan: plan, sources: sources, options: options)
                progress(i + 1, plan.tensors.count, plan.tensors[i].name)
                return t
            } catch {
                failure.error = failure.error ?? error
                throw error
            }
        }
        do {
            return try write(plan: plan, config: config, models: models, sources: sources, entries: entries, produce: produce,
                             output: output, outDType: outDType, reference: reference, tokenizerModel: tokenizerModel,
                             options: options, warn: warn, t0: t0)
        } catch {
            throw failure.error ?? error
        }
    }

    static func write(plan: MergePlan, config: MergeConfig, models: [String], sources: [HuggingFaceWeights], entries: [SafeTensors.StreamedEntry],
                      produce: (Int) throws -> LatheTensor.Tensor, output: URL, outDType: DType, reference: String, tokenizerModel: String,
                      options: Options, warn: (String) -> Void, t0: Double) throws -> Report {
        var files: [URL] = []
        switch options.format {
        case .safetensors:
            try prepareParent(output)
            try SafeTensors.write(streaming: entries, metadata: ["format": "pt"], to: output, produce: produce)
            files = [output]
        case .folder:
            files = try writeFolder(output, entries: entries, produce: produce, plan: plan, config: config, outDType: outDType,
                                    reference: sources[models.firstIndex(of: reference)!],
                                    tokenizer: models.firstIndex(of: tokenizerModel).map { sources[$0] } ?? (try HuggingFaceWeights.open(tokenizerModel)),
                                    options: options, warn: warn)
        case .gguf(let rules):
            try prepareParent(output)
            let temporary = output.deletingLastPathComponent().appendingPathComponent(".\(output.lastPathComponent).merge-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: temporary) }
            _ = try writeFolder(temporary, entries: entries, produce: produce, plan: plan, config: config, outDType: outDType,
                                reference: sources[models.firstIndex(of: reference)!],
                                tokenizer: models.firstIndex(of: tokenizerModel).map { sources[$0] } ?? (try HuggingFaceWeights.open(tokenizerModel)),
                                options: options, warn: warn)
            do {
                try GGUFExport.write(huggingFaceFolder: temporary, to: output, rules: rules)
            } catch let e as ModelFileError { throw MergeError.output("\(e)") }
            files = [output]
        }
        return Report(tensors: plan.tensors.count, parameters: plan.tensors.reduce(0) { $0 + $1.shape.reduce(1, *) }, layers: plan.layerCount,
                      files: files, seconds: Timing.now() - t0, warnings: plan.warnings)
    }

    static func prepareParent(_ url: URL) throws {
        let parent = url.deletingLastPathComponent()
        do { try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true) } catch {
            throw MergeError.output("\(parent.path): cannot create the folder: \(error.localizedDescription)")
        }
    }

    static func writeFolder(_ folder: URL, entries: [SafeTensors.StreamedEntry], produce: (Int) throws -> LatheTensor.Tensor, plan: MergePlan,
                            config: MergeConfig, outDType: DType, reference: HuggingFaceWeights, tokenizer: HuggingFaceWeights,
                            options: Options, warn: (String) -> Void) throws -> [URL] {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw MergeError.output("\(folder.path) exists and is not a folder")
        }
        do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
            throw MergeError.output("\(folder.path): cannot create the folder: \(error.localizedDescription)")
        }
        var files: [URL] = []
        // config.json: the reference model's, with the output's layer count and dtype.
        if var json = reference.config {
            json = json.setting("num_hidden_layers", .int(plan.layerCount))
            let dtypeName = outDType == .bfloat16 ? "bfloat16" : outDType == .float16 ? "float16" : "float32"
            if json["torch_dtype"] != nil { json = json.setting("torch_dtype", .string(dtypeName)) }
            json = json.setting("dtype", .string(dtypeName))
            let url = folder.appendingPathComponent("config.json")
            try write(JSONWriter.serialize(json) + "\n", to: url)
            files.append(url)
        } else {
            warn("\(reference.path) has no config.json: the output folder has none either")
        }
        if reference.origin == .folder {
            let from = URL(fileURLWithPath: reference.path).appendingPathComponent("generation_config.json")
            if FileManager.default.fileExists(atPath: from.path) {
                let to = folder.appendingPathComponent("generation_config.json")
                try? FileManager.default.removeItem(at: to)
                try? FileManager.default.copyItem(at: from, to: to)
                files.append(to)
            }
        }
        // Weights, sharded like save_pretrained when asked.
        var shards: [[Int]] = [[]]
        var bytes = 0
        for (i, e) in entries.enumerated() {
            if let limit = options.maxShardBytes, bytes > 0, bytes + e.byteCount > limit { shards.append([]); bytes = 0 }
            shards[shards.count - 1].append(i)
            bytes += e.byteCount
        }
        do {
            if shards.count == 1 {
                let url = folder.appendingPathComponent("model.safetensors")
                try SafeTensors.write(streaming: entries, metadata: ["format": "pt"], to: url, produce: produce)
                files.append(url)
            } else {
                func padded(_ n: Int) -> String { String(repeating: "0", count: max(0, 5 - String(n).count)) + String(n) }
                var weightMap: [(key: String, value: JSONValue)] = []
                for (s, members) in shards.enumerated() {
                    let name = "model-\(padded(s + 1))-of-\(padded(shards.count)).safetensors"
                    let url = folder.appendingPathComponent(name)
                    try SafeTensors.write(streaming: members.map { entries[$0] }, metadata: ["format": "pt"], to: url) { try produce(members[$0]) }
                    files.append(url)
                    weightMap += members.map { (key: entries[$0].name, value: .string(name)) }
                }
                weightMap.sort { $0.key < $1.key }
                let total = entries.reduce(0) { $0 + $1.byteCount }
                let index = JSONValue.object([("metadata", .object([("total_size", .int(total))])), ("weight_map", .object(weightMap))])
                let url = folder.appendingPathComponent("model.safetensors.index.json")
                try write(JSONWriter.serialize(index) + "\n", to: url)
                files.append(url)
            }
        } catch let e as SafeTensorsError {
            // A merge error raised while producing a tensor reaches here wrapped by the atomic write.
            throw MergeError.output("\(e)")
        }
        do { files += try tokenizer.writeTokenizer(to: folder, warn: warn) } catch { throw MergeError.output("\(error)") }
        if let template = config.chatTemplate, template != "auto" {
            let url = folder.appendingPathComponent("chat_template.jinja")
            let text = template.contains("{%") || template.contains("{{") ? template : nil
            if let text { try write(text, to: url); files.append(url) } else { warn("chat_template '\(template)' is not a Jinja template; only literal templates are written") }
        }
        return files
    }

    static func write(_ text: String, to url: URL) throws {
        do { try AtomicFile.write(text, to: url) } catch { throw MergeError.output("\(error)") }
    }

    // MARK: - Checks before merging

    /// Architectures and vocabularies, from config.json: the first difference is an error.
    static func checkCompatible(models: [String], sources: [HuggingFaceWeights]) throws {
        guard let first = sources.firstIndex(where: { $0.config != nil }) else { return }
        let a = sources[first].config!
        for (i, s) in sources.enumerated() where i != first {
            guard let b = s.config else { continue }
            for key in ["model_type", "architectures"] {
                if let x = a[key], let y = b[key], x != y {
                    throw MergeError.architectureMismatch("\(models[first]) and \(models[i]) have different architectures (\(key) \(describe(x)) vs \(describe(y))); merge models of one architecture, fine-tuned from one base")
                }
            }
            if let x = a["vocab_size"]?.intValue, let y = b["vocab_size"]?.intValue, x != y {
                throw MergeError.vocabularyMismatch("\(models[first]) has a vocabulary of \(x) tokens and \(models[i]) one of \(y); merging them would mix rows of different tokens. "
                    + "Merge models that share a tokenizer, or resize the embeddings (embed_tokens, lm_head) of one model to the other's vocabulary first; tokenizer_source only picks which tokenizer files the output gets")
            }
            for key in ["hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads"] {
                if let x = a[key]?.intValue, let y = b[key]?.intValue, x != y {
                    throw MergeError.architectureMismatch("\(models[first]) and \(models[i]) differ in \(key) (\(x) vs \(y)): they are different architectures and their tensors cannot be merged")
                }
            }
        }
    }

    static func describe(_ v: JSONValue) -> String { JSONWriter.serialize(v) }

    /// Every planned tensor's inputs have one shape; the first that does not is an error.
    static func checkShapes(_ plan: MergePlan, sources: [HuggingFaceWeights]) throws {
        for t in plan.tensors {
            let shapes = t.inputs.map { sources[$0.model].shape(of: $0.name) ?? [] }
            guard let k = shapes.firstIndex(where: { $0 != shapes[0] }) else { continue }
            let a = t.inputs[0], b = t.inputs[k]
            let vocabulary = t.name.contains("embed") || t.name.contains("lm_head")
            let fix = vocabulary
                ? "the vocabularies differ: merge models that share a tokenizer, or resize one model's embeddings to the other's vocabulary first (tokenizer_source only picks the tokenizer files copied)"
                : "the models have different sizes; merge models of one architecture and size"
            let message = "\(t.name): \(plan.models[a.model]) has \(a.name) of shape \(shapes[0]) but \(plan.models[b.model]) has \(b.name) of shape \(shapes[k]); \(fix)"
            throw vocabulary ? MergeError.vocabularyMismatch(message) : MergeError.shapeMismatch(message)
        }
    }

    // MARK: - One tensor

    /// The generator of input `j`'s (counted among non-base inputs) random mask for tensor `name`.
    public static func maskGenerator(seed: UInt64, tensor name: String, input j: Int) -> RandomGenerator {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return RandomGenerator(seed: h ^ (seed &* 0x9E37_79B9_7F4A_7C15), offset: UInt64(j) << 40)
    }

    /// Reads the inputs of `t` and merges them.
    static func mergeTensor(_ t: MergePlan.Tensor, plan: MergePlan, sources: [HuggingFaceWeights], options: Options) throws -> LatheTensor.Tensor {
        var inputs: [LatheTensor.Tensor] = []
        for i in t.inputs { inputs.append(try sources[i.model].float32Tensor(named: i.name)) }
        return try merge(t, inputs: &inputs, method: plan.method, options: options)
    }

    /// Merges the float32 `inputs` of the planned tensor `t` (overwriting them).
    static func merge(_ t: MergePlan.Tensor, inputs: inout [LatheTensor.Tensor], method: MergeMethod, options: Options) throws -> LatheTensor.Tensor {
        let n = t.shape.reduce(1, *)
        if n == 0 { return LatheTensor.Tensor.zeros(t.shape) }
        for (k, x) in inputs.enumerated() where x.count != n || x.dtype != .float32 {
            throw MergeError.shapeMismatch("\(t.name): input \(k) has \(x.count) values for the shape \(t.shape)")
        }
        var pointers: [UnsafeMutablePointer<Float>] = []
        for k in inputs.indices { pointers.append(inputs[k].withUnsafeMutableBufferPointer { $0.baseAddress! }) }
        let rowLength = t.shape.count >= 2 ? t.shape[t.shape.count - 1] : n
        var out = LatheTensor.Tensor.zeros(t.shape)
        try out.withUnsafeMutableBufferPointer { o in
            guard let op = o.baseAddress, n > 0 else { return }
            switch method {
            case .linear:
                MergeKernels.linear(pointers, weights: t.perInput.map { $0["weight"]!.number! }, normalize: t.shared["normalize"]!.bool, n: n, out: op)
            case .slerp:
                let b = t.baseIndex!
                MergeKernels.slerp(t: t.shared["t"]!.number!, pointers[b], pointers[1 - b], n: n, out: op)
            case .modelStock:
                let b = t.baseIndex!
                MergeKernels.modelStock(base: pointers[b], others: pointers.indices.filter { $0 != b }.map { pointers[$0] }, n: n, rowLength: rowLength,
                                        filterWise: t.shared["filter_wise"]!.bool, out: op)
            case .passthrough:
                let scale = t.perInput[0]["scale"]?.number.map { Float($0) }
                let x = pointers[0]
                MergeKernels.parallel(n) { r in for i in r { op[i] = scale.map { x[i] * $0 } ?? x[i] } }
            default:
                let ta = method.taskArithmetic!
                let b = t.baseIndex!
                let base = pointers[b]
                let others = pointers.indices.filter { $0 != b }
                let rescale: DARERescale? = t.shared["rescale"]!.bool ? options.dareRescale : nil
                for (j, k) in others.enumerated() {
                    let x = pointers[k]
                    MergeKernels.parallel(n) { r in for i in r { x[i] -= base[i] } }
                    if let s = ta.sparsification {
                        let p = t.perInput[k]
                        try Sparsify.apply(s, delta: x, count: n, rowLength: rowLength, density: p["density"]!.number!,
                                           gamma: p["gamma"]?.number ?? 0, epsilon: p["epsilon"]?.number ?? 0, rescale: rescale,
                                           generator: maskGenerator(seed: options.seed, tensor: t.name, input: j), tensor: t.name)
                    }
                    let w = Float(t.perInput[k]["weight"]!.number!)
                    MergeKernels.parallel(n) { r in for i in r { x[i] *= w } }
                }
                MergeKernels.taskArithmetic(base: base, others: others.map { pointers[$0] }, weights: others.map { t.perInput[$0]["weight"]!.number! },
                                            consensus: ta.consensus, normalize: t.shared["normalize"]!.bool, lambda: t.shared["lambda"]!.number!,
                                            n: n, out: op)
            }
            let bad = Int(MergeKernels.sum(n) { op[$0].isFinite ? 0 : 1 })
            if bad > 0 { throw MergeError.nonFinite(tensor: t.name, count: bad) }
        }
        return out
    }
}

extension JSONValue {
    /// This object with `key` set to `value` (replaced in place, or appended).
    func setting(_ key: String, _ value: JSONValue) -> JSONValue {
        guard case .object(var pairs) = self else { return self }
        if let i = pairs.firstIndex(where: { $0.key == key }) { pairs[i].value = value } else { pairs.append((key: key, value: value)) }
        return .object(pairs)
    }
}
