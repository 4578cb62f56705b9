import Foundation
import LatheIO
import LatheNN
import LatheTensor

/// GPT-2 (Radford et al. 2019; Hugging Face `GPT2LMHeadModel`): token plus learned position
/// embeddings, blocks of LayerNorm → causal attention with fused q/k/v → residual, LayerNorm →
/// GELU MLP → residual, a final LayerNorm and the head (tied to the token embedding unless the
/// config says otherwise).
///
/// Parameters are named as Hugging Face's state dict (`transformer.h.0.attn.c_attn.weight`,
/// `transformer.ln_f.bias`, ...), but every matrix is Lathe's ``Linear`` layout `[out, in]`:
/// Hugging Face's `Conv1D` stores `[in, out]`. ``init(config:huggingFaceWeights:file:)`` and
/// ``huggingFaceTensors()`` convert between the two.
public final class GPT2Model: Module, LanguageModel {
    public let config: GPT2Config
    let transformer: GPT2Body
    /// nil when tied to the token embedding (the state dict then has no `lm_head.weight`).
    let lmHead: Linear?

    /// The `Conv1D` weights of a block, by their name after `transformer.h.N.`.
    static let conv1DWeights: Set<String> = ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"]

    /// Builds the model from a Hugging Face GPT-2 state dict as its files store it: names with
    /// or without the `transformer.` prefix (the original `gpt2` file has none), `Conv1D`
    /// weights `[in, out]`. The attention-mask buffers older files carry (`h.N.attn.bias`,
    /// `h.N.attn.masked_bias`) are ignored, as is a tied head's `lm_head.weight`. A missing or
    /// misshapen tensor is an error naming it; other extra tensors are errors too. Tensors are
    /// taken from `weights` one at a time (from a mapped file, without a copy in its dtype).
    public convenience init(config: GPT2Config, huggingFaceWeights weights: some TensorSource, file: String = "weights") throws {
        var names: [String: String] = [:]  // the module's name → the file's
        for key in weights.tensorNames {
            if key == "lm_head.weight" {
                if !config.tieWordEmbeddings { names[key] = key }
                continue
            }
            let name = key.hasPrefix("transformer.") ? key : "transformer." + key
            if name.hasSuffix(".attn.bias") || name.hasSuffix(".attn.masked_bias") { continue }
            guard names.updateValue(key, forKey: name) == nil else {
                throw ModelFileError(file: file, message: "tensor \(name) is in the file both with and without the transformer. prefix")
            }
        }
        try self.init(config: config, state: RenamedTensors(base: weights, names: names), conv1DLayout: true, file: file)
    }

    /// Builds the model from `state`: Hugging Face names with the `transformer.` prefix; the
    /// block matrices `[in, out]` when `conv1DLayout` (Hugging Face files) or `[out, in]`
    /// (GGUF files, Lathe's layout).
    init(config c: GPT2Config, state: some TensorSource, conv1DLayout: Bool, file: String) throws {
        config = c
        var used = Set<String>()
        func take(_ key: String, _ shape: [Int]) throws -> Tensor {
            guard let found = state.shape(of: key) else { throw ModelFileError(file: file, message: "missing tensor \(key)") }
            guard found == shape else { throw ModelFileError(file: file, message: "\(key) has shape \(found), the config implies \(shape)") }
            used.insert(key)
            return try state.float32Tensor(named: key)
        }
        let d = c.hiddenSize
        func norm(_ p: String) throws -> LayerNorm {
            LayerNorm(weight: try take(p + ".weight", [d]), bias: try take(p + ".bias", [d]), eps: c.layerNormEpsilon)
        }
        var blocks: [GPT2Block] = []
        for i in 0..<c.layers {
            let p = "transformer.h.\(i)."
            func linear(_ name: String, _ out: Int, _ input: Int) throws -> Linear {
                let weight = conv1DLayout ? try take(p + name + ".weight", [input, out]).T.contiguous() : try take(p + name + ".weight", [out, input])
                return Linear(weight: weight, bias: try take(p + name + ".bias", [out]))
            }
            blocks.append(GPT2Block(
                ln1: try norm(p + "ln_1"), attn: GPT2Attention(cAttn: try linear("attn.c_attn", 3 * d, d), cProj: try linear("attn.c_proj", d, d)),
                ln2: try norm(p + "ln_2"), mlp: GPT2MLP(cFc: try linear("mlp.c_fc", c.intermediateSize, d), cProj: try linear("mlp.c_proj", d, c.intermediateSize))))
        }
        transformer = GPT2Body(wte: Embedding(weight: try take("transformer.wte.weight", [c.vocabularySize, d])),
                               wpe: Embedding(weight: try take("transformer.wpe.weight", [c.maxPositions, d])), h: blocks,
                               lnF: try norm("transformer.ln_f"))
        lmHead = c.tieWordEmbeddings ? nil : Linear(weight: try take("lm_head.weight", [c.vocabularySize, d]))
        super.init()
        let extra = Set(state.tensorNames).subtracting(used).sorted()
        if !extra.isEmpty {
            throw ModelFileError(file: file, message: "\(extra.count) tensor(s) a GPT-2 does not use: "
                                 + extra.prefix(5).joined(separator: ", ") + (extra.count > 5 ? ", ..." : ""))
        }
    }

    public var vocabularySize: Int { config.vocabularySize }
    public var maxPositions: Int { config.maxPositions }
    public var bosTokenID: Int? { config.bosTokenID }
    public var eosTokenIDs: [Int] { config.eosTokenIDs }

    public func makeCache(capacity: Int) -> KVCache {
        KVCache(layers: config.layers, kvHeads: config.heads, headDim: config.headDim, capacity: capacity)
    }

    /// See ``LanguageModel/logits(_:cache:lastOnly:)``. The positions are learned: the cache's
    /// length plus `ids.count` must not pass ``maxPositions`` (`n_positions`).
    public func logits(_ ids: [Int], cache: KVCache, lastOnly: Bool = false) -> Tensor {
        let c = config, start = cache.length
        precondition(!ids.isEmpty, "GPT2Model.logits: no tokens")
        precondition(ids.allSatisfy { $0 >= 0 && $0 < c.vocabularySize }, "GPT2Model.logits: token ids must be in 0..<\(c.vocabularySize)")
        precondition(cache.layers == c.layers && cache.kvHeads == c.heads && cache.headDim == c.headDim,
                     "GPT2Model.logits: the cache was made for another model")
        precondition(start + ids.count <= c.maxPositions,
                     "GPT2Model.logits: positions \(start)..<\(start + ids.count) pass the model's \(c.maxPositions) learned positions (n_positions)")
        return noGrad {
            let positions = Tensor(Array(start..<(start + ids.count)), shape: [ids.count])
            var x = transformer.wte(Tensor(ids, shape: [ids.count])) + transformer.wpe(positions)
            for (i, block) in transformer.h.enumerated() {
                x = block.forward(x, start: start, cache: cache, layer: i, config: c)
            }
            cache.advance(by: ids.count)
            if lastOnly { x = x.sliced(dim: 0, start: ids.count - 1) }
            return transformer.lnF(x).linear(weight: lmHead?.weight.value ?? transformer.wte.weight.value)
        }
    }

    /// Logits of a whole sequence without keeping a cache.
    public func logits(_ ids: [Int]) -> Tensor {
        logits(ids, cache: makeCache(capacity: ids.count), lastOnly: false)
    }
}

/// A source's tensors under other names (`names`: new name → the source's).
struct RenamedTensors<Base: TensorSource>: TensorSource {
    let base: Base
    let names: [String: String]
    var tensorNames: [String] { Array(names.keys) }
    func shape(of name: String) -> [Int]? { names[name].flatMap { base.shape(of: $0) } }
    func float32Tensor(named name: String) throws -> Tensor {
        guard let source = names[name] else { throw ModelFileError(file: "weights", message: "no tensor \(name)") }
        return try base.float32Tensor(named: source)
    }
}

/// `transformer.*`: the embeddings, the blocks `h.N` and the final norm `ln_f`.
final class GPT2Body: Module {
    let wte: Embedding
    let wpe: Embedding
    let h: [GPT2Block]
    let lnF: LayerNorm

    init(wte: Embedding, wpe: Embedding, h: [GPT2Block], lnF: LayerNorm) {
        (self.wte, self.wpe, self.h, self.lnF) = (wte, wpe, h, lnF)
    }
}

/// `attn`: the fused q/k/v projection `c_attn` (`[3 × n_embd, n_embd]`) and the output `c_proj`.
final class GPT2Attention: Module {
    @Child var cAttn: Linear
    @Child var cProj: Linear
    init(cAttn: Linear, cProj: Linear) { (self.cAttn, self.cProj) = (cAttn, cProj) }
}

/// `mlp`: `c_fc` → GELU → `c_proj`.
final class GPT2MLP: Module {
    @Child var cFc: Linear
    @Child var cProj: Linear
    init(cFc: Linear, cProj: Linear) { (self.cFc, self.cProj) = (cFc, cProj) }
}

/// One pre-norm block, its children named `ln_1`, `attn`, `ln_2`, `mlp` as in Hugging Face's files.
final class GPT2Block: Module {
    let ln1: LayerNorm, attn: GPT2Attention, ln2: LayerNorm, mlp: GPT2MLP

    init(ln1: LayerNorm, attn: GPT2Attention, ln2: LayerNorm, mlp: GPT2MLP) {
        (self.ln1, self.attn, self.ln2, self.mlp) = (ln1, attn, ln2, mlp)
    }

    override var namedChildren: [(String, Module)] { [("ln_1", ln1), ("attn", attn), ("ln_2", ln2), ("mlp", mlp)] }

    /// `x` `[rows, n_embd]` at positions `start...`; writes this layer's keys and values into the cache.
    func forward(_ x: Tensor, start: Int, cache: KVCache, layer: Int, config c: GPT2Config) -> Tensor {
        let rows = x.shape[0], d = c.hiddenSize
        // c_attn's output rows are [q | k | v], each n_embd wide and split into heads in order.
        let qkv = attn.$cAttn(ln1(x)).scalars
        var q = [Float](repeating: 0, count: rows * d), k = q, v = q
        qkv.withUnsafeBufferPointer { s in
            for r in 0..<rows {
                let row = s.baseAddress! + r * 3 * d
                q.withUnsafeMutableBufferPointer { ($0.baseAddress! + r * d).update(from: row, count: d) }
                k.withUnsafeMutableBufferPointer { ($0.baseAddress! + r * d).update(from: row + d, count: d) }
                v.withUnsafeMutableBufferPointer { ($0.baseAddress! + r * d).update(from: row + 2 * d, count: d) }
            }
        }
        k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            cache.write(layer: layer, keys: kp.baseAddress!, values: vp.baseAddress!, rows: rows)
        } }
        var attended = [Float](repeating: 0, count: rows * d)
        q.withUnsafeBufferPointer { qp in
            attended.withUnsafeMutableBufferPointer { op in
                CachedAttention.run(q: qp.baseAddress!, rows: rows, heads: c.heads, cache: cache, layer: layer, start: start,
                                    scale: c.scaleAttentionWeights ? 1 / Float(c.headDim).squareRoot() : 1, window: nil, out: op.baseAddress!)
            }
        }
        let y = x + attn.$cProj(Tensor(attended, shape: [rows, d]))
        return y + mlp.$cProj(mlp.$cFc(ln2(y)).gelu(approximateTanh: c.tanhGELU))
    }
}
