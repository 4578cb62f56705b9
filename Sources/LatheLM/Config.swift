import Foundation
import LatheIO

/// How rotary embeddings pair the dimensions of a head.
public enum RopeLayout: String, Sendable, Equatable {
    /// Hugging Face's `rotate_half`: dimension i pairs with i + headDim/2.
    case halves
    /// Adjacent pairs (2i, 2i+1), as GGUF files store Llama's q/k rows (ggml's "normal" mode).
    case pairs
}

/// Rescaling of rotary frequencies for long contexts.
public enum RopeScaling: Sendable, Equatable {
    /// Positions divided by `factor`.
    case linear(factor: Double)
    /// Llama 3.1's: low frequencies divided by `factor`, high ones kept, a smooth ramp between.
    case llama3(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalContext: Double)
}

/// The hyper-parameters of a decoder-only transformer of the Llama family (Llama 2/3, SmolLM,
/// TinyLlama, Mistral, Qwen2), from a Hugging Face `config.json` or GGUF metadata.
public struct DecoderConfig: Sendable, Equatable {
    /// `llama`, `mistral`, `qwen2`, ...
    public var architecture: String
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var rmsNormEps: Float
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling?
    public var ropeLayout: RopeLayout
    public var tieWordEmbeddings: Bool
    /// Biases on the q, k and v projections (Qwen2).
    public var attentionBias: Bool
    public var maxPositions: Int
    /// Attend only to the last `slidingWindow` positions (Mistral), nil: everything before.
    public var slidingWindow: Int?
    public var bosTokenID: Int?
    public var eosTokenIDs: [Int]

    // Gemma 3 (defaults: the Llama family's).
    /// Embeddings are multiplied by this (Gemma: sqrt(hidden)).
    public var embeddingScale: Float? = nil
    /// RMSNorm scales are `weight + normOffset` (Gemma in Hugging Face files: 1; GGUF bakes it in).
    public var normOffset: Float = 0
    /// RMSNorm of each query and key head before RoPE (Gemma 3, Qwen3).
    public var qkNorm = false
    /// Norms after attention and after the MLP, and a separate norm before the MLP (Gemma 2/3):
    /// `h += norm(attn(norm(h)))`, `h += norm(mlp(norm(h)))`.
    public var sandwichNorms = false
    /// The MLP gate's activation: SiLU (SwiGLU) or tanh-approximated GELU (GeGLU, Gemma).
    public var geluGate = false
    /// Queries are scaled by this instead of 1/sqrt(headDim) (Gemma: query_pre_attn_scalar^-1/2).
    public var queryScale: Float? = nil
    /// Per layer: true where attention is local (sliding window), with ``localRopeTheta``; nil:
    /// every layer uses ``slidingWindow`` (if any) and ``ropeTheta``.
    public var localLayers: [Bool]? = nil
    public var localRopeTheta: Double? = nil
    /// `cap * tanh(logits / cap)` on the output logits (Gemma 2).
    public var finalLogitSoftcap: Float? = nil
    /// `cap * tanh(score / cap)` on the attention scores before the softmax (Gemma 2).
    public var attentionLogitSoftcap: Float? = nil

    public init(architecture: String, vocabularySize: Int, hiddenSize: Int, intermediateSize: Int, layers: Int, heads: Int,
                kvHeads: Int, headDim: Int? = nil, rmsNormEps: Float = 1e-5, ropeTheta: Double = 10_000, ropeScaling: RopeScaling? = nil,
                ropeLayout: RopeLayout = .halves, tieWordEmbeddings: Bool = false, attentionBias: Bool = false, maxPositions: Int = 2048,
                slidingWindow: Int? = nil, bosTokenID: Int? = nil, eosTokenIDs: [Int] = []) {
        (self.architecture, self.vocabularySize, self.hiddenSize, self.intermediateSize) = (architecture, vocabularySize, hiddenSize, intermediateSize)
        (self.layers, self.heads, self.kvHeads, self.headDim) = (layers, heads, kvHeads, headDim ?? hiddenSize / max(heads, 1))
        (self.rmsNormEps, self.ropeTheta, self.ropeScaling, self.ropeLayout) = (rmsNormEps, ropeTheta, ropeScaling, ropeLayout)
        (self.tieWordEmbeddings, self.attentionBias, self.maxPositions) = (tieWordEmbeddings, attentionBias, maxPositions)
        (self.slidingWindow, self.bosTokenID, self.eosTokenIDs) = (slidingWindow, bosTokenID, eosTokenIDs)
    }

    /// The architectures this config describes (`model_type` of config.json).
    public static let architectures: Set<String> = ["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text"]

    /// Whether layer `i` attends through the sliding window, and the window.
    public func window(layer i: Int) -> Int? {
        guard let local = localLayers else { return slidingWindow }
        return local[i] ? slidingWindow : nil
    }

    /// The RoPE base of layer `i`.
    public func ropeTheta(layer i: Int) -> Double {
        localLayers?[i] == true ? (localRopeTheta ?? ropeTheta) : ropeTheta
    }

    /// The most parameters a config may describe: 2^36 (69 billion, 275 GB as the float32
    /// weights Lathe computes with). Larger sizes are mistakes or damage, and would overflow
    /// the sizes of buffers computed from them.
    public static let maxParameters = 1 << 36

    /// The number of weights the config describes: embeddings, the output projection unless tied,
    /// and per layer the attention and MLP matrices, biases and norms. A `Double`, so that sizes
    /// that are not validated yet cannot overflow.
    public var parameterCount: Double {
        let d = Double(hiddenSize), v = Double(vocabularySize), q = Double(heads) * Double(headDim)
        let kv = Double(kvHeads) * Double(headDim)
        var layer = d * q + 2 * d * kv + q * d + 3 * d * Double(intermediateSize) + (sandwichNorms ? 4 : 2) * d
        if attentionBias { layer += q + 2 * kv }
        if qkNorm { layer += 2 * Double(headDim) }
        return v * d * (tieWordEmbeddings ? 1 : 2) + Double(layers) * layer + d
    }

    /// Checks the sizes fit together and the numbers are usable; throws a ``ModelFileError``
    /// naming `file` otherwise.
    public func validate(file: String) throws {
        func bad(_ m: String) -> ModelFileError { ModelFileError(file: file, message: m) }
        for (name, v) in [("vocab_size", vocabularySize), ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                          ("num_hidden_layers", layers), ("num_attention_heads", heads), ("num_key_value_heads", kvHeads), ("head_dim", headDim),
                          ("max_position_embeddings", maxPositions)] {
            guard v >= 1, v <= 1 << 24 else { throw bad("\(name) is \(v); expected a positive size up to 2^24") }
        }
        guard parameterCount <= Double(DecoderConfig.maxParameters) else {
            throw bad("the sizes describe \(String(format: "%.3g", parameterCount)) parameters, more than the limit of "
                + "\(String(format: "%.3g", Double(DecoderConfig.maxParameters))) (2^36)")
        }
        guard heads % kvHeads == 0 else { throw bad("num_attention_heads \(heads) is not a multiple of num_key_value_heads \(kvHeads)") }
        guard headDim % 2 == 0 else { throw bad("head_dim \(headDim) must be even for rotary embeddings") }
        guard rmsNormEps > 0, rmsNormEps.isFinite else { throw bad("rms_norm_eps must be positive, got \(rmsNormEps)") }
        // A base or a scaling factor below 1 makes rotary frequencies above 1 (up to float
        // infinity: NaN angles); Hugging Face warns about factors below 1 too.
        guard ropeTheta >= 1, ropeTheta.isFinite else { throw bad("rope_theta must be at least 1, got \(ropeTheta)") }
        switch ropeScaling {
        case nil: break
        case .linear(let factor)?:
            guard factor >= 1, factor.isFinite else { throw bad("rope scaling factor must be at least 1, got \(factor)") }
        case let .llama3(factor, low, high, original)?:
            guard factor >= 1, [factor, low, high, original].allSatisfy({ $0 > 0 && $0.isFinite }), low < high else {
                throw bad("llama3 rope scaling needs factor >= 1, 0 < low_freq_factor < high_freq_factor and "
                    + "original_max_position_embeddings > 0, got \(factor), \(low), \(high), \(original)")
            }
        }
        if let w = slidingWindow, w < 1 { throw bad("sliding_window must be positive, got \(w)") }
        if let l = localLayers, l.count != layers { throw bad("layer_types has \(l.count) entries for \(layers) layers") }
        if let t = localRopeTheta, !(t >= 1 && t.isFinite) { throw bad("the local layers' rope_theta must be at least 1, got \(t)") }
        if let s = queryScale, !(s > 0 && s.isFinite) { throw bad("the query scale must be positive, got \(s) (query_pre_attn_scalar)") }
        if let s = embeddingScale, !(s > 0 && s.isFinite) { throw bad("the embedding scale must be positive, got \(s)") }
        if let cap = finalLogitSoftcap, !(cap > 0 && cap.isFinite) { throw bad("final_logit_softcapping must be positive, got \(cap)") }
        if let cap = attentionLogitSoftcap, !(cap > 0 && cap.isFinite) { throw bad("attn_logit_softcapping must be positive, got \(cap)") }
        for (name, id) in [("bos_token_id", bosTokenID)] + eosTokenIDs.map({ ("eos_token_id", Optional($0)) }) {
            if let id, id < 0 || id >= vocabularySize { throw bad("\(name) \(id) is outside the vocabulary (\(vocabularySize) tokens)") }
        }
    }

    /// Reads a Hugging Face `config.json` (both the `rope_theta`/`rope_scaling` keys and
    /// transformers 5's `rope_parameters`).
    public static func huggingFace(_ json: JSONValue, file: String) throws -> DecoderConfig {
        func bad(_ m: String) -> ModelFileError { ModelFileError(file: file, message: m) }
        guard json.objectMembers != nil else { throw bad("expected a JSON object") }
        let type = json["model_type"]?.stringValue ?? "?"
        guard architectures.contains(type) else {
            throw bad("model_type '\(type)' is not a supported decoder (supported: \(architectures.sorted().joined(separator: ", ")))")
        }
        func int(_ key: String) throws -> Int {
            guard let v = json[key]?.intValue else { throw bad("\(key) is missing or not an integer") }
            return v
        }
        func optionalInt(_ key: String) throws -> Int? {
            guard let v = json[key], !v.isNull else { return nil }
            guard let i = v.intValue else { throw bad("\(key) is not an integer") }
            return i
        }
        // transformers 5 keeps RoPE settings in rope_parameters, per layer type for Gemma 3.
        let ropeRoot = json["rope_parameters"]
        let rope = ropeRoot?["full_attention"] ?? ropeRoot
        let theta = rope?["rope_theta"]?.doubleValue ?? json["rope_theta"]?.doubleValue ?? 10_000
        var scaling: RopeScaling?
        if let s = [json["rope_scaling"], rope].compactMap({ $0 }).first(where: { !$0.isNull }) {
            let kind = s["rope_type"]?.stringValue ?? s["type"]?.stringValue ?? "default"
            func number(_ key: String) throws -> Double {
                guard let v = s[key]?.doubleValue else { throw bad("rope scaling '\(kind)' needs \(key)") }
                return v
            }
            switch kind {
            case "default": break
            case "linear": scaling = .linear(factor: try number("factor"))
            case "llama3":
                scaling = .llama3(factor: try number("factor"), lowFrequencyFactor: try number("low_freq_factor"),
                                  highFrequencyFactor: try number("high_freq_factor"), originalContext: try number("original_max_position_embeddings"))
            default: throw bad("rope scaling '\(kind)' is not supported (default, linear, llama3)")
            }
        }
        let heads = try int("num_attention_heads")
        let hidden = try int("hidden_size")
        var eos: [Int] = []
        if let e = json["eos_token_id"] {
            if let i = e.intValue { eos = [i] } else if let a = e.arrayValue { eos = a.compactMap(\.intValue) }
        }
        let config = DecoderConfig(
            architecture: type, vocabularySize: try int("vocab_size"), hiddenSize: hidden, intermediateSize: try int("intermediate_size"),
            layers: try int("num_hidden_layers"), heads: heads, kvHeads: try optionalInt("num_key_value_heads") ?? heads,
            headDim: try optionalInt("head_dim") ?? hidden / max(heads, 1),
            rmsNormEps: Float(json["rms_norm_eps"]?.doubleValue ?? 1e-6), ropeTheta: theta, ropeScaling: scaling, ropeLayout: .halves,
            tieWordEmbeddings: json["tie_word_embeddings"]?.boolValue ?? false,
            attentionBias: json["attention_bias"]?.boolValue ?? (type == "qwen2"),
            maxPositions: try optionalInt("max_position_embeddings") ?? 2048,
            slidingWindow: (json["use_sliding_window"]?.boolValue ?? (type == "mistral")) ? try optionalInt("sliding_window") : nil,
            bosTokenID: try optionalInt("bos_token_id"), eosTokenIDs: eos)
        var c = config
        if type == "qwen3" { c.qkNorm = true }  // RMSNorm of each query and key head
        if type == "gemma3_text" || type == "gemma2" {
            try c.validate(file: file)  // the sizes, before arrays are made from them
            c.embeddingScale = Float(Double(hidden).squareRoot())
            (c.normOffset, c.qkNorm, c.sandwichNorms) = (1, type == "gemma3_text", true)
            let act = json["hidden_activation"]?.stringValue ?? json["hidden_act"]?.stringValue ?? "gelu_pytorch_tanh"
            guard act == "gelu_pytorch_tanh" || act == "gelu" else { throw bad("hidden_activation '\(act)' is not supported") }
            c.geluGate = true
            let scalar = json["query_pre_attn_scalar"]?.doubleValue ?? Double(c.headDim)
            guard scalar > 0, scalar.isFinite else { throw bad("query_pre_attn_scalar must be positive, got \(scalar)") }
            c.queryScale = Float(1 / scalar.squareRoot())
            c.slidingWindow = try optionalInt("sliding_window")
            if let types = json["layer_types"]?.arrayValue {
                c.localLayers = try types.map { t in
                    switch t.stringValue {
                    case "sliding_attention"?: return true
                    case "full_attention"?: return false
                    default: throw bad("layer_types holds '\(t.stringValue ?? "?")' (sliding_attention or full_attention)")
                    }
                }
            } else if type == "gemma2" {
                c.localLayers = (0..<c.layers).map { $0 % 2 == 0 }  // local and global layers alternate
            } else {
                let pattern = try optionalInt("sliding_window_pattern") ?? 6
                guard pattern >= 1 else { throw bad("sliding_window_pattern must be positive, got \(pattern)") }
                c.localLayers = (0..<c.layers).map { ($0 + 1) % pattern != 0 }
            }
            if type == "gemma3_text" {
                c.localRopeTheta = ropeRoot?["sliding_attention"]?["rope_theta"]?.doubleValue ?? json["rope_local_base_freq"]?.doubleValue ?? 10_000
            }
            c.finalLogitSoftcap = json["final_logit_softcapping"]?.doubleValue.map(Float.init)
            c.attentionLogitSoftcap = json["attn_logit_softcapping"]?.doubleValue.map(Float.init)
            if json["tie_word_embeddings"] == nil { c.tieWordEmbeddings = true }
        }
        try c.validate(file: file)
        return c
    }
}

/// A model file or folder that cannot be used, with what is wrong.
public struct ModelFileError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let message: String
    public init(file: String, message: String) { (self.file, self.message) = (file, message) }
    public var description: String { "\(file): \(message)" }
}
