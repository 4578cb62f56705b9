import Foundation
import LatheIO
import LatheTensor

extension DecoderConfig {
    /// Reads the hyper-parameters of a GGUF file's `general.architecture` (`llama`, `qwen2`,
    /// `gemma3`) from its metadata, as llama.cpp's loader does.
    public static func gguf(_ file: GGUFFile) throws -> DecoderConfig {
        let path = file.path
        func bad(_ m: String) -> ModelFileError { ModelFileError(file: path, message: m) }
        guard let arch = try file.string("general.architecture") else { throw bad("no general.architecture") }
        guard ["llama", "qwen2", "gemma3"].contains(arch) else {
            throw bad("architecture '\(arch)' is not supported yet (llama, qwen2, gemma3)")
        }
        func int(_ key: String) throws -> Int {
            guard let v = try file.int("\(arch).\(key)") else { throw bad("\(arch).\(key) is missing") }
            return v
        }
        func optionalInt(_ key: String) throws -> Int? { try file.int("\(arch).\(key)") }
        let heads = try int("attention.head_count"), hidden = try int("embedding_length")
        let tokens = file.value("tokenizer.ggml.tokens")?.arrayValue?.count
        guard let vocab = try optionalInt("vocab_size") ?? tokens ?? file.tensors.first(where: { $0.name == "token_embd.weight" })?.shape.first else {
            throw bad("cannot tell the vocabulary size (no \(arch).vocab_size, tokenizer.ggml.tokens or token_embd.weight)")
        }
        let headDim = try optionalInt("attention.key_length") ?? hidden / max(heads, 1)
        var scaling: RopeScaling?
        switch try file.string("\(arch).rope.scaling.type") {
        case nil, "none"?: break
        case "linear"?:
            guard let f = try file.double("\(arch).rope.scaling.factor") else { throw bad("linear rope scaling without a factor") }
            scaling = .linear(factor: f)
        case let other?: throw bad("rope scaling '\(other)' is not supported yet")
        }
        if file.tensors.contains(where: { $0.name == "rope_freqs.weight" }) {
            throw bad("per-frequency rope factors (rope_freqs.weight, Llama 3.1) are not supported yet")
        }
        var eos: [Int] = []
        if let e = try file.int("tokenizer.ggml.eos_token_id") { eos.append(e) }
        if let e = try file.int("tokenizer.ggml.eot_token_id"), !eos.contains(e) { eos.append(e) }
        var c = DecoderConfig(
            architecture: arch, vocabularySize: vocab, hiddenSize: hidden, intermediateSize: try int("feed_forward_length"),
            layers: try int("block_count"), heads: heads, kvHeads: try optionalInt("attention.head_count_kv") ?? heads, headDim: headDim,
            rmsNormEps: try file.float("\(arch).attention.layer_norm_rms_epsilon") ?? 1e-5,
            ropeTheta: try file.double("\(arch).rope.freq_base") ?? 10_000, ropeScaling: scaling,
            // llama.cpp's converter permutes Llama's q/k rows for adjacent-pair RoPE; Qwen2 and Gemma use NEOX (halves).
            ropeLayout: arch == "llama" ? .pairs : .halves,
            tieWordEmbeddings: !file.tensors.contains { $0.name == "output.weight" },
            attentionBias: file.tensors.contains { $0.name == "blk.0.attn_q.bias" },
            maxPositions: try int("context_length"),
            slidingWindow: try optionalInt("attention.sliding_window"),
            bosTokenID: try file.int("tokenizer.ggml.bos_token_id"), eosTokenIDs: eos)
        if arch == "gemma3" {
            try c.validate(file: path)  // the sizes, before arrays are made from them
            c.embeddingScale = Float(Double(hidden).squareRoot())
            (c.qkNorm, c.sandwichNorms, c.geluGate) = (true, true, true)
            c.normOffset = 0  // the converter bakes the +1 into the norm weights
            c.queryScale = 1 / Float(headDim).squareRoot()
            if c.slidingWindow != nil {
                c.localLayers = (0..<c.layers).map { $0 % 6 < 5 }
                c.localRopeTheta = try file.double("gemma3.rope.freq_base_swa") ?? 10_000
            }
            c.finalLogitSoftcap = try file.float("gemma3.final_logit_softcapping")
        } else if arch == "llama" || arch == "qwen2" {
            c.slidingWindow = nil
        }
        try c.validate(file: path)
        return c
    }
}

extension DecoderModel {
    /// Hugging Face names of a GGUF file's tensors (llama.cpp's converter's map, reversed).
    static func huggingFaceName(_ gguf: String, gemma: Bool) -> String? {
        let fixed = ["token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"]
        if let n = fixed[gguf] { return n }
        let parts = gguf.split(separator: ".", maxSplits: 2)
        guard parts.count == 3, parts[0] == "blk", let layer = Int(parts[1]) else { return nil }
        let map = ["attn_norm.weight": "input_layernorm.weight", "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
                   "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
                   "attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias", "attn_v.bias": "self_attn.v_proj.bias",
                   "attn_q_norm.weight": "self_attn.q_norm.weight", "attn_k_norm.weight": "self_attn.k_norm.weight",
                   "ffn_norm.weight": "post_attention_layernorm.weight", "ffn_gate.weight": "mlp.gate_proj.weight",
                   "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight",
                   "post_attention_norm.weight": "post_attention_layernorm.weight", "post_ffw_norm.weight": "post_feedforward_layernorm.weight"]
        guard var name = map[String(parts[2])] else { return nil }
        // Gemma's ffn_norm is the norm before the MLP, its post_attention_norm the norm of the attention output.
        if parts[2] == "ffn_norm.weight", gemma { name = "pre_feedforward_layernorm.weight" }
        return "model.layers.\(layer).\(name)"
    }

    /// Loads a GGUF model. With `quantized` (the default), matrices stored as Q8_0, Q4_0 or
    /// Q4_1 stay quantized at run time (``GGUFGroupwise``; a quantized tied embedding also serves
    /// as the output projection), and the other tensors are dequantised to float32 one at a
    /// time from the mapped file; without it every tensor is float32.
    public static func load(gguf url: URL, quantized: Bool = true) throws -> DecoderModel {
        try load(gguf: try GGUFFile(contentsOf: url), quantized: quantized)
    }

    /// ``load(gguf:quantized:)`` from an opened file.
    public static func load(gguf file: GGUFFile, quantized: Bool = true) throws -> DecoderModel {
        let config = try DecoderConfig.gguf(file)
        let source = try GGUFTensorSource(file, gemma: config.architecture == "gemma3", quantized: quantized)
        return try DecoderModel(config: config, weights: source, file: file.path) { name, shape in
            try source.quantizedLinear(named: name)?.weight
        }
    }
}
