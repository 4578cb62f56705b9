import Foundation
import LatheIO

/// The hyper-parameters of a BERT encoder, from `config.json`.
public struct BertConfig: Sendable, Equatable {
    public var vocabularySize: Int, hiddenSize: Int, intermediateSize: Int, layers: Int, heads: Int
    public var maxPositions: Int, typeVocabularySize: Int
    public var layerNormEps: Float
    /// `gelu` (erf) or `gelu_new`/`gelu_pytorch_tanh` (tanh approximation).
    public var tanhGELU: Bool

    /// The number of weights the config describes (embeddings, and per layer the attention and
    /// MLP matrices, biases and norms); a `Double`, so absurd sizes cannot overflow.
    public var parameterCount: Double {
        let d = Double(hiddenSize), i = Double(intermediateSize)
        let layer = 4 * d * d + 4 * d + 2 * d * i + i + d + 4 * d
        return (Double(vocabularySize) + Double(maxPositions) + Double(typeVocabularySize)) * d + 2 * d + Double(layers) * layer
    }

    public static func huggingFace(_ json: JSONValue, file: String) throws -> BertConfig {
        func bad(_ m: String) -> ModelFileError { ModelFileError(file: file, message: m) }
        guard json["model_type"]?.stringValue == "bert" else {
            throw bad("model_type '\(json["model_type"]?.stringValue ?? "?")' is not bert")
        }
        func int(_ key: String) throws -> Int {
            guard let v = json[key]?.intValue, v >= 1, v <= 1 << 24 else { throw bad("\(key) is missing or not a positive integer") }
            return v
        }
        let act = json["hidden_act"]?.stringValue ?? "gelu"
        guard ["gelu", "gelu_new", "gelu_pytorch_tanh"].contains(act) else { throw bad("hidden_act '\(act)' is not supported (gelu)") }
        if let kind = json["position_embedding_type"]?.stringValue, kind != "absolute" {
            throw bad("position_embedding_type '\(kind)' is not supported (absolute)")
        }
        let c = BertConfig(vocabularySize: try int("vocab_size"), hiddenSize: try int("hidden_size"), intermediateSize: try int("intermediate_size"),
                           layers: try int("num_hidden_layers"), heads: try int("num_attention_heads"),
                           maxPositions: try int("max_position_embeddings"), typeVocabularySize: try int("type_vocab_size"),
                           layerNormEps: Float(json["layer_norm_eps"]?.doubleValue ?? 1e-12), tanhGELU: act != "gelu")
        guard c.hiddenSize % c.heads == 0 else { throw bad("hidden_size \(c.hiddenSize) is not a multiple of num_attention_heads \(c.heads)") }
        guard c.layerNormEps > 0, c.layerNormEps.isFinite else { throw bad("layer_norm_eps must be positive, got \(c.layerNormEps)") }
        guard c.parameterCount <= Double(DecoderConfig.maxParameters) else {
            throw bad("the sizes describe \(String(format: "%.3g", c.parameterCount)) parameters, more than the limit of "
                + "\(String(format: "%.3g", Double(DecoderConfig.maxParameters))) (2^36)")
        }
        return c
    }
}
