import Foundation
import LatheIO
import LatheTensor

/// The hyper-parameters of a GPT-2 (Hugging Face `GPT2LMHeadModel`, llama.cpp's arch `gpt2`),
/// from a Hugging Face `config.json` or GGUF metadata.
public struct GPT2Config: Sendable, Equatable {
    /// `vocab_size`.
    public var vocabularySize: Int
    /// `n_embd`.
    public var hiddenSize: Int
    /// `n_inner` (null: 4 × `n_embd`).
    public var intermediateSize: Int
    /// `n_layer`.
    public var layers: Int
    /// `n_head`.
    public var heads: Int
    /// `n_positions`: the learned position embeddings, the longest sequence the model takes.
    public var maxPositions: Int
    /// `layer_norm_epsilon`.
    public var layerNormEpsilon: Float
    /// `activation_function` of the MLP: `gelu_new` (GPT-2's; also `gelu_pytorch_tanh`,
    /// `gelu_fast`: the tanh approximation) or `gelu` (the exact, erf form).
    public var activation: String
    /// `scale_attn_weights`: scores divided by sqrt(head size) (true in every released GPT-2).
    public var scaleAttentionWeights: Bool
    /// `tie_word_embeddings` (default true): the output projection is the token embedding.
    public var tieWordEmbeddings: Bool
    public var bosTokenID: Int?
    public var eosTokenIDs: [Int]

    public init(vocabularySize: Int, hiddenSize: Int, intermediateSize: Int? = nil, layers: Int, heads: Int, maxPositions: Int,
                layerNormEpsilon: Float = 1e-5, activation: String = "gelu_new", scaleAttentionWeights: Bool = true,
                tieWordEmbeddings: Bool = true, bosTokenID: Int? = nil, eosTokenIDs: [Int] = []) {
        (self.vocabularySize, self.hiddenSize, self.layers, self.heads) = (vocabularySize, hiddenSize, layers, heads)
        self.intermediateSize = intermediateSize ?? 4 * hiddenSize
        (self.maxPositions, self.layerNormEpsilon, self.activation) = (maxPositions, layerNormEpsilon, activation)
        (self.scaleAttentionWeights, self.tieWordEmbeddings, self.bosTokenID, self.eosTokenIDs) =
            (scaleAttentionWeights, tieWordEmbeddings, bosTokenID, eosTokenIDs)
    }

    /// The activations Lathe computes, with whether each is the tanh approximation.
    public static let activations: [String: Bool] = ["gelu_new": true, "gelu_pytorch_tanh": true, "gelu_fast": true, "gelu": false]

    public var headDim: Int { hiddenSize / max(heads, 1) }
    /// Whether the MLP's GELU is the tanh approximation.
    public var tanhGELU: Bool { GPT2Config.activations[activation] ?? true }

    /// The number of weights the config describes (token and position embeddings, the head
    /// unless tied, per layer two norms, the fused q/k/v, output and MLP matrices with their
    /// biases, the final norm); a `Double`, so absurd sizes cannot overflow.
    public var parameterCount: Double {
        let d = Double(hiddenSize), i = Double(intermediateSize)
        let layer = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * i + i) + (i * d + d)
        return Double(vocabularySize) * d * (tieWordEmbeddings ? 1 : 2) + Double(maxPositions) * d + Double(layers) * layer + 2 * d
    }

    /// Checks the sizes fit together and the numbers are usable; throws a ``ModelFileError``
    /// naming `file` otherwise.
    public func validate(file: String) throws {
        func bad(_ m: String) -> ModelFileError { ModelFileError(file: file, message: m) }
        for (name, v) in [("vocab_size", vocabularySize), ("n_embd", hiddenSize), ("n_inner (4 × n_embd when null)", intermediateSize), ("n_layer", layers),
                          ("n_head", heads), ("n_positions", maxPositions)] {
            guard v >= 1, v <= 1 << 24 else { throw bad("\(name) is \(v); expected a positive size up to 2^24") }
        }
        guard parameterCount <= Double(DecoderConfig.maxParameters) else {
            throw bad("the sizes describe \(String(format: "%.3g", parameterCount)) parameters, more than the limit of "
                + "\(String(format: "%.3g", Double(DecoderConfig.maxParameters))) (2^36)")
        }
        guard hiddenSize % heads == 0 else { throw bad("n_embd \(hiddenSize) is not a multiple of n_head \(heads)") }
        guard layerNormEpsilon > 0, layerNormEpsilon.isFinite else {
            throw bad("layer_norm_epsilon must be positive, got \(layerNormEpsilon)")
        }
        guard GPT2Config.activations[activation] != nil else {
            throw bad("activation_function '\(activation)' is not supported (\(GPT2Config.activations.keys.sorted().joined(separator: ", ")))")
        }
        for (name, id) in [("bos_token_id", bosTokenID)] + eosTokenIDs.map({ ("eos_token_id", Optional($0)) }) {
            if let id, id < 0 || id >= vocabularySize { throw bad("\(name) \(id) is outside the vocabulary (\(vocabularySize) tokens)") }
        }
    }

    /// Reads a Hugging Face `config.json` (`model_type` `gpt2`). The sizes are required;
    /// `n_inner` (null: 4 × `n_embd`), `layer_norm_epsilon` (1e-5), `activation_function`
    /// (`gelu_new`), `scale_attn_weights` (true) and `tie_word_embeddings` (true) take
    /// transformers' defaults. Variants Lathe does not compute are errors: per-layer score
    /// scaling (`scale_attn_by_inverse_layer_idx`), `reorder_and_upcast_attn`, cross-attention.
    public static func huggingFace(_ json: JSONValue, file: String) throws -> GPT2Config {
        func bad(_ m: String) -> ModelFileError { ModelFileError(file: file, message: m) }
        guard json.objectMembers != nil else { throw bad("expected a JSON object") }
        let type = json["model_type"]?.stringValue ?? "?"
        guard type == "gpt2" else { throw bad("model_type '\(type)' is not gpt2") }
        func int(_ key: String) throws -> Int {
            guard let v = json[key]?.intValue else { throw bad("\(key) is missing or not an integer") }
            return v
        }
        func optionalInt(_ key: String) throws -> Int? {
            guard let v = json[key], !v.isNull else { return nil }
            guard let i = v.intValue else { throw bad("\(key) is not an integer") }
            return i
        }
        func flag(_ key: String, _ defaultValue: Bool) throws -> Bool {
            guard let v = json[key], !v.isNull else { return defaultValue }
            guard let b = v.boolValue else { throw bad("\(key) is not true or false") }
            return b
        }
        for key in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"] {
            if try flag(key, false) { throw bad("\(key) is true; Lathe's GPT-2 supports only false") }
        }
        var epsilon: Float = 1e-5
        if let e = json["layer_norm_epsilon"], !e.isNull {
            guard let v = e.doubleValue else { throw bad("layer_norm_epsilon is not a number") }
            epsilon = Float(v)
        }
        var activation = "gelu_new"
        if let a = json["activation_function"], !a.isNull {
            guard let s = a.stringValue else { throw bad("activation_function is not a string") }
            activation = s
        }
        var eos: [Int] = []
        if let e = json["eos_token_id"], !e.isNull {
            if let i = e.intValue { eos = [i] } else if let a = e.arrayValue, a.allSatisfy({ $0.intValue != nil }) { eos = a.compactMap(\.intValue) } else {
                throw bad("eos_token_id is not an integer or a list of integers")
            }
        }
        let hidden = try int("n_embd")
        // Old files name the context n_ctx.
        guard let positions = try optionalInt("n_positions") ?? optionalInt("n_ctx") else { throw bad("n_positions is missing or not an integer") }
        let c = GPT2Config(
            vocabularySize: try int("vocab_size"), hiddenSize: hidden, intermediateSize: try optionalInt("n_inner"), layers: try int("n_layer"),
            heads: try int("n_head"), maxPositions: positions, layerNormEpsilon: epsilon, activation: activation,
            scaleAttentionWeights: try flag("scale_attn_weights", true), tieWordEmbeddings: try flag("tie_word_embeddings", true),
            bosTokenID: try optionalInt("bos_token_id"), eosTokenIDs: eos)
        try c.validate(file: file)
        return c
    }

    /// Reads the metadata of a GGUF file whose `general.architecture` is `gpt2`, as llama.cpp's
    /// loader does: `gpt2.context_length`, `embedding_length`, `feed_forward_length` (default
    /// 4 × embedding), `block_count`, `attention.head_count`, `attention.layer_norm_epsilon`; the
    /// head is tied unless the file has `output.weight`. llama.cpp computes GELU with the tanh
    /// approximation.
    public static func gguf(_ file: GGUFFile) throws -> GPT2Config {
        func bad(_ m: String) -> ModelFileError { ModelFileError(file: file.path, message: m) }
        let arch = try file.string("general.architecture")
        guard arch == "gpt2" else { throw bad("general.architecture is '\(arch ?? "missing")', not gpt2") }
        func int(_ key: String) throws -> Int {
            guard let v = try file.int("gpt2.\(key)") else { throw bad("gpt2.\(key) is missing") }
            return v
        }
        let hidden = try int("embedding_length")
        let tokens = file.value("tokenizer.ggml.tokens")?.arrayValue?.count
        guard let vocab = try file.int("gpt2.vocab_size") ?? tokens ?? file.tensors.first(where: { $0.name == "token_embd.weight" })?.shape.first else {
            throw bad("cannot tell the vocabulary size (no gpt2.vocab_size, tokenizer.ggml.tokens or token_embd.weight)")
        }
        var eos: [Int] = []
        if let e = try file.int("tokenizer.ggml.eos_token_id") { eos.append(e) }
        let c = GPT2Config(
            vocabularySize: vocab, hiddenSize: hidden, intermediateSize: try file.int("gpt2.feed_forward_length"), layers: try int("block_count"),
            heads: try int("attention.head_count"), maxPositions: try int("context_length"),
            layerNormEpsilon: try file.float("gpt2.attention.layer_norm_epsilon") ?? 1e-5, activation: "gelu_new",
            tieWordEmbeddings: !file.tensors.contains { $0.name == "output.weight" },
            bosTokenID: try file.int("tokenizer.ggml.bos_token_id"), eosTokenIDs: eos)
        try c.validate(file: file.path)
        return c
    }

    /// The config as a Hugging Face `config.json` (`GPT2LMHeadModel`, weights in `dtype`), keys
    /// in a fixed order; ``huggingFace(_:file:)`` reads it back to this config.
    public func huggingFaceJSON(dtype: DType = .float32) -> JSONValue {
        var m: [(key: String, value: JSONValue)] = [
            ("architectures", .array([.string("GPT2LMHeadModel")])), ("model_type", .string("gpt2")),
            ("vocab_size", .int(vocabularySize)), ("n_embd", .int(hiddenSize)), ("n_layer", .int(layers)), ("n_head", .int(heads)),
            ("n_positions", .int(maxPositions)), ("n_ctx", .int(maxPositions)),
            ("n_inner", intermediateSize == 4 * hiddenSize ? .null : .int(intermediateSize)),
            ("activation_function", .string(activation)), ("layer_norm_epsilon", .float(layerNormEpsilon)),
            ("scale_attn_weights", .bool(scaleAttentionWeights)), ("scale_attn_by_inverse_layer_idx", .bool(false)),
            ("reorder_and_upcast_attn", .bool(false)), ("tie_word_embeddings", .bool(tieWordEmbeddings)),
            ("dtype", .string(dtype.huggingFaceName)),
        ]
        m += generationJSON().objectMembers ?? []
        return .object(m)
    }

    /// `generation_config.json`: the BOS and EOS ids.
    func generationJSON() -> JSONValue { HuggingFaceWriter.generationJSON(bos: bosTokenID, eos: eosTokenIDs) }
}
