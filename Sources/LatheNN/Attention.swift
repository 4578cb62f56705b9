import Foundation
import LatheTensor

/// Rotary position embedding tables (Su et al. 2021, "RoFormer"), "rotate half" layout as
/// in GPT-NeoX and Llama: `x' = x cos + rotate_half(x) sin`, with frequencies
/// `base^(-2i/d)` repeated over both halves.
public struct RotaryEmbedding {
    public let headDim: Int
    public let base: Float

    public init(headDim: Int, base: Float = 10_000) {
        precondition(headDim % 2 == 0, "RotaryEmbedding: head dim \(headDim) must be even")
        self.headDim = headDim
        self.base = base
    }

    /// cos and sin tables, each `[length, headDim]`, for positions `offset..<offset+length`.
    public func tables(length: Int, offset: Int = 0) -> (cos: Tensor, sin: Tensor) {
        let half = headDim / 2
        var c = [Float](repeating: 0, count: length * headDim), s = c
        for t in 0..<length {
            for i in 0..<half {
                let invFreq = 1 / Foundation.pow(Double(base), Double(2 * i) / Double(headDim))
                let angle = Double(Float(Double(t + offset)) * Float(invFreq))
                let (cv, sv) = (Float(Foundation.cos(angle)), Float(Foundation.sin(angle)))
                c[t * headDim + i] = cv; c[t * headDim + half + i] = cv
                s[t * headDim + i] = sv; s[t * headDim + half + i] = sv
            }
        }
        return (Tensor(c, shape: [length, headDim]), Tensor(s, shape: [length, headDim]))
    }

    /// Rotates `x` of shape `[..., length, headDim]`.
    public func apply(_ x: Tensor, cos: Tensor, sin: Tensor) -> Tensor {
        let half = headDim / 2
        let x1 = x.sliced(dim: -1, end: half), x2 = x.sliced(dim: -1, start: half)
        let rotated = Tensor.concatenated([-x2, x1], dim: -1)
        return x * cos + rotated * sin
    }
}

/// Causal multi-head self-attention with an optional rotary embedding.
///
/// `qkv` projects `[B, T, d]` to queries, keys and values (`[3d, d]`, PyTorch layout), heads
/// attend with `softmax(q k^T / sqrt(d/h) + causal mask) v`, and `proj` mixes the heads.
public final class CausalSelfAttention: Module {
    @Child public var qkv: Linear
    @Child public var proj: Linear
    public let heads: Int
    public let rotary: RotaryEmbedding?

    public init(dModel: Int, heads: Int, rope: Bool = true, generator: inout RandomGenerator) {
        precondition(dModel % heads == 0, "CausalSelfAttention: d_model \(dModel) not divisible by \(heads) heads")
        qkv = Linear(dModel, 3 * dModel, generator: &generator)
        proj = Linear(dModel, dModel, generator: &generator)
        self.heads = heads
        rotary = rope ? RotaryEmbedding(headDim: dModel / heads) : nil
    }

    /// The fused kernel (``Tensor/causalSelfAttention(heads:cos:sin:scale:)``) on the packed
    /// projections, then `proj`.
    public override func forward(_ x: Tensor) -> Tensor {
        precondition(x.rank == 3, "CausalSelfAttention: expected [B, T, d], got \(x.shape)")
        let (_, c, s) = constants(length: x.shape[1])
        return $proj($qkv(x).causalSelfAttention(heads: heads, cos: c, sin: s))
    }

    /// The same computation from primitive ops (split, permute, rotate, matmul, mask,
    /// softmax): the reference for the fused kernel.
    package func forwardComposed(_ x: Tensor) -> Tensor {
        precondition(x.rank == 3, "CausalSelfAttention: expected [B, T, d], got \(x.shape)")
        let (b, t, d) = (x.shape[0], x.shape[1], x.shape[2])
        let hd = d / heads
        let parts = $qkv(x).split(size: d, dim: -1)
        let h = heads
        func splitHeads(_ y: Tensor) -> Tensor { y.reshaped([b, t, h, hd]).permuted([0, 2, 1, 3]) }
        var q = splitHeads(parts[0]), k = splitHeads(parts[1])
        let v = splitHeads(parts[2])
        let (mask, c, s) = constants(length: t)
        if let rotary, let c, let s {
            q = rotary.apply(q, cos: c, sin: s)
            k = rotary.apply(k, cos: c, sin: s)
        }
        let scores = q.matmul(k.transposed(-1, -2)) * (1 / Float(hd).squareRoot())
        let attention = (scores + mask).softmax(dim: -1)
        let y = attention.matmul(v).permuted([0, 2, 1, 3]).reshaped([b, t, d])
        return $proj(y)
    }

    /// The causal mask and rotary tables for a sequence length, computed once per length.
    private var cached: (length: Int, mask: Tensor, cos: Tensor?, sin: Tensor?)?

    private func constants(length t: Int) -> (Tensor, Tensor?, Tensor?) {
        if let cached, cached.length == t { return (cached.mask, cached.cos, cached.sin) }
        let tables = rotary?.tables(length: t)
        let entry = (length: t, mask: Self.causalMask(t), cos: tables?.cos, sin: tables?.sin)
        cached = entry
        return (entry.mask, entry.cos, entry.sin)
    }

    /// `[T, T]`: 0 on and below the diagonal, -infinity above.
    static func causalMask(_ t: Int) -> Tensor {
        var m = [Float](repeating: 0, count: t * t)
        for i in 0..<t { for j in (i + 1)..<Swift.max(t, i + 1) { m[i * t + j] = -.infinity } }
        return Tensor(m, shape: [t, t])
    }
}

/// The feed-forward part of a transformer block: `proj(act(fc(x)))`, hidden `4d` by default.
public final class FeedForward: Module {
    @Child public var fc: Linear
    @Child public var proj: Linear
    public let activation: Activation.Kind

    public init(dModel: Int, hidden: Int? = nil, activation: Activation.Kind = .gelu, generator: inout RandomGenerator) {
        fc = Linear(dModel, hidden ?? 4 * dModel, generator: &generator)
        proj = Linear(hidden ?? 4 * dModel, dModel, generator: &generator)
        self.activation = activation
    }

    public override func forward(_ x: Tensor) -> Tensor { $proj(activation.apply($fc(x))) }
}

/// A pre-norm transformer block: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
///
/// With ``checkpointing`` on, training runs the block without keeping its activations and
/// recomputes them in the backward pass.
public final class TransformerBlock: Module {
    public let ln1: LayerNorm
    public let attn: CausalSelfAttention
    public let ln2: LayerNorm
    public let mlp: FeedForward
    public var checkpointing = false

    public init(dModel: Int, heads: Int, rope: Bool = true, generator: inout RandomGenerator) {
        ln1 = LayerNorm(dModel)
        attn = CausalSelfAttention(dModel: dModel, heads: heads, rope: rope, generator: &generator)
        ln2 = LayerNorm(dModel)
        mlp = FeedForward(dModel: dModel, generator: &generator)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        if checkpointing && isTraining && GradMode.isEnabled {
            return checkpoint([x]) { [unowned self] in self.body($0[0]) }
        }
        return body(x)
    }

    private func body(_ x: Tensor) -> Tensor {
        let h = x + attn(ln1(x))
        return h + mlp(ln2(h))
    }
}
