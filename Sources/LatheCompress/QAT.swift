import CLatheKernels
import LatheNN
import LatheTensor

/// How a fake-quantized activation finds its range during quantization-aware training.
public enum RangeLearning: Equatable, Sendable {
    /// An exponential moving average of each training batch's min and max
    /// (`range = (1 - momentum) * range + momentum * batch`), like PyTorch's
    /// `MovingAverageMinMaxObserver` (momentum 0.01).
    case ema(momentum: Float)
    /// The bounds are parameters trained with the model: values clipped at a bound pass their
    /// gradient to it (PACT, Choi et al. 2018), values inside the range to the input.
    case learned

    public static let ema = RangeLearning.ema(momentum: 0.01)
}

/// Fake quantization of an activation to the uint8 grid of ``AffineParams`` over
/// `[low, high]`: the forward pass gives exactly the values the int8 layer will see,
/// `dequantize(quantize(x))`; the backward pass is the straight-through estimator, the
/// gradient passing where `x` is inside the grid's range and stopping where it is clipped.
public final class FakeQuantize: Module {
    /// The range's bounds (trainable with ``RangeLearning/learned``).
    public let low: Parameter
    public let high: Parameter
    public let learning: RangeLearning
    public let symmetric: Bool

    public init(low: Float, high: Float, learning: RangeLearning = .ema, symmetric: Bool = false) {
        self.low = Parameter(Tensor([low], shape: []), requiresGrad: learning == .learned)
        self.high = Parameter(Tensor([high], shape: []), requiresGrad: learning == .learned)
        self.learning = learning
        self.symmetric = symmetric
    }

    /// The quantization the converted layer uses.
    public var params: AffineParams { AffineParams(min: low.value.item, max: high.value.item, symmetric: symmetric) }

    public override func forward(_ x: Tensor) -> Tensor {
        if isTraining, case .ema(let m) = learning, x.count > 0 {
            var lo: Float = 0, hi: Float = 0
            withFloats(x) { lathe_minmax_f32($0.baseAddress!, $0.count, &lo, &hi) }
            if lo.isFinite, hi.isFinite {
                low.value = Tensor([(1 - m) * low.value.item + m * lo], shape: [])
                high.value = Tensor([(1 - m) * high.value.item + m * hi], shape: [])
            }
        }
        let p = params
        let gridLow = p.dequantize(0), gridHigh = p.dequantize(255)
        let quantized = withFloats(x) { xs in
            QuantMath.quantizeU8(xs, p).map { p.dequantize($0) }
        }
        let clipped: Tensor
        if learning == .learned {
            clipped = Tensor.minimum(Tensor.maximum(x, low.value), high.value)
        } else {
            clipped = x.clamped(min: gridLow, max: gridHigh)
        }
        // Forward: exactly the grid values (c - c is 0); backward: the gradient of `clipped`.
        return Tensor(quantized, shape: x.shape) + (clipped - clipped.detached())
    }
}

/// Fake quantization of a weight, per output channel and symmetric, exactly as
/// ``QuantMath/quantizePerChannel(_:rows:cols:)`` quantizes it; the gradient passes straight
/// through (the range is the weight's own maximum, so nothing is clipped).
///
/// A weight with NaN or infinite values (a diverged run) passes through unchanged, so that the
/// loss shows it (the trainer stops on a non-finite loss).
public func fakeQuantizeWeight(_ w: Tensor) -> Tensor {
    let rows = w.shape[0], cols = w.count / Swift.max(rows, 1)
    let values = w.detached().scalars
    guard values.allSatisfy({ $0.isFinite && abs($0) < 8e6 }) else { return w }
    let (codes, scales) = QuantMath.quantizePerChannel(values, rows: rows, cols: cols)
    let deq = (0..<codes.count).map { scales[$0 / cols] * Float(codes[$0]) }
    return Tensor(deq, shape: w.shape) + (w - w.detached())
}

/// A `Linear` during quantization-aware training: fake-quantized input and weights, float
/// arithmetic. Shares the `Linear`'s parameters (same state dict names).
public final class QATLinear: Module {
    public let weight: Parameter
    public let bias: Parameter?
    public let inputQuant: FakeQuantize

    public init(_ linear: Linear, inputQuant: FakeQuantize) {
        weight = linear.weight
        bias = linear.bias
        self.inputQuant = inputQuant
    }

    public override func forward(_ x: Tensor) -> Tensor {
        let k = weight.value.shape[1], n = weight.value.shape[0]
        precondition(x.shape.last == k, "QATLinear: input \(x.shape) does not end in \(k) features")
        let xq = inputQuant(x)
        let flat = xq.rank == 2 ? xq : xq.reshaped([-1, k])
        var y = flat.matmul(fakeQuantizeWeight(weight.value).T)
        if let bias { y = y + bias.value }
        return x.rank == 2 ? y : y.reshaped(Array(x.shape.dropLast()) + [n])
    }

    /// The int8 layer: the weights quantized as in training, the input with the learned range.
    public func converted() -> QuantizedLinear {
        let s = weight.value.shape
        return QuantizedLinear(weight: PackedInt8Weights(quantizing: weight.value.scalars, rows: s[0], cols: s[1]),
                               bias: bias?.value.scalars, inputParams: inputQuant.params)
    }
}

/// A `Conv2d` (groups = 1) during quantization-aware training (see ``QATLinear``).
public final class QATConv2d: Module {
    public let weight: Parameter
    public let bias: Parameter?
    public let inputQuant: FakeQuantize
    public let stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int)

    public init(_ conv: Conv2d, inputQuant: FakeQuantize) {
        precondition(conv.groups == 1, "QATConv2d: grouped convolutions are not supported (groups = \(conv.groups))")
        weight = conv.weight
        bias = conv.bias
        self.inputQuant = inputQuant
        (stride, padding, dilation) = (conv.stride, conv.padding, conv.dilation)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        inputQuant(x).conv2d(weight: fakeQuantizeWeight(weight.value), bias: bias?.value, stride: stride, padding: padding,
                             dilation: dilation, groups: 1)
    }

    public func converted() -> QuantizedConv2d {
        let s = weight.value.shape
        return QuantizedConv2d(weight: PackedInt8Weights(quantizing: weight.value.scalars, rows: s[0], cols: s[1] * s[2] * s[3]),
                               bias: bias?.value.scalars, inputParams: inputQuant.params, inChannels: s[1], kernelSize: (s[2], s[3]),
                               stride: stride, padding: padding, dilation: dilation)
    }
}

/// Quantization-aware training: ``prepare(_:calibrationBatches:learning:observer:filter:)``
/// puts fake-quantized layers in place of `Linear` and `Conv2d` (initial activation ranges
/// from calibration), the model is fine-tuned as usual, and ``convert(_:)`` turns it into the
/// static int8 model of ``Quantizer``. Fold batch norms first (``BatchNormFolding``): the
/// int8 layers have none.
public enum QAT {
    /// Replaces the layers `filter` accepts and returns their names.
    @discardableResult
    public static func prepare(_ model: Module, calibrationBatches: [Tensor], learning: RangeLearning = .ema,
                               observer: ObserverKind = .minMax, filter: (String, Module) -> Bool = { _, _ in true }) throws(ModuleSurgeryError) -> [String] {
        precondition(!calibrationBatches.isEmpty, "QAT.prepare: the initial ranges need calibration batches")
        let targets = Quantizer.quantizableLayers(in: model, filter: filter)
        let ranges = try Quantizer.calibrate(model, layers: targets.map(\.0), batches: calibrationBatches, observer: observer)
        for (name, m) in targets {
            let r = ranges[name]!
            let fq = FakeQuantize(low: Swift.min(r.min, 0), high: Swift.max(r.max, 0), learning: learning)
            switch m {
            case let l as Linear: try model.setModule(QATLinear(l, inputQuant: fq), at: name)
            case let c as Conv2d: try model.setModule(QATConv2d(c, inputQuant: fq), at: name)
            default: continue
            }
        }
        return targets.map(\.0)
    }

    /// Swaps every fake-quantized layer for its int8 form and returns their names.
    @discardableResult
    public static func convert(_ model: Module) throws(ModuleSurgeryError) -> [String] {
        var done: [String] = []
        for (name, m) in model.namedModules {
            switch m {
            case let l as QATLinear: try model.setModule(l.converted(), at: name)
            case let c as QATConv2d: try model.setModule(c.converted(), at: name)
            default: continue
            }
            done.append(name)
        }
        return done
    }
}
