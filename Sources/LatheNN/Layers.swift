import Foundation
import LatheTensor

/// Seeds for layer initialisation; each layer draws from its own stream so models build the
/// same way whatever else happened before.
public struct InitContext {
    public var generator: RandomGenerator
    public init(seed: UInt64 = 0) { generator = RandomGenerator(seed: seed) }
}

/// `y = x W^T + b` (PyTorch's `nn.Linear`), weight `[out, in]`.
///
/// Initialised like PyTorch: weight and bias uniform in `±1/sqrt(in)`.
public final class Linear: Module {
    public let weight: Parameter
    public let bias: Parameter?

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, generator: inout RandomGenerator) {
        let bound = 1 / Float(inFeatures).squareRoot()
        weight = Parameter(Tensor.uniform([outFeatures, inFeatures], low: -bound, high: bound, generator: &generator))
        self.bias = bias ? Parameter(Tensor.uniform([outFeatures], low: -bound, high: bound, generator: &generator)) : nil
        super.init()
    }

    /// A layer holding `weight` `[out, in]` (and `bias` `[out]`) as they are: no random draws.
    public init(weight: Tensor, bias: Tensor? = nil) {
        precondition(weight.rank == 2, "Linear(weight:): expected [out, in], got \(weight.shape)")
        precondition(bias == nil || bias!.shape == [weight.shape[0]], "Linear(weight:bias:): bias \(bias!.shape) does not match \(weight.shape)")
        self.weight = Parameter(weight)
        self.bias = bias.map { Parameter($0) }
        super.init()
    }

    public var inFeatures: Int { weight.value.shape[1] }
    public var outFeatures: Int { weight.value.shape[0] }

    /// Whether the training forward keeps the transpose of a frozen weight packed for the GEMM
    /// kernel (``PackedGEMMOperand``: as much memory again as the weight) instead of packing it
    /// for every product. Adapter training sets it on the frozen layers it wraps (`LoRALinear`):
    /// at 128 rows the packing was 13-17% of a LoRA step. The copy is made when first used in
    /// training mode with gradients recorded and the weight frozen, made again when ``weight``'s
    /// value is replaced, and dropped when this is switched off or the weight trains.
    public var cachesPackedWeight = false {
        didSet { if !cachesPackedWeight { packedWeight = nil } }
    }
    private var packedWeight: (source: Tensor, packed: PackedGEMMOperand)?

    public override func forward(_ x: Tensor) -> Tensor {
        precondition(x.shape.last == inFeatures, "Linear: input \(x.shape) does not end in \(inFeatures) features")
        // Fold batch dims into one GEMM that starts from the bias.
        let flat = x.rank == 2 ? x : x.reshaped([-1, inFeatures])
        let y = flat.linear(weight: weight.value, bias: bias?.value, packedWeight: cachedPackedWeight())
        return x.rank == 2 ? y : y.reshaped(Array(x.shape.dropLast()) + [outFeatures])
    }

    /// The packed weight when ``cachesPackedWeight`` applies now, else nil.
    func cachedPackedWeight() -> PackedGEMMOperand? {
        let w = weight.value
        // A trained weight drops the copy (whose reference would also make the optimiser's
        // in-place updates copy the weight).
        if w.requiresGrad { packedWeight = nil }
        guard cachesPackedWeight, isTraining, GradMode.isEnabled, !w.requiresGrad, w.dtype == .float32 else { return nil }
        if let c = packedWeight, c.source.isSameView(as: w) { return c.packed }
        let p = PackedGEMMOperand(transposedOf: w)
        packedWeight = (w, p)
        return p
    }
}

/// 2-D convolution layer (PyTorch's `nn.Conv2d`), weight `[out, in/groups, kh, kw]`.
public final class Conv2d: Module {
    public let weight: Parameter
    public let bias: Parameter?
    public let stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int), groups: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1, bias: Bool = true,
                generator: inout RandomGenerator) {
        precondition(inChannels % groups == 0 && outChannels % groups == 0, "Conv2d: channels \(inChannels)->\(outChannels) not divisible by groups \(groups)")
        let fanIn = inChannels / groups * kernelSize.0 * kernelSize.1
        let bound = 1 / Float(fanIn).squareRoot()
        weight = Parameter(Tensor.uniform([outChannels, inChannels / groups, kernelSize.0, kernelSize.1], low: -bound, high: bound,
                                          generator: &generator))
        self.bias = bias ? Parameter(Tensor.uniform([outChannels], low: -bound, high: bound, generator: &generator)) : nil
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        super.init()
    }

    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            dilation: Int = 1, groups: Int = 1, bias: Bool = true, generator: inout RandomGenerator) {
        self.init(inChannels, outChannels, kernelSize: (kernelSize, kernelSize), stride: (stride, stride),
                  padding: (padding, padding), dilation: (dilation, dilation), groups: groups, bias: bias, generator: &generator)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        x.conv2d(weight: weight.value, bias: bias?.value, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }
}

/// Max pooling (PyTorch's `nn.MaxPool2d`).
public final class MaxPool2d: Module {
    public let kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int)
    public init(_ kernel: Int, stride: Int? = nil, padding: Int = 0) {
        self.kernel = (kernel, kernel)
        self.stride = (stride ?? kernel, stride ?? kernel)
        self.padding = (padding, padding)
    }
    public override func forward(_ x: Tensor) -> Tensor { x.maxPool2d(kernel: kernel, stride: stride, padding: padding) }
}

/// Average pooling (PyTorch's `nn.AvgPool2d`).
public final class AvgPool2d: Module {
    public let kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int), countIncludePad: Bool
    public init(_ kernel: Int, stride: Int? = nil, padding: Int = 0, countIncludePad: Bool = true) {
        self.kernel = (kernel, kernel)
        self.stride = (stride ?? kernel, stride ?? kernel)
        self.padding = (padding, padding)
        self.countIncludePad = countIncludePad
    }
    public override func forward(_ x: Tensor) -> Tensor {
        x.avgPool2d(kernel: kernel, stride: stride, padding: padding, countIncludePad: countIncludePad)
    }
}

/// Average pooling to a fixed output size (PyTorch's `nn.AdaptiveAvgPool2d`).
public final class AdaptiveAvgPool2d: Module {
    public let outputSize: (Int, Int)
    public init(_ outputSize: (Int, Int)) { self.outputSize = outputSize }
    public override func forward(_ x: Tensor) -> Tensor { x.adaptiveAvgPool2d(outputSize: outputSize) }
}

/// Flattens dims from `startDim` on (PyTorch's `nn.Flatten`).
public final class Flatten: Module {
    public let startDim: Int
    public init(startDim: Int = 1) { self.startDim = startDim }
    public override func forward(_ x: Tensor) -> Tensor { x.flattened(from: startDim) }
}

/// An elementwise activation as a layer.
public final class Activation: Module {
    public enum Kind: String, Sendable, CaseIterable { case relu, gelu, geluTanh = "gelu_tanh", silu, tanh, sigmoid, identity }
    public let kind: Kind
    public init(_ kind: Kind) { self.kind = kind }
    public override func forward(_ x: Tensor) -> Tensor { kind.apply(x) }
}

extension Activation.Kind {
    public func apply(_ x: Tensor) -> Tensor {
        switch self {
        case .relu: x.relu()
        case .gelu: x.gelu()
        case .geluTanh: x.gelu(approximateTanh: true)
        case .silu: x.silu()
        case .tanh: x.tanh()
        case .sigmoid: x.sigmoid()
        case .identity: x
        }
    }
}

public func ReLU() -> Activation { Activation(.relu) }
public func GELU() -> Activation { Activation(.gelu) }

/// Randomly zeroes elements with probability `p` in training, scaling the rest by
/// `1/(1-p)`; the identity in evaluation.
///
/// Each call draws from the layer's own counter-based ``generator``, whose offset is saved
/// in checkpoints so that a resumed run draws the same masks.
public final class Dropout: Module {
    public let p: Float
    public var generator: RandomGenerator
    public init(_ p: Float, seed: UInt64 = 0x5EED) {
        precondition(p >= 0 && p < 1, "Dropout: p must be in [0, 1), got \(p)")
        self.p = p
        generator = RandomGenerator(seed: seed)
    }
    public override func forward(_ x: Tensor) -> Tensor {
        guard isTraining, p > 0 else { return x }
        let mask = Tensor.bernoulli(x.shape, p: 1 - p, generator: &generator) * (1 / (1 - p))
        return x * mask
    }
}

/// Modules applied in order; children are named `0`, `1`, ... as in PyTorch.
public final class Sequential: Module {
    public private(set) var layers: [Module]
    public init(_ layers: [Module]) { self.layers = layers }
    public convenience init(_ layers: Module...) { self.init(layers) }
    public override var namedChildren: [(String, Module)] { layers.enumerated().map { ("\($0.offset)", $0.element) } }
    public override func replaceChild(named name: String, with module: Module, path: String) throws(ModuleSurgeryError) {
        guard let i = Int(name), layers.indices.contains(i) else { throw ModuleSurgeryError(path: path, message: "Sequential has no layer \(name)") }
        layers[i] = module
    }
    public override func forward(_ x: Tensor) -> Tensor { layers.reduce(x) { $1($0) } }
}

/// Passes its input through.
public final class Identity: Module {
    public override init() {}
    public override func forward(_ x: Tensor) -> Tensor { x }
}

/// A lookup table of vectors (PyTorch's `nn.Embedding`), weight `[count, dim]`, initialised N(0, 1).
public final class Embedding: Module {
    public let weight: Parameter
    public init(_ count: Int, _ dim: Int, generator: inout RandomGenerator) {
        weight = Parameter(Tensor.normal([count, dim], generator: &generator))
    }
    /// A table holding `weight` `[count, dim]` as it is: no random draws.
    public init(weight: Tensor) {
        precondition(weight.rank == 2, "Embedding(weight:): expected [count, dim], got \(weight.shape)")
        self.weight = Parameter(weight)
    }
    /// Ids of any shape (int64) to vectors of shape `ids.shape + [dim]`.
    public override func forward(_ ids: Tensor) -> Tensor { weight.value.embedding(ids) }
}
