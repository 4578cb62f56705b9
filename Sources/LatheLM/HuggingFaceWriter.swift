import Foundation
import LatheCompress
import LatheIO
import LatheNN
import LatheTensor
import LatheText

/// Writes models as Hugging Face folders that `transformers` loads with `from_pretrained`:
/// `config.json`, `generation_config.json`, the weights as `model.safetensors` (or shards named
/// `model-00001-of-00003.safetensors` with `model.safetensors.index.json`, as `save_pretrained`
/// names them), and the tokenizer files: those of the source folder, or for a model read from
/// GGUF its tokenizer written as `tokenizer.json`, `tokenizer_config.json` (with the chat
/// template) and `special_tokens_map.json`.
///
/// A model read from GGUF is written back in Hugging Face's conventions: Llama's q/k rows,
/// which llama.cpp's converter permutes for adjacent-pair RoPE, are put back in rotate-half
/// order, and Gemma's norm weights, into which the converter bakes the `+1`, lose it again.
public enum HuggingFaceWriter {
    public struct Options: Sendable {
        /// The weights' dtype in the files: float32, float16 or bfloat16 (round to nearest even).
        public var dtype: DType
        /// The largest shard in bytes (`save_pretrained`'s `max_shard_size`); nil: one file.
        public var maxShardBytes: Int?

        public init(dtype: DType = .float32, maxShardBytes: Int? = nil) {
            (self.dtype, self.maxShardBytes) = (dtype, maxShardBytes)
        }
    }

    /// Writes `model` into `folder` (created if needed). The tokenizer files (`tokenizer.json`,
    /// `tokenizer_config.json`, `special_tokens_map.json`, ...) are copied from the model's
    /// folder; from a GGUF source its tokenizer is written as those files. Returns the files
    /// written, in order.
    @discardableResult
    public static func write(_ model: PretrainedModel, to folder: URL, options: Options = Options()) throws -> [URL] {
        try write(model.kind, tokenizerSource: URL(fileURLWithPath: model.path), tokenizer: model.tokenizer,
                  chatTemplate: model.chatTemplate, to: folder, options: options)
    }

    /// Converts the model at `path` (a GGUF file or a Hugging Face folder, whose tokenizer it
    /// does not need) into `folder`: the network, and the tokenizer files copied from a folder
    /// or, from a GGUF file, its tokenizer and chat template. A GGUF tokenizer that cannot be
    /// read does not stop the conversion: `warn` gets why, and the folder has no tokenizer.json.
    @discardableResult
    public static func convert(modelAt path: String, to folder: URL, options: Options = Options(),
                               warn: (String) -> Void = { _ in }) throws -> [URL] {
        let source = URL(fileURLWithPath: path)
        let kind = try PretrainedModel.loadModel(path)
        var template: String?, tokenizer: (any Tokenizer)?
        if try !PretrainedModel.isFolder(path) {
            let file = try GGUFFile(contentsOf: source)
            template = try file.string("tokenizer.chat_template")
            do { tokenizer = try PretrainedModel.ggufTokenizer(file) } catch { warn("the tokenizer is not written (\(error))") }
        }
        return try write(kind, tokenizerSource: source, tokenizer: tokenizer, chatTemplate: template, to: folder, options: options)
    }

    /// Writes a decoder or encoder. The tokenizer files are copied from `tokenizerSource` when it
    /// is a folder; otherwise `tokenizer` (a `BPETokenizer`, such as a GGUF file's) is written as
    /// `tokenizer.json`, `tokenizer_config.json` (with `chatTemplate` and the model's context
    /// length) and `special_tokens_map.json`; with neither, `chatTemplate` (if any) alone goes
    /// into `tokenizer_config.json`.
    @discardableResult
    public static func write(_ kind: PretrainedModel.Kind, tokenizerSource: URL? = nil, tokenizer: (any Tokenizer)? = nil,
                             chatTemplate: String? = nil, to folder: URL, options: Options = Options()) throws -> [URL] {
        let exported: (config: JSONValue, tensors: [(String, Tensor)], generation: JSONValue?)
        switch kind {
        case .decoder(let d): exported = (d.config.huggingFaceJSON(dtype: options.dtype), d.huggingFaceTensors(), d.config.generationJSON())
        case .gpt2(let g): exported = (g.config.huggingFaceJSON(dtype: options.dtype), g.huggingFaceTensors(), g.config.generationJSON())
        case .encoder(let e): exported = (e.config.huggingFaceJSON(dtype: options.dtype), e.huggingFaceTensors(), nil)
        }
        try prepare(folder)
        var written: [URL] = []
        written.append(try writeJSON(exported.config, to: folder.appendingPathComponent("config.json")))
        if let generation = exported.generation {
            written.append(try writeJSON(generation, to: folder.appendingPathComponent("generation_config.json")))
        }
        written += try writeWeights(exported.tensors, to: folder, options: options)
        written += try writeTokenizerFiles(source: tokenizerSource, tokenizer: tokenizer, chatTemplate: chatTemplate,
                                           modelMaxLength: kind.maxPositions, to: folder)
        return written
    }

    /// Writes the tensors as one `model.safetensors` or as shards with an index; returns the files.
    public static func writeWeights(_ tensors: [(String, Tensor)], to folder: URL, options: Options) throws -> [URL] {
        guard [.float32, .float16, .bfloat16].contains(options.dtype) else {
            throw ModelFileError(file: folder.path, message: "weights can be written as float32, float16 or bfloat16, not \(options.dtype)")
        }
        let converted = tensors.map { ($0.0, $0.1.dtype == options.dtype ? $0.1 : $0.1.to(options.dtype)) }
        let metadata = ["format": "pt"]  // transformers refuses safetensors files without it
        var shards: [[(String, Tensor)]] = [[]]
        var shardBytes = 0
        for (name, t) in converted {
            if let limit = options.maxShardBytes, shardBytes > 0, shardBytes + t.byteCount > limit {
                shards.append([])
                shardBytes = 0
            }
            shards[shards.count - 1].append((name, t))
            shardBytes += t.byteCount
        }
        if shards.count == 1 {
            let url = folder.appendingPathComponent("model.safetensors")
            try SafeTensors.write(Dictionary(uniqueKeysWithValues: converted), metadata: metadata, to: url)
            return [url]
        }
        var files: [URL] = [], weightMap: [(key: String, value: JSONValue)] = []
        func padded(_ n: Int) -> String { String(repeating: "0", count: max(0, 5 - String(n).count)) + String(n) }
        for (i, shard) in shards.enumerated() {
            let name = "model-\(padded(i + 1))-of-\(padded(shards.count)).safetensors"
            let url = folder.appendingPathComponent(name)
            try SafeTensors.write(Dictionary(uniqueKeysWithValues: shard), metadata: metadata, to: url)
            files.append(url)
            weightMap += shard.map { (key: $0.0, value: .string(name)) }
        }
        weightMap.sort { $0.key < $1.key }
        let total = converted.reduce(0) { $0 + $1.1.byteCount }
        let index = JSONValue.object([("metadata", .object([("total_size", .int(total))])), ("weight_map", .object(weightMap))])
        files.append(try writeJSON(index, to: folder.appendingPathComponent("model.safetensors.index.json")))
        return files
    }

    /// The tokenizer files Hugging Face folders carry next to the weights.
    static let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "tokenizer.model",
                                 "chat_template.jinja", "added_tokens.json", "merges.txt", "vocab.json"]

    static func writeTokenizerFiles(source: URL?, tokenizer: (any Tokenizer)?, chatTemplate: String?, modelMaxLength: Int?,
                                    to folder: URL) throws -> [URL] {
        var isDirectory: ObjCBool = false
        var written: [URL] = []
        if let source, FileManager.default.fileExists(atPath: source.path, isDirectory: &isDirectory), isDirectory.boolValue {
            guard source.standardizedFileURL.path != folder.standardizedFileURL.path else { return [] }
            for name in tokenizerFiles {
                let from = source.appendingPathComponent(name), to = folder.appendingPathComponent(name)
                guard FileManager.default.fileExists(atPath: from.path) else { continue }
                do {
                    try? FileManager.default.removeItem(at: to)
                    try FileManager.default.copyItem(at: from, to: to)
                } catch {
                    throw ModelFileError(file: to.path, message: "cannot copy the tokenizer file: \(error.localizedDescription)")
                }
                written.append(to)
            }
            return written
        }
        if let tokenizer {
            guard let bpe = tokenizer as? BPETokenizer else {
                throw ModelFileError(file: folder.path, message: "writing a \(type(of: tokenizer)) as tokenizer.json is not supported (only BPE)")
            }
            let json = folder.appendingPathComponent("tokenizer.json")
            do {
                try AtomicFile.write(to: json) { try $0.write(contentsOf: Data(bpe.tokenizerJSON().utf8)) }
            } catch let error as AtomicFile.WriteError {
                throw ModelFileError(file: json.path, message: "cannot write: \(error.reason)")
            }
            written.append(json)
            written.append(try writeJSON(bpe.tokenizerConfigJSON(chatTemplate: chatTemplate, modelMaxLength: modelMaxLength),
                                         to: folder.appendingPathComponent("tokenizer_config.json")))
            written.append(try writeJSON(bpe.specialTokensMapJSON(), to: folder.appendingPathComponent("special_tokens_map.json")))
            return written
        }
        if let template = chatTemplate {
            let config = JSONValue.object([("chat_template", .string(template))])
            written.append(try writeJSON(config, to: folder.appendingPathComponent("tokenizer_config.json")))
        }
        return written
    }

    static func prepare(_ folder: URL) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw ModelFileError(file: folder.path, message: "exists and is not a folder") }
            return
        }
        do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
            throw ModelFileError(file: folder.path, message: "cannot create the folder: \(error.localizedDescription)")
        }
    }

    /// `generation_config.json` (and the ids config.json repeats): BOS, and EOS as a number or a list.
    static func generationJSON(bos: Int?, eos: [Int]) -> JSONValue {
        var m: [(key: String, value: JSONValue)] = []
        if let bos { m.append(("bos_token_id", .int(bos))) }
        if !eos.isEmpty { m.append(("eos_token_id", eos.count == 1 ? .int(eos[0]) : .array(eos.map { .int($0) }))) }
        return .object(m)
    }

    static func writeJSON(_ value: JSONValue, to url: URL) throws -> URL {
        do {
            try AtomicFile.write(to: url) { try $0.write(contentsOf: Data((JSONWriter.serialize(value) + "\n").utf8)) }
        } catch let error as AtomicFile.WriteError {
            throw ModelFileError(file: url.path, message: "cannot write: \(error.reason)")
        }
        return url
    }
}

extension PretrainedModel.Kind {
    /// The context length (`model_max_length` in `tokenizer_config.json`).
    var maxPositions: Int {
        switch self {
        case .decoder(let d): d.config.maxPositions
        case .gpt2(let g): g.config.maxPositions
        case .encoder(let e): e.config.maxPositions
        }
    }
}

extension DecoderConfig {
    /// The `model_type` Hugging Face uses for this architecture (GGUF's `gemma3` is `gemma3_text`).
    var huggingFaceModelType: String { architecture == "gemma3" ? "gemma3_text" : architecture }

    /// `config.json` for this configuration, in transformers 5's spelling (`rope_parameters`).
    public func huggingFaceJSON(dtype: DType = .float32) -> JSONValue {
        let type = huggingFaceModelType
        let classes = ["llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "gemma2": "Gemma2ForCausalLM",
                       "gemma3_text": "Gemma3ForCausalLM"]
        func rope(_ theta: Double, _ scaling: RopeScaling?) -> JSONValue {
            switch scaling {
            case nil: return .object([("rope_theta", .double(theta)), ("rope_type", .string("default"))])
            case .linear(let factor)?:
                return .object([("factor", .double(factor)), ("rope_theta", .double(theta)), ("rope_type", .string("linear"))])
            case let .llama3(factor, low, high, original)?:
                return .object([("factor", .double(factor)), ("high_freq_factor", .double(high)), ("low_freq_factor", .double(low)),
                                ("original_max_position_embeddings", .int(Int(original))), ("rope_theta", .double(theta)),
                                ("rope_type", .string("llama3"))])
            }
        }
        var m: [(key: String, value: JSONValue)] = [
            ("architectures", .array([.string(classes[type] ?? "LlamaForCausalLM")])),
            ("model_type", .string(type)),
            ("vocab_size", .int(vocabularySize)), ("hidden_size", .int(hiddenSize)), ("intermediate_size", .int(intermediateSize)),
            ("num_hidden_layers", .int(layers)), ("num_attention_heads", .int(heads)), ("num_key_value_heads", .int(kvHeads)),
            ("head_dim", .int(headDim)), ("rms_norm_eps", .float(rmsNormEps)), ("max_position_embeddings", .int(maxPositions)),
            ("tie_word_embeddings", .bool(tieWordEmbeddings)), ("dtype", .string(dtype.huggingFaceName)),
        ]
        if let bos = bosTokenID { m.append(("bos_token_id", .int(bos))) }
        if !eosTokenIDs.isEmpty { m.append(("eos_token_id", eosTokenIDs.count == 1 ? .int(eosTokenIDs[0]) : .array(eosTokenIDs.map { .int($0) }))) }
        if type == "gemma3_text" || type == "gemma2" {
            m.append(("hidden_activation", .string("gelu_pytorch_tanh")))
            let scale = queryScale ?? 1 / Float(headDim).squareRoot()
            // An integer in Gemma's configs (transformers 5 checks the type).
            let scalar = (1 / (Double(scale) * Double(scale))).rounded(toPlaces: 3)
            m.append(("query_pre_attn_scalar", scalar == scalar.rounded() ? .int(Int(scalar)) : .double(scalar)))
            m.append(("sliding_window", slidingWindow.map { .int($0) } ?? .null))
            let local = localLayers ?? Array(repeating: false, count: layers)
            m.append(("layer_types", .array(local.map { .string($0 ? "sliding_attention" : "full_attention") })))
            if type == "gemma2" {
                m.append(("rope_parameters", rope(ropeTheta, ropeScaling)))
            } else {
                m.append(("rope_parameters", .object([("full_attention", rope(ropeTheta, ropeScaling)),
                                                      ("sliding_attention", rope(localRopeTheta ?? 10_000, nil))])))
            }
            m.append(("final_logit_softcapping", finalLogitSoftcap.map { .float($0) } ?? .null))
            m.append(("attn_logit_softcapping", attentionLogitSoftcap.map { .float($0) } ?? .null))
        } else {
            m.append(("hidden_act", .string(geluGate ? "gelu_pytorch_tanh" : "silu")))
            m.append(("rope_parameters", rope(ropeTheta, ropeScaling)))
            if type != "qwen2" { m.append(("attention_bias", .bool(attentionBias))) }
            if type == "llama" || type == "mistral" { m.append(("mlp_bias", .bool(false))) }
            if type != "llama" { m.append(("sliding_window", slidingWindow.map { .int($0) } ?? .null)) }
            if type.hasPrefix("qwen") { m.append(("use_sliding_window", .bool(slidingWindow != nil))) }
        }
        return .object(m)
    }

    /// `generation_config.json`: the BOS and EOS ids.
    func generationJSON() -> JSONValue { HuggingFaceWriter.generationJSON(bos: bosTokenID, eos: eosTokenIDs) }
}

extension DecoderModel {
    /// The weights under Hugging Face's names and conventions (what `save_pretrained` would
    /// write): Llama q/k rows in rotate-half order and Gemma norms without the baked `+1` when
    /// the model came from GGUF; no `lm_head.weight` when it is tied to the embedding.
    public func huggingFaceTensors() -> [(String, Tensor)] {
        let c = config
        let bakedNormOffset: Float = c.architecture == "gemma3" && c.normOffset == 0 ? 1 : 0
        return Self.floatTensors(of: self).map { name, value -> (String, Tensor) in
            var t = value
            if c.ropeLayout == .pairs {
                if name.hasSuffix("self_attn.q_proj.weight") || name.hasSuffix("self_attn.q_proj.bias") {
                    t = Self.pairsToHalves(t, heads: c.heads)
                } else if name.hasSuffix("self_attn.k_proj.weight") || name.hasSuffix("self_attn.k_proj.bias") {
                    t = Self.pairsToHalves(t, heads: c.kvHeads)
                }
            }
            if bakedNormOffset != 0, name.hasSuffix("norm.weight") { t = t - bakedNormOffset }
            return (name, t)
        }
    }

    /// The state as float32 tensors in parameter order, quantized layers (``WeightOnlyLinear``,
    /// ``QuantizedEmbedding``) dequantised to `weight` (and `bias`); a shared parameter is listed once.
    static func floatTensors(of model: Module) -> [(String, Tensor)] {
        var seen = Set<ObjectIdentifier>(), out: [(String, Tensor)] = []
        for (path, m) in model.namedModules {
            let prefix = path.isEmpty ? "" : path + "."
            if let q = m as? WeightOnlyLinear {
                out.append((prefix + "weight", Tensor(q.weight.dequantized(), shape: [q.outFeatures, q.inFeatures])))
                if let b = q.bias { out.append((prefix + "bias", Tensor(b))) }
                continue
            }
            if let e = m as? QuantizedEmbedding {
                out.append((prefix + "weight", Tensor(e.weight.dequantized(), shape: [e.count, e.dimension])))
                continue
            }
            for (name, p) in m.ownParameters where seen.insert(ObjectIdentifier(p)).inserted {
                out.append((prefix + name, p.value.detached()))
            }
        }
        return out
    }

    /// Reorders the rows of a q or k projection from adjacent-pair RoPE order (row `2i + j` of
    /// each head is element `j` of pair `i`) to rotate-half order (row `j * headDim/2 + i`),
    /// undoing llama.cpp's converter's permutation.
    package static func pairsToHalves(_ t: Tensor, heads: Int) -> Tensor {
        let rows = t.shape[0], headDim = rows / heads, half = headDim / 2
        let rest = t.rank == 2 ? t.shape[1] : 1
        let source = t.contiguous().scalars
        var out = [Float](repeating: 0, count: source.count)
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 {
                    let from = (h * headDim + 2 * i + j) * rest, to = (h * headDim + j * half + i) * rest
                    for e in 0..<rest { out[to + e] = source[from + e] }
                }
            }
        }
        return Tensor(out, shape: t.shape)
    }
}

extension BertConfig {
    /// `config.json` of a `BertModel`.
    public func huggingFaceJSON(dtype: DType = .float32) -> JSONValue {
        .object([
            ("architectures", .array([.string("BertModel")])), ("model_type", .string("bert")),
            ("vocab_size", .int(vocabularySize)), ("hidden_size", .int(hiddenSize)), ("intermediate_size", .int(intermediateSize)),
            ("num_hidden_layers", .int(layers)), ("num_attention_heads", .int(heads)), ("max_position_embeddings", .int(maxPositions)),
            ("type_vocab_size", .int(typeVocabularySize)), ("layer_norm_eps", .float(layerNormEps)),
            ("hidden_act", .string(tanhGELU ? "gelu_new" : "gelu")), ("position_embedding_type", .string("absolute")),
            ("dtype", .string(dtype.huggingFaceName)),
        ])
    }
}

extension BertModel {
    /// The weights under `BertModel`'s state-dict names.
    public func huggingFaceTensors() -> [(String, Tensor)] { namedParameters.map { ($0.0, $0.1.value.detached()) } }
}

extension DType {
    /// torch's name for the dtype (`config.json`'s `dtype`).
    var huggingFaceName: String {
        switch self {
        case .float16: "float16"
        case .bfloat16: "bfloat16"
        default: "float32"
        }
    }
}

extension Double {
    func rounded(toPlaces places: Int) -> Double {
        let scale = pow(10, Double(places))
        return (self * scale).rounded() / scale
    }
}
