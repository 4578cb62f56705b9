import Foundation
import LatheIO
import LatheNN
import LatheTensor

/// A model that gives next-token logits and keeps a key/value cache.
public protocol LanguageModel: AnyObject {
    var vocabularySize: Int { get }
    /// The longest sequence the model was trained for.
    var maxPositions: Int { get }
    var bosTokenID: Int? { get }
    var eosTokenIDs: [Int] { get }
    /// A cache for up to `capacity` positions.
    func makeCache(capacity: Int) -> KVCache
    /// Runs `ids` at the positions after those in `cache` (appending them to it) and returns
    /// their logits, `[ids.count, vocabularySize]`, or only the last row's (`[1, vocab]`) when
    /// `lastOnly`.
    func logits(_ ids: [Int], cache: KVCache, lastOnly: Bool) -> Tensor
}

/// The Llama family's decoder (Llama 2/3, SmolLM/SmolLM2, TinyLlama, Mistral, Qwen2): token
/// embedding, blocks of RMSNorm → grouped-query attention with RoPE → residual, RMSNorm →
/// SwiGLU MLP → residual, a final RMSNorm and the output projection (tied to the embedding or
/// not). Parameters are named as Hugging Face's `LlamaForCausalLM` state dict
/// (`model.layers.0.self_attn.q_proj.weight`, ...), so a Hugging Face folder loads as it is.
public final class DecoderModel: Module, LanguageModel {
    public let config: DecoderConfig
    let model: DecoderBody
    /// nil when tied to the embedding (`tie_word_embeddings`): the state dict then has no
    /// `lm_head.weight`, as Hugging Face saves it.
    let lmHead: Linear?
    let rotary: Rotary

    /// Builds the model around `weights` (Hugging Face names), without random initialisation.
    /// A missing or misshapen tensor is an error naming it; extra tensors are an error too.
    public init(config: DecoderConfig, weights: [String: Tensor], file: String = "weights") throws {
        self.config = config
        var used = Set<String>()
        func take(_ key: String, _ shape: [Int]) throws -> Tensor {
            guard let t = weights[key] else { throw ModelFileError(file: file, message: "missing tensor \(key)") }
            guard t.shape == shape else { throw ModelFileError(file: file, message: "\(key) has shape \(t.shape), the config implies \(shape)") }
            used.insert(key)
            return t.dtype == .float32 ? t : t.to(.float32)
        }
        let c = config, d = c.hiddenSize, q = c.heads * c.headDim, kv = c.kvHeads * c.headDim
        var layers: [DecoderLayer] = []
        for i in 0..<c.layers {
            let p = "model.layers.\(i)."
            func linear(_ name: String, _ out: Int, _ input: Int, bias: Bool) throws -> Linear {
                Linear(weight: try take(p + name + ".weight", [out, input]), bias: bias ? try take(p + name + ".bias", [out]) : nil)
            }
            let attention = AttentionProjections(
                qProj: try linear("self_attn.q_proj", q, d, bias: c.attentionBias), kProj: try linear("self_attn.k_proj", kv, d, bias: c.attentionBias),
                vProj: try linear("self_attn.v_proj", kv, d, bias: c.attentionBias), oProj: try linear("self_attn.o_proj", d, q, bias: false))
            let mlp = MLP(gateProj: try linear("mlp.gate_proj", c.intermediateSize, d, bias: false),
                          upProj: try linear("mlp.up_proj", c.intermediateSize, d, bias: false),
                          downProj: try linear("mlp.down_proj", d, c.intermediateSize, bias: false))
            layers.append(DecoderLayer(selfAttn: attention, mlp: mlp,
                                       inputLayernorm: RMSNorm(weight: try take(p + "input_layernorm.weight", [d]), eps: c.rmsNormEps),
                                       postAttentionLayernorm: RMSNorm(weight: try take(p + "post_attention_layernorm.weight", [d]), eps: c.rmsNormEps)))
        }
        model = DecoderBody(embedTokens: Embedding(weight: try take("model.embed_tokens.weight", [c.vocabularySize, d])), layers: layers,
                            norm: RMSNorm(weight: try take("model.norm.weight", [d]), eps: c.rmsNormEps))
        if c.tieWordEmbeddings {
            lmHead = nil
            used.insert("lm_head.weight")  // some files carry the tied copy; it is the embedding
        } else {
            lmHead = Linear(weight: try take("lm_head.weight", [c.vocabularySize, d]))
        }
        rotary = Rotary(headDim: c.headDim, base: c.ropeTheta, scaling: c.ropeScaling, layout: c.ropeLayout)
        super.init()
        let extra = Set(weights.keys).subtracting(used).sorted()
        if !extra.isEmpty {
            throw ModelFileError(file: file, message: "\(extra.count) tensor(s) the \(c.architecture) model does not use: "
                                 + extra.prefix(5).joined(separator: ", ") + (extra.count > 5 ? ", ..." : ""))
        }
    }

    public var vocabularySize: Int { config.vocabularySize }
    public var maxPositions: Int { config.maxPositions }
    public var bosTokenID: Int? { config.bosTokenID }
    public var eosTokenIDs: [Int] { config.eosTokenIDs }

    public func makeCache(capacity: Int) -> KVCache { KVCache(config: config, capacity: capacity) }

    public func logits(_ ids: [Int], cache: KVCache, lastOnly: Bool = false) -> Tensor {
        precondition(!ids.isEmpty, "DecoderModel.logits: no tokens")
        precondition(ids.allSatisfy { $0 >= 0 && $0 < config.vocabularySize }, "DecoderModel.logits: token ids must be in 0..<\(config.vocabularySize)")
        precondition(cache.layers == config.layers && cache.kvHeads == config.kvHeads && cache.headDim == config.headDim,
                     "DecoderModel.logits: the cache was made for another model")
        return noGrad {
            let start = cache.length
            var x = model.embedTokens(Tensor(ids, shape: [ids.count]))
            for (i, layer) in model.layers.enumerated() {
                x = layer.forward(x, start: start, cache: cache, layer: i, rotary: rotary, config: config)
            }
            cache.advance(by: ids.count)
            if lastOnly { x = x.sliced(dim: 0, start: ids.count - 1) }
            let h = model.norm(x)
            return h.linear(weight: lmHead?.weight.value ?? model.embedTokens.weight.value)
        }
    }

    /// Logits of a whole sequence without keeping a cache.
    public func logits(_ ids: [Int]) -> Tensor {
        logits(ids, cache: makeCache(capacity: ids.count), lastOnly: false)
    }
}

final class DecoderBody: Module {
    let embedTokens: Embedding
    let layers: [DecoderLayer]
    let norm: RMSNorm

    init(embedTokens: Embedding, layers: [DecoderLayer], norm: RMSNorm) {
        (self.embedTokens, self.layers, self.norm) = (embedTokens, layers, norm)
    }
}

final class AttentionProjections: Module {
    let qProj: Linear, kProj: Linear, vProj: Linear, oProj: Linear
    init(qProj: Linear, kProj: Linear, vProj: Linear, oProj: Linear) { (self.qProj, self.kProj, self.vProj, self.oProj) = (qProj, kProj, vProj, oProj) }
}

final class MLP: Module {
    let gateProj: Linear, upProj: Linear, downProj: Linear
    init(gateProj: Linear, upProj: Linear, downProj: Linear) { (self.gateProj, self.upProj, self.downProj) = (gateProj, upProj, downProj) }

    override func forward(_ x: Tensor) -> Tensor { downProj(gateProj(x).silu() * upProj(x)) }
}

final class DecoderLayer: Module {
    let selfAttn: AttentionProjections
    let mlp: MLP
    let inputLayernorm: RMSNorm
    let postAttentionLayernorm: RMSNorm

    init(selfAttn: AttentionProjections, mlp: MLP, inputLayernorm: RMSNorm, postAttentionLayernorm: RMSNorm) {
        (self.selfAttn, self.mlp, self.inputLayernorm, self.postAttentionLayernorm) = (selfAttn, mlp, inputLayernorm, postAttentionLayernorm)
    }

    /// `x` `[rows, hidden]` at positions `start...`; writes this layer's keys and values into the cache.
    func forward(_ x: Tensor, start: Int, cache: KVCache, layer: Int, rotary: Rotary, config c: DecoderConfig) -> Tensor {
        let rows = x.shape[0]
        let h = inputLayernorm(x)
        var q = selfAttn.qProj(h).scalars, k = selfAttn.kProj(h).scalars
        let v = selfAttn.vProj(h).scalars
        q.withUnsafeMutableBufferPointer { rotary.apply($0.baseAddress!, rows: rows, heads: c.heads, start: start) }
        k.withUnsafeMutableBufferPointer { rotary.apply($0.baseAddress!, rows: rows, heads: c.kvHeads, start: start) }
        k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            cache.write(layer: layer, keys: kp.baseAddress!, values: vp.baseAddress!, rows: rows)
        } }
        var attended = [Float](repeating: 0, count: rows * c.heads * c.headDim)
        q.withUnsafeBufferPointer { qp in
            attended.withUnsafeMutableBufferPointer { op in
                CachedAttention.run(q: qp.baseAddress!, rows: rows, heads: c.heads, cache: cache, layer: layer, start: start,
                                    scale: 1 / Float(c.headDim).squareRoot(), window: c.slidingWindow, out: op.baseAddress!)
            }
        }
        let y = x + selfAttn.oProj(Tensor(attended, shape: [rows, c.heads * c.headDim]))
        return y + mlp(postAttentionLayernorm(y))
    }
}
