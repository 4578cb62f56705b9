import Foundation
import LatheIO

/// The hyper-parameters of a BERT encoder, from `config.json`.
public struct BertConfig: Sendable, Equatable {
    public var vocabularySize: Int, hiddenSize: Int, intermediateSize: Int, layers: Int, heads: Int
    public var maxPositions: Int, typeVocabularySize: Int
    public var layerNormEps: Float
    /// `gelu` (erf) or `gelu_new`/`gelu_pytorch_tanh` (tanh approximation).
    public var tanhGELU: Bool

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
        return c
    }
}
