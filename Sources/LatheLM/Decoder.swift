import Foundation
import LatheCompress
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
    /// One decode step of several sequences: `ids[i]` runs at the position after those in
    /// `caches[i]` (and is appended to it). Returns `[ids.count, vocabularySize]`, row `i` equal to
    /// `logits([ids[i]], cache: caches[i], lastOnly: true)` (the default implementation runs exactly
    /// that; ``DecoderModel`` runs the rows together).
    func logits(next ids: [Int], caches: [KVCache]) -> Tensor
}

extension LanguageModel {
    public func logits(next ids: [Int], caches: [KVCache]) -> Tensor {
        precondition(ids.count == caches.count && !ids.isEmpty, "logits(next:caches:): one token per cache")
        return Tensor.concatenated(zip(ids, caches).map { logits([$0], cache: $1, lastOnly: true) }, dim: 0)
    }
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
    /// `lm_head.weight`, as Hugging Face saves it. A `Linear`, or a quantized layer.
    @Child var lmHead: Module?
    /// A quantized copy of a tied embedding that serves as the output projection (GGUF files
    /// whose embedding is quantized); not a child: the embedding is the state.
    let tiedHead: Unlisted
    /// Each layer's rotary frequencies (Gemma's local layers have their own base).
    let rotaries: [Rotary]

    /// Builds the model around `weights` (Hugging Face names), without random initialisation.
    /// A missing or misshapen tensor is an error naming it; extra tensors are an error too.
    /// Tensors are taken from `weights` one at a time as float32 (from a mapped file, without
    /// a copy in the file's dtype).
    public convenience init(config: DecoderConfig, weights: some TensorSource, file: String = "weights") throws {
        try self.init(config: config, weights: weights, file: file, quantized: nil)
    }

    /// `quantized(name, shape)` may give a matrix as group-wise weights, kept quantized at run
    /// time (``WeightOnlyLinear``); nil: the float tensor from `weights`.
    init(config: DecoderConfig, weights: some TensorSource, file: String,
         quantized: ((String, [Int]) throws -> GroupwiseWeights?)?) throws {
        self.config = config
        var used = Set<String>()
        func check(_ key: String, _ shape: [Int]) throws {
            guard let found = weights.shape(of: key) else { throw ModelFileError(file: file, message: "missing tensor \(key)") }
            guard found == shape else { throw ModelFileError(file: file, message: "\(key) has shape \(found), the config implies \(shape)") }
            used.insert(key)
        }
        func take(_ key: String, _ shape: [Int]) throws -> Tensor {
            try check(key, shape)
            return try weights.float32Tensor(named: key)
        }
        func makeLinear(_ prefix: String, _ out: Int, _ input: Int, bias: Bool) throws -> Module {
            let b = bias ? try take(prefix + ".bias", [out]) : nil
            try check(prefix + ".weight", [out, input])
            if let q = try quantized?(prefix + ".weight", [out, input]) {
                let layer = WeightOnlyLinear(weight: q, bias: b?.scalars)
                layer.int8Activations = true  // decode as llama.cpp does: 8-bit activations
                return layer
            }
            return Linear(weight: try take(prefix + ".weight", [out, input]), bias: b)
        }
        let c = config, d = c.hiddenSize, q = c.heads * c.headDim, kv = c.kvHeads * c.headDim
        func norm(_ key: String, _ size: Int) throws -> DecoderNorm {
            DecoderNorm(weight: try take(key, [size]), eps: c.rmsNormEps, offset: c.normOffset)
        }
        var layers: [DecoderLayer] = []
        for i in 0..<c.layers {
            let p = "model.layers.\(i)."
            func linear(_ name: String, _ out: Int, _ input: Int, bias: Bool) throws -> Module {
                try makeLinear(p + name, out, input, bias: bias)
            }
            let attention = AttentionProjections(
                qProj: try linear("self_attn.q_proj", q, d, bias: c.attentionBias), kProj: try linear("self_attn.k_proj", kv, d, bias: c.attentionBias),
                vProj: try linear("self_attn.v_proj", kv, d, bias: c.attentionBias), oProj: try linear("self_attn.o_proj", d, q, bias: false),
                qNorm: c.qkNorm ? try norm(p + "self_attn.q_norm.weight", c.headDim) : nil,
                kNorm: c.qkNorm ? try norm(p + "self_attn.k_norm.weight", c.headDim) : nil)
            let mlp = MLP(gateProj: try linear("mlp.gate_proj", c.intermediateSize, d, bias: false),
                          upProj: try linear("mlp.up_proj", c.intermediateSize, d, bias: false),
                          downProj: try linear("mlp.down_proj", d, c.intermediateSize, bias: false), gelu: c.geluGate)
            layers.append(DecoderLayer(
                selfAttn: attention, mlp: mlp, inputLayernorm: try norm(p + "input_layernorm.weight", d),
                postAttentionLayernorm: try norm(p + "post_attention_layernorm.weight", d),
                preFeedforwardLayernorm: c.sandwichNorms ? try norm(p + "pre_feedforward_layernorm.weight", d) : nil,
                postFeedforwardLayernorm: c.sandwichNorms ? try norm(p + "post_feedforward_layernorm.weight", d) : nil))
        }
        // A quantized tied embedding stays quantized: the table and the output projection share it.
        let tiedQuantized = c.tieWordEmbeddings ? try quantized?("model.embed_tokens.weight", [c.vocabularySize, d]) : nil
        let embedding: Module
        if let tiedQuantized {
            try check("model.embed_tokens.weight", [c.vocabularySize, d])
            embedding = QuantizedEmbedding(weight: tiedQuantized)
        } else {
            embedding = Embedding(weight: try take("model.embed_tokens.weight", [c.vocabularySize, d]))
        }
        model = DecoderBody(embedTokens: embedding, layers: layers, norm: try norm("model.norm.weight", d))
        if c.tieWordEmbeddings {
            lmHead = nil
            used.insert("lm_head.weight")  // some files carry the tied copy; it is the embedding
            tiedHead = Unlisted(tiedQuantized.map {
                let head = WeightOnlyLinear(weight: $0, bias: nil)
                head.int8Activations = true
                return head
            })
        } else {
            lmHead = try makeLinear("lm_head", c.vocabularySize, d, bias: false)
            tiedHead = Unlisted(nil)
        }
        rotaries = (0..<c.layers).map { Rotary(headDim: c.headDim, base: c.ropeTheta(layer: $0), scaling: c.localLayers?[$0] == true ? nil : c.ropeScaling,
                                               layout: c.ropeLayout) }
        super.init()
        eval()  // a pretrained model starts in evaluation mode, as transformers loads it; train() before training
        let extra = Set(weights.tensorNames).subtracting(used).sorted()
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
        return forward(ids, segments: [CachedSegment(cache: cache, rows: ids.count)], lastRows: lastOnly)
    }

    /// One decode step of `ids.count` sequences as one batch: the projections, the MLP and the
    /// output layer run on `[ids.count, hidden]` rows (weights read once for all of them), the
    /// attention of each row over its own cache. Inside ``Tensor/decoding(rows:_:)`` every layer
    /// computes each row as it computes one (quantized layers with 8-bit activations, float layers
    /// with the matrix-vector kernel), so row `i` has the bits of
    /// `logits([ids[i]], cache: caches[i], lastOnly: true)`.
    public func logits(next ids: [Int], caches: [KVCache]) -> Tensor {
        precondition(ids.count == caches.count && !ids.isEmpty, "DecoderModel.logits(next:caches:): one token per cache")
        precondition(Set(caches.map(ObjectIdentifier.init)).count == caches.count, "DecoderModel.logits(next:caches:): the caches must be distinct")
        return Tensor.decoding(rows: ids.count) {
            forward(ids, segments: caches.map { CachedSegment(cache: $0, rows: 1) }, lastRows: false)
        }
    }

    /// Runs `ids` split into `segments` (consecutive rows continuing each segment's cache) and
    /// returns the logits of every row, or of each segment's last row when `lastRows`.
    func forward(_ ids: [Int], segments: [CachedSegment], lastRows: Bool) -> Tensor {
        precondition(ids.allSatisfy { $0 >= 0 && $0 < config.vocabularySize }, "DecoderModel.logits: token ids must be in 0..<\(config.vocabularySize)")
        precondition(segments.reduce(0) { $0 + $1.rows } == ids.count, "DecoderModel.logits: the segments do not cover the tokens")
        for s in segments {
            precondition(s.cache.layers == config.layers && s.cache.kvHeads == config.kvHeads && s.cache.headDim == config.headDim,
                         "DecoderModel.logits: the cache was made for another model")
        }
        return noGrad {
            var x = model.$embedTokens(Tensor(ids, shape: [ids.count]))
            if let scale = config.embeddingScale { x = x * scale }
            for (i, layer) in model.layers.enumerated() {
                x = layer.forward(x, segments: segments, layer: i, rotary: rotaries[i], config: config)
            }
            for s in segments { s.cache.advance(by: s.rows) }
            if lastRows {
                if segments.count == 1 {
                    x = x.sliced(dim: 0, start: ids.count - 1)
                } else {
                    var ends: [Int] = [], end = 0
                    for s in segments { end += s.rows; ends.append(end - 1) }
                    x = Tensor.concatenated(ends.map { x.sliced(dim: 0, start: $0) }, dim: 0)
                }
            }
            let h = model.norm(x)
            let logits = $lmHead.module.map { $0(h) } ?? tiedHead.module.map { $0(h) } ?? h.linear(weight: model.embeddingTable)
            guard let cap = config.finalLogitSoftcap else { return logits }
            return (logits / cap).tanh() * cap
        }
    }

    /// Logits of a whole sequence without keeping a cache.
    public func logits(_ ids: [Int]) -> Tensor {
        logits(ids, cache: makeCache(capacity: ids.count), lastOnly: false)
    }
}

final class DecoderBody: Module {
    /// `Embedding`, or `QuantizedEmbedding` when a GGUF model's tied table stays quantized.
    @Child var embedTokens: Module
    let layers: [DecoderLayer]
    let norm: DecoderNorm

    /// The float32 table (the output projection of a tied model without a quantized head).
    var embeddingTable: Tensor {
        guard let e = embedTokens as? Embedding else { preconditionFailure("the embedding table is quantized; its head is the quantized layer") }
        return e.weight.value
    }

    init(embedTokens: Module, layers: [DecoderLayer], norm: DecoderNorm) {
        (self.embedTokens, self.layers, self.norm) = (embedTokens, layers, norm)
    }
}

/// RMSNorm whose scale is `weight + offset` (Gemma's Hugging Face files store the scale minus 1).
final class DecoderNorm: Module {
    let weight: Parameter
    let eps: Float
    let offset: Float

    init(weight: Tensor, eps: Float, offset: Float) {
        self.weight = Parameter(weight)
        (self.eps, self.offset) = (eps, offset)
    }

    override func forward(_ x: Tensor) -> Tensor {
        RMSNorm.normalize(x, eps: eps) * (offset == 0 ? weight.value : weight.value + offset)
    }

    /// Normalises each `headDim`-long run of `x` (rows of heads) in place.
    func normalizeHeads(_ x: inout [Float], headDim: Int) {
        let w = weight.value.scalars
        x.withUnsafeMutableBufferPointer { p in
            for start in stride(from: 0, to: p.count, by: headDim) {
                var sum: Float = 0
                for i in 0..<headDim { sum += p[start + i] * p[start + i] }
                let r = 1 / (sum / Float(headDim) + eps).squareRoot()
                for i in 0..<headDim { p[start + i] = p[start + i] * r * (w[i] + offset) }
            }
        }
    }
}

final class AttentionProjections: Module {
    // `Linear` or quantized layers, replaceable (LoRA): run them as $qProj(x).
    @Child var qProj: Module
    @Child var kProj: Module
    @Child var vProj: Module
    @Child var oProj: Module
    let qNorm: DecoderNorm?, kNorm: DecoderNorm?
    init(qProj: Module, kProj: Module, vProj: Module, oProj: Module, qNorm: DecoderNorm?, kNorm: DecoderNorm?) {
        (self.qProj, self.kProj, self.vProj, self.oProj, self.qNorm, self.kNorm) = (qProj, kProj, vProj, oProj, qNorm, kNorm)
    }
}

final class MLP: Module {
    @Child var gateProj: Module
    @Child var upProj: Module
    @Child var downProj: Module
    let gelu: Bool
    init(gateProj: Module, upProj: Module, downProj: Module, gelu: Bool) {
        (self.gateProj, self.upProj, self.downProj, self.gelu) = (gateProj, upProj, downProj, gelu)
    }

    override func forward(_ x: Tensor) -> Tensor {
        let gu = projections([gateProj, upProj], x) { [$gateProj(x), $upProj(x)] }
        return $downProj(gelu ? gu[0].gelu(approximateTanh: true) * gu[1] : gu[0].swiglu(gu[1]))
    }
}

final class DecoderLayer: Module {
    let selfAttn: AttentionProjections
    let mlp: MLP
    let inputLayernorm: DecoderNorm
    /// Llama: the norm before the MLP. Gemma: the norm of the attention's output.
    let postAttentionLayernorm: DecoderNorm
    let preFeedforwardLayernorm: DecoderNorm?
    let postFeedforwardLayernorm: DecoderNorm?

    init(selfAttn: AttentionProjections, mlp: MLP, inputLayernorm: DecoderNorm, postAttentionLayernorm: DecoderNorm,
         preFeedforwardLayernorm: DecoderNorm?, postFeedforwardLayernorm: DecoderNorm?) {
        (self.selfAttn, self.mlp, self.inputLayernorm, self.postAttentionLayernorm) = (selfAttn, mlp, inputLayernorm, postAttentionLayernorm)
        (self.preFeedforwardLayernorm, self.postFeedforwardLayernorm) = (preFeedforwardLayernorm, postFeedforwardLayernorm)
    }

    /// `x` `[rows, hidden]` at positions `start...`; writes this layer's keys and values into the cache.
    func forward(_ x: Tensor, start: Int, cache: KVCache, layer: Int, rotary: Rotary, config c: DecoderConfig) -> Tensor {
        precondition(cache.length == start, "DecoderLayer: the cache holds \(cache.length) positions, not \(start)")
        return forward(x, segments: [CachedSegment(cache: cache, rows: x.shape[0])], layer: layer, rotary: rotary, config: c)
    }

    /// `x` `[rows, hidden]`, split into `segments`: each segment's rows continue its cache (at
    /// positions `cache.length...`, the cache advanced by the caller once every layer has run) and
    /// attend to it alone; the projections and the MLP run on all rows at once.
    func forward(_ x: Tensor, segments: [CachedSegment], layer: Int, rotary: Rotary, config c: DecoderConfig) -> Tensor {
        let rows = x.shape[0]
        let h = inputLayernorm(x)
        let p = selfAttn
        let qkv = projections([p.qProj, p.kProj, p.vProj], h) { [p.$qProj(h), p.$kProj(h), p.$vProj(h)] }
        var q = qkv[0].scalars, k = qkv[1].scalars
        let v = qkv[2].scalars
        selfAttn.qNorm?.normalizeHeads(&q, headDim: c.headDim)
        selfAttn.kNorm?.normalizeHeads(&k, headDim: c.headDim)
        let qWidth = c.heads * c.headDim, kvWidth = c.kvHeads * c.headDim
        var attended = [Float](repeating: 0, count: rows * qWidth)
        var row = 0
        for segment in segments {
            let (cache, n, start) = (segment.cache, segment.rows, segment.cache.length)
            q.withUnsafeMutableBufferPointer { rotary.apply($0.baseAddress! + row * qWidth, rows: n, heads: c.heads, start: start) }
            k.withUnsafeMutableBufferPointer { rotary.apply($0.baseAddress! + row * kvWidth, rows: n, heads: c.kvHeads, start: start) }
            k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
                cache.write(layer: layer, keys: kp.baseAddress! + row * kvWidth, values: vp.baseAddress! + row * kvWidth, rows: n)
            } }
            q.withUnsafeBufferPointer { qp in
                attended.withUnsafeMutableBufferPointer { op in
                    CachedAttention.run(q: qp.baseAddress! + row * qWidth, rows: n, heads: c.heads, cache: cache, layer: layer, start: start,
                                        scale: c.queryScale ?? 1 / Float(c.headDim).squareRoot(), window: c.window(layer: layer),
                                        softcap: c.attentionLogitSoftcap, out: op.baseAddress! + row * qWidth)
                }
            }
            row += n
        }
        let a = selfAttn.$oProj(Tensor(attended, shape: [rows, qWidth]))
        if let pre = preFeedforwardLayernorm, let post = postFeedforwardLayernorm {
            let y = x + postAttentionLayernorm(a)
            return y + post(mlp(pre(y)))
        }
        let y = x + a
        return y + mlp(postAttentionLayernorm(y))
    }
}

/// Consecutive rows of a forward pass that belong to one sequence, continuing its cache.
struct CachedSegment {
    let cache: KVCache
    let rows: Int
}

/// Projections of the same input: one fused kernel call when every module is a quantized layer
/// on the decode path (``WeightOnlyLinear/forward(_:sharing:)``), else `separately`.
func projections(_ modules: [Module], _ x: Tensor, separately: () -> [Tensor]) -> [Tensor] {
    let quantized = modules.compactMap { $0 as? WeightOnlyLinear }
    if quantized.count == modules.count, let ys = WeightOnlyLinear.forward(quantized, sharing: x) { return ys }
    return separately()
}

/// A module held outside the module tree (not a child, not in the state dict).
struct Unlisted {
    let module: Module?
    init(_ module: Module?) { self.module = module }
}
