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
    public static let architectures: Set<String> = ["llama", "mistral", "qwen2"]

    /// Checks the sizes fit together; throws a ``ModelFileError`` naming `file` otherwise.
    public func validate(file: String) throws {
        func bad(_ m: String) -> ModelFileError { ModelFileError(file: file, message: m) }
        for (name, v) in [("vocab_size", vocabularySize), ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                          ("num_hidden_layers", layers), ("num_attention_heads", heads), ("num_key_value_heads", kvHeads), ("head_dim", headDim)] {
            guard v >= 1, v <= 1 << 24 else { throw bad("\(name) is \(v); expected a positive size") }
        }
        guard heads % kvHeads == 0 else { throw bad("num_attention_heads \(heads) is not a multiple of num_key_value_heads \(kvHeads)") }
        guard headDim % 2 == 0 else { throw bad("head_dim \(headDim) must be even for rotary embeddings") }
        guard rmsNormEps > 0, rmsNormEps.isFinite else { throw bad("rms_norm_eps must be positive, got \(rmsNormEps)") }
        guard ropeTheta > 0, ropeTheta.isFinite else { throw bad("rope_theta must be positive, got \(ropeTheta)") }
        if let w = slidingWindow, w < 1 { throw bad("sliding_window must be positive, got \(w)") }
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
        let rope = json["rope_parameters"]
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
        try config.validate(file: file)
        return config
    }
}

/// A model file or folder that cannot be used, with what is wrong.
public struct ModelFileError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let message: String
    public init(file: String, message: String) { (self.file, self.message) = (file, message) }
    public var description: String { "\(file): \(message)" }
}
