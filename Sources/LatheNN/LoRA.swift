import Foundation
import LatheTensor

/// A layer that computes `x W^T (+ b)` and can show its weight as a float matrix: what a
/// ``LoRALinear`` can wrap (DoRA needs the weight for its row norms). `Linear` and the
/// weight-only quantized layer of LatheCompress (QLoRA) conform.
public protocol LinearLayer: Module {
    var inFeatures: Int { get }
    var outFeatures: Int { get }
    /// The weight `[out, in]` as float32 (dequantised for a quantized layer), without a gradient.
    var denseWeight: Tensor { get }
    /// The bias `[out]`, if any, without a gradient.
    var denseBias: Tensor? { get }
}

extension Linear: LinearLayer {
    public var denseWeight: Tensor { weight.value.detached() }
    public var denseBias: Tensor? { bias?.value.detached() }
}

/// A linear layer with a low-rank adapter (LoRA, Hu et al. 2021, https://arxiv.org/abs/2106.09685):
/// `y = base(x) + scaling · B A dropout(x)`, with A `[r, in]` and B `[out, r]` trained and the
/// base frozen.
///
/// With a magnitude vector `m` `[out]` it is DoRA (Liu et al. 2024, https://arxiv.org/abs/2402.09353)
/// as PEFT computes it: with `n = ||W + scaling · B A||` per output row, treated as a constant
/// (no gradient, paper §4.3),
/// `y = base(x) + (m / n - 1) ⊙ W x' + (m / n) ⊙ scaling · B A x'`, where `x' = dropout(x)` in training
/// with dropout and `W x' = base(x) - b` otherwise: without dropout, `(m / n) ⊙ (W + scaling · B A) x + b`.
///
/// State keys follow PEFT: `base_layer.weight`, `lora_A.weight`, `lora_B.weight`,
/// `lora_magnitude_vector`.
public final class LoRALinear: Module {
    /// The wrapped layer (frozen by ``Module/addLoRA(_:outputLayer:initialization:)``).
    @Child public var base: Module
    @Child public var loraA: Linear
    @Child public var loraB: Linear
    /// DoRA's magnitude `m` `[out]`; nil for LoRA.
    public let loraMagnitudeVector: Parameter?
    public let scaling: Float
    let loraDropout: Dropout?

    /// How a new adapter's weights start.
    public enum Initialization: Sendable {
        /// PEFT's default: A Kaiming-uniform with `a = sqrt(5)` (uniform in `±1/sqrt(in)`), B zero,
        /// so the adapter starts as the identity.
        case kaimingUniform(seed: UInt64)
        /// A and B zero (weights to be loaded).
        case zeros
    }

    /// Wraps `base` with an adapter of rank `rank`.
    /// - Parameters:
    ///   - dora: add DoRA's magnitude vector, initialised to the row norms of `W + scaling · B A`.
    ///   - dropout: dropout probability on the adapter's input (training only).
    public init(base: any LinearLayer, rank: Int, scaling: Float, dora: Bool = false, dropout: Float = 0,
                initialization: Initialization = .kaimingUniform(seed: 0)) {
        precondition(rank >= 1, "LoRALinear: rank must be positive, got \(rank)")
        let (input, output) = (base.inFeatures, base.outFeatures)
        let a: Tensor
        switch initialization {
        case .kaimingUniform(let seed):
            var g = RandomGenerator(seed: seed)
            a = Init.kaimingUniform([rank, input], a: Float(5).squareRoot(), generator: &g)
        case .zeros: a = Tensor.zeros([rank, input])
        }
        let b = Tensor.zeros([output, rank])
        _base = Child(wrappedValue: base, key: "base_layer")
        _loraA = Child(wrappedValue: Linear(weight: a), key: "lora_A")
        _loraB = Child(wrappedValue: Linear(weight: b), key: "lora_B")
        self.scaling = scaling
        loraDropout = dropout > 0 ? Dropout(dropout) : nil
        loraMagnitudeVector = dora ? Parameter(LoRALinear.rowNorms(base.denseWeight, a: a, b: b, scaling: scaling)) : nil
        super.init()
        (base as? Linear)?.cachesPackedWeight = true
    }

    public var rank: Int { loraA.weight.value.shape[0] }
    var linearBase: LinearLayer { $base.module as! LinearLayer }

    /// `||W + scaling · B A||` of each output row, `[out]`, without a gradient.
    static func rowNorms(_ w: Tensor, a: Tensor, b: Tensor, scaling: Float) -> Tensor {
        noGrad { (w + b.detached().matmul(a.detached()) * scaling).square().sum(dim: 1).sqrt() }
    }

    /// The weight update `scaling · B A` `[out, in]` (the matrix a fuse adds for LoRA).
    public var deltaWeight: Tensor {
        noGrad { loraB.weight.value.matmul(loraA.weight.value) * scaling }
    }

    /// The last row norms computed in evaluation mode, with the A and B they came from: decoding
    /// one token at a time would otherwise form `B A` (`out · in · r` multiply-adds) per token.
    private var normCache: (a: [Float], b: [Float], norm: Tensor)?

    /// The row norms of `W + scaling · B A`; the base's float weight is asked for only when they
    /// are computed (a quantized base dequantises it).
    private func weightNorm(_ base: LinearLayer) -> Tensor {
        let (a, b) = (loraA.weight.value, loraB.weight.value)
        guard !isTraining else {
            normCache = nil
            return LoRALinear.rowNorms(base.denseWeight, a: a, b: b, scaling: scaling)
        }
        let (av, bv) = (a.scalars, b.scalars)
        if let c = normCache, c.a == av, c.b == bv { return c.norm }
        let norm = LoRALinear.rowNorms(base.denseWeight, a: a, b: b, scaling: scaling)
        normCache = (av, bv, norm)
        return norm
    }

    public override func forward(_ x: Tensor) -> Tensor {
        if loraMagnitudeVector == nil, loraDropout == nil, isTraining, GradMode.isEnabled,
           let base = $base.module as? Linear, base.weight.value.dtype == .float32, loraA.bias == nil, loraB.bias == nil {
            // Training: the base product and the adapter as one op whose backward sums the two
            // input gradients in one buffer (Tensor.loraLinear).
            let flat = x.rank == 2 ? x : x.reshaped([-1, base.inFeatures])
            let y = flat.loraLinear(weight: base.weight.value, bias: base.bias?.value, packedWeight: base.cachedPackedWeight(),
                                    a: loraA.weight.value, b: loraB.weight.value, scale: scaling)
            return x.rank == 2 ? y : y.reshaped(Array(x.shape.dropLast()) + [base.outFeatures])
        }
        let y = $base(x)
        let dropped = loraDropout.map { $0(x) } ?? x
        let a = $loraA(dropped)
        guard let m = loraMagnitudeVector else {
            guard loraB.bias == nil, let n = y.shape.last else { return y + $loraB(a) * scaling }
            // y + scaling · a Bᵀ as one GEMM accumulating into y's values.
            let sum = (y.rank == 2 ? y : y.reshaped([-1, n]))
                .addingLinear(a.rank == 2 ? a : a.reshaped([-1, rank]), weight: loraB.weight.value, scale: scaling)
            return y.rank == 2 ? sum : sum.reshaped(y.shape)
        }
        let base = linearBase
        let norm = weightNorm(base)
        let magnitudeScale = m.value / norm
        if let d = loraDropout, d.isTraining {
            // PEFT recomputes W x' on the dropped input (no bias):
            // y + (m/‖·‖ - 1) W x' + (m/‖·‖) scaling B A x'.
            let flat = dropped.rank == 2 ? dropped : dropped.reshaped([-1, base.inFeatures])
            let r = flat.linear(weight: base.denseWeight)
            let baseResult = dropped.rank == 2 ? r : r.reshaped(Array(dropped.shape.dropLast()) + [base.outFeatures])
            return y + ((magnitudeScale - 1) * baseResult + magnitudeScale * $loraB(a) * scaling)
        }
        // Without dropout the input is the same, and PEFT's y + (s - 1)(y - b) + s · scaling B A x
        // (s = m/‖·‖, b the bias) is s ⊙ (y - b + scaling B A x) + b: one GEMM accumulating into
        // y - b, and one product that keeps a single [rows, out] tensor for the backward (PEFT's
        // form keeps two, W x and B A x, per adapted layer).
        guard loraB.bias == nil, let n = y.shape.last else {
            return y + ((magnitudeScale - 1) * (base.denseBias.map { y - $0 } ?? y) + magnitudeScale * $loraB(a) * scaling)
        }
        let unbiased = base.denseBias.map { y - $0 } ?? y
        let z = (unbiased.rank == 2 ? unbiased : unbiased.reshaped([-1, n]))
            .addingLinear(a.rank == 2 ? a : a.reshaped([-1, rank]), weight: loraB.weight.value, scale: scaling)
        let scaled = z * magnitudeScale
        let out = base.denseBias.map { scaled + $0 } ?? scaled
        return y.rank == 2 ? out : out.reshaped(y.shape)
    }
}

extension Module {
    /// Model surgery: wraps every linear layer that `config` targets in a ``LoRALinear`` (with
    /// the rank, alpha and scaling the config gives its path), after freezing every parameter of
    /// the model, so that only the adapters train.
    ///
    /// - Parameters:
    ///   - outputLayer: the path of the output projection, which ``LoRAConfig/Targets/allLinear``
    ///     leaves alone (`lm_head` in Hugging Face decoders).
    ///   - initialization: ``LoRALinear/Initialization/kaimingUniform(seed:)`` draws each
    ///     adapter's A from the seed mixed with its path, so adapters do not depend on the order.
    /// - Returns: the adapted paths, in module order.
    /// - Throws: ``LoRAError`` when the model already has adapters, when nothing matches (naming
    ///   some of the linear layers there are), or when the config is invalid.
    @discardableResult
    public func addLoRA(_ config: LoRAConfig, outputLayer: String? = "lm_head",
                        initialization: LoRALinear.Initialization = .kaimingUniform(seed: 0)) throws(LoRAError) -> [String] {
        try config.validate()
        let modules = namedModules
        if let existing = modules.first(where: { $0.1 is LoRALinear }) {
            throw LoRAError("the model already has a LoRA adapter at '\(existing.0)'; load adapters onto a fresh model")
        }
        let linear = modules.filter { !$0.0.isEmpty && $0.1 is LinearLayer }
        let chosen = linear.filter { config.adapts($0.0, isOutput: $0.0 == outputLayer) }
        // A targeted layer that no adapter can wrap (an int8 layer with quantized activations): an error, not a silent skip.
        if config.targets != .allLinear, let other = modules.first(where: { !$0.0.isEmpty && !($0.1 is LinearLayer)
                && $0.1.namedChildren.isEmpty && config.adapts($0.0, isOutput: $0.0 == outputLayer) }) {
            throw LoRAError("'\(other.0)' is a \(type(of: other.1)), which an adapter cannot wrap (adapters wrap float linear "
                            + "layers and weight-only quantized ones, as GGUF models load)")
        }
        guard !chosen.isEmpty else {
            let names = Set(linear.map { $0.0.split(separator: ".").last.map(String.init) ?? $0.0 }).sorted()
            throw LoRAError("target_modules matches none of the model's \(linear.count) linear layers (their names: \(names.prefix(12).joined(separator: ", ")))")
        }
        freeze()
        for (path, module) in chosen {
            let init_: LoRALinear.Initialization
            switch initialization {
            case .zeros: init_ = .zeros
            case .kaimingUniform(let seed):
                var h: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a of the path, mixed into the seed
                for byte in path.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
                init_ = .kaimingUniform(seed: seed ^ h)
            }
            let wrapped = LoRALinear(base: module as! LinearLayer, rank: config.rank(for: path), scaling: config.scaling(for: path),
                                     dora: config.useDoRA, dropout: config.dropout, initialization: init_)
            wrapped.train(module.isTraining)  // the mode of the layer it replaces
            do { try setModule(wrapped, at: path) } catch { throw LoRAError("\(error)") }
        }
        return chosen.map(\.0)
    }

    /// Every ``LoRALinear`` in the tree with its path.
    public var loraLayers: [(String, LoRALinear)] {
        namedModules.compactMap { p, m in (m as? LoRALinear).map { (p, $0) } }
    }

    /// The adapters' trainable tensors by state-dict key (`<path>.lora_A.weight`, ...).
    public var adapterState: [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (path, layer) in loraLayers {
            out[path + ".lora_A.weight"] = layer.loraA.weight.value.detached()
            out[path + ".lora_B.weight"] = layer.loraB.weight.value.detached()
            if let m = layer.loraMagnitudeVector { out[path + ".lora_magnitude_vector"] = m.value.detached() }
        }
        return out
    }
}
