import LatheTensor

/// Batch normalisation over `[N, C]`, `[N, C, L]` (1d) or `[N, C, H, W]` (2d), as PyTorch's
/// `BatchNorm1d`/`BatchNorm2d`:
/// `y = (x - mean) / sqrt(var + eps) * weight + bias`.
///
/// In training, mean and (biased) variance come from the batch, and the running estimates
/// move by `momentum` (the running variance uses the unbiased batch variance); in
/// evaluation the running estimates are used.
public final class BatchNorm: Module {
    public let weight: Parameter?
    public let bias: Parameter?
    public let runningMean: Buffer
    public let runningVar: Buffer
    public let numBatchesTracked: Buffer
    public let eps: Float, momentum: Float

    public init(_ features: Int, eps: Float = 1e-5, momentum: Float = 0.1, affine: Bool = true) {
        weight = affine ? Parameter(Tensor.ones([features])) : nil
        bias = affine ? Parameter(Tensor.zeros([features])) : nil
        runningMean = Buffer(Tensor.zeros([features]))
        runningVar = Buffer(Tensor.ones([features]))
        numBatchesTracked = Buffer(Tensor.zeros([], dtype: .int64))
        self.eps = eps
        self.momentum = momentum
    }

    public var features: Int { runningMean.value.count }

    public override func forward(_ x: Tensor) -> Tensor {
        precondition(x.rank >= 2 && x.shape[1] == features, "BatchNorm: input \(x.shape) does not have \(features) channels in dim 1")
        var statShape = [Int](repeating: 1, count: x.rank)
        statShape[1] = features
        if isTraining {
            let n = x.count / features
            precondition(n > 1, "BatchNorm: training needs more than one value per channel, got input \(x.shape)")
            let (y, mean, variance) = x.batchNormTraining(weight: weight?.value, bias: bias?.value, eps: eps)
            noGrad {
                let m = momentum
                runningMean.value = runningMean.value * (1 - m) + mean * m
                runningVar.value = runningVar.value * (1 - m) + variance * (Float(n) / Float(n - 1) * m)
                numBatchesTracked.value = Tensor([numBatchesTracked.value.intScalars[0] + 1], shape: [], dtype: .int64)
            }
            return y
        }
        let normalized = (x - runningMean.value.reshaped(statShape)) * (runningVar.value.reshaped(statShape) + eps).rsqrt()
        guard let weight, let bias else { return normalized }
        return normalized * weight.value.reshaped(statShape) + bias.value.reshaped(statShape)
    }
}

/// Layer normalisation over the last dims (PyTorch's `nn.LayerNorm`):
/// `y = (x - mean) / sqrt(var + eps) * weight + bias`, biased variance.
public final class LayerNorm: Module {
    public let weight: Parameter?
    public let bias: Parameter?
    public let normalizedShape: [Int]
    public let eps: Float

    public init(_ normalizedShape: [Int], eps: Float = 1e-5, elementwiseAffine: Bool = true, bias: Bool = true) {
        self.normalizedShape = normalizedShape
        self.eps = eps
        weight = elementwiseAffine ? Parameter(Tensor.ones(normalizedShape)) : nil
        self.bias = elementwiseAffine && bias ? Parameter(Tensor.zeros(normalizedShape)) : nil
    }

    public convenience init(_ features: Int, eps: Float = 1e-5) { self.init([features], eps: eps) }

    /// A norm over the last dim with the given scale and shift `[features]`.
    public init(weight: Tensor, bias: Tensor?, eps: Float = 1e-5) {
        precondition(weight.rank == 1 && (bias == nil || bias!.shape == weight.shape), "LayerNorm(weight:bias:): expected [features]")
        normalizedShape = weight.shape
        self.eps = eps
        self.weight = Parameter(weight)
        self.bias = bias.map { Parameter($0) }
    }

    public override func forward(_ x: Tensor) -> Tensor {
        precondition(Array(x.shape.suffix(normalizedShape.count)) == normalizedShape,
                     "LayerNorm: input \(x.shape) does not end in \(normalizedShape)")
        if normalizedShape.count == 1 { return x.layerNorm(weight: weight?.value, bias: bias?.value, eps: eps) }
        var y = Self.normalize(x, lastDims: normalizedShape.count, eps: eps)
        if let weight { y = y * weight.value }
        if let bias { y = y + bias.value }
        return y
    }

    /// `(x - mean) / sqrt(var + eps)` over the last `lastDims` dims (biased variance).
    public static func normalize(_ x: Tensor, lastDims: Int, eps: Float) -> Tensor {
        let dims = Array((x.rank - lastDims)..<x.rank)
        let centered = x - x.mean(dims: dims, keepDims: true)
        return centered * (centered.square().mean(dims: dims, keepDims: true) + eps).rsqrt()
    }
}

/// Root-mean-square normalisation (Zhang & Sennrich 2019; PyTorch's `nn.RMSNorm`):
/// `y = x / sqrt(mean(x^2) + eps) * weight` over the last dim.
public final class RMSNorm: Module {
    public let weight: Parameter
    public let eps: Float

    public init(_ features: Int, eps: Float = 1e-6) {
        weight = Parameter(Tensor.ones([features]))
        self.eps = eps
    }

    /// A norm with the given scale `[features]`.
    public init(weight: Tensor, eps: Float = 1e-6) {
        precondition(weight.rank == 1, "RMSNorm(weight:): expected [features], got \(weight.shape)")
        self.weight = Parameter(weight)
        self.eps = eps
    }

    public override func forward(_ x: Tensor) -> Tensor {
        Self.normalize(x, eps: eps) * weight.value
    }

    /// `x / sqrt(mean(x^2) + eps)` over the last dim.
    public static func normalize(_ x: Tensor, eps: Float) -> Tensor {
        x * (x.square().mean(dims: [-1], keepDims: true) + eps).rsqrt()
    }
}
