import LatheNN
import LatheTensor

/// What ``Quantizer`` does to each selected layer.
public struct QuantizationConfig: Sendable {
    public enum Scheme: Equatable, Sendable {
        /// int8 weights and activations; activation ranges from calibration (needs batches).
        case staticInt8
        /// int8 weights; activations quantized per batch at run time.
        case dynamicInt8
        /// Group-wise int8/int4 weights, float activations (`Linear` only; convolutions stay float).
        case weightOnly(GroupwiseScheme)
    }

    public var scheme: Scheme
    /// How calibration turns the observed activations into a range (static only).
    public var observer: ObserverKind
    /// Symmetric activations (zero point 128) instead of affine.
    public var symmetricActivations: Bool

    public init(scheme: Scheme, observer: ObserverKind = .minMax, symmetricActivations: Bool = false) {
        self.scheme = scheme
        self.observer = observer
        self.symmetricActivations = symmetricActivations
    }
}

/// Runs a wrapped layer (its child `target`) and records its input (calibration).
final class ObservingModule: Module {
    let target: Module
    let observer: RangeObserver
    init(_ target: Module, _ observer: RangeObserver) {
        self.target = target
        self.observer = observer
    }
    override func forward(_ x: Tensor) -> Tensor {
        observer.observe(x)
        return target(x)
    }
}

/// Model surgery: swaps `Linear` and `Conv2d` layers of a model for quantized ones.
///
/// Layers are found by dotted name (`namedModules`) and replaced in place with
/// ``Module/setModule(_:at:)``: their parents must hold them in ``Child`` slots (or be a
/// ``Sequential``), else the surgery error names the layer. `filter(name, module)` chooses the layers,
/// e.g. keep the first and last fp32 with `{ name, _ in name != "0" && name != "4" }`.
public enum Quantizer {
    /// `Linear` and `Conv2d` (groups = 1) layers of `model` that `filter` accepts, by name.
    public static func quantizableLayers(in model: Module, filter: (String, Module) -> Bool = { _, _ in true }) -> [(String, Module)] {
        model.namedModules.filter { name, m in
            guard !name.isEmpty, filter(name, m) else { return false }
            if m is Linear { return true }
            if let c = m as? Conv2d { return c.groups == 1 }
            return false
        }
    }

    /// Runs `batches` through `model` (evaluation mode, no gradients) with observers on the
    /// inputs of `layers`, and returns each layer's observed range.
    public static func calibrate(_ model: Module, layers: [String], batches: [Tensor], observer: ObserverKind = .minMax,
                                 symmetric: Bool = false) throws(ModuleSurgeryError) -> [String: (min: Float, max: Float)] {
        let modules = Dictionary(model.namedModules, uniquingKeysWith: { a, _ in a })
        let before = model.snapshot()
        defer { model.restore(before) }
        var wrapped: [(String, RangeObserver)] = []
        for name in layers {
            guard let m = modules[name] else { throw ModuleSurgeryError(path: name, message: "calibrate: the model has no such layer") }
            let obs = observer.makeObserver(symmetric: symmetric)
            try model.setModule(ObservingModule(m, obs), at: name)
            wrapped.append((name, obs))
        }
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        noGrad { for b in batches { _ = model(b) } }
        return Dictionary(uniqueKeysWithValues: wrapped.map { ($0.0, $0.1.range) })
    }

    /// Quantizes the layers `filter` selects in place and returns their names. Static int8
    /// calibrates on `calibrationBatches` first.
    @discardableResult
    public static func quantize(model: Module, config: QuantizationConfig, calibrationBatches: [Tensor] = [],
                                filter: (String, Module) -> Bool = { _, _ in true }) throws(ModuleSurgeryError) -> [String] {
        var targets = quantizableLayers(in: model, filter: filter)
        if case .weightOnly = config.scheme { targets = targets.filter { $0.1 is Linear } }
        var ranges: [String: (min: Float, max: Float)] = [:]
        if config.scheme == .staticInt8 {
            precondition(!calibrationBatches.isEmpty, "quantize: static int8 needs calibration batches")
            ranges = try calibrate(model, layers: targets.map(\.0), batches: calibrationBatches, observer: config.observer,
                               symmetric: config.symmetricActivations)
        }
        for (name, m) in targets {
            let params = ranges[name].map { AffineParams(min: $0.min, max: $0.max, symmetric: config.symmetricActivations) }
            let q: Module
            switch (config.scheme, m) {
            case (.staticInt8, let l as Linear): q = QuantizedLinear(l, inputParams: params!)
            case (.dynamicInt8, let l as Linear): q = DynamicQuantizedLinear(l)
            case (.weightOnly(let s), let l as Linear): q = WeightOnlyLinear(l, scheme: s)
            case (.staticInt8, let c as Conv2d): q = QuantizedConv2d(c, inputParams: params!)
            case (.dynamicInt8, let c as Conv2d): q = QuantizedConv2d(c, inputParams: nil)
            default: continue
            }
            try model.setModule(q, at: name)
        }
        return targets.map(\.0)
    }
}

/// Quantizes `model` in place (see ``Quantizer/quantize(model:config:calibrationBatches:filter:)``).
@discardableResult
public func quantize(model: Module, config: QuantizationConfig, calibrationBatches: [Tensor] = [],
                     filter: (String, Module) -> Bool = { _, _ in true }) throws(ModuleSurgeryError) -> [String] {
    try Quantizer.quantize(model: model, config: config, calibrationBatches: calibrationBatches, filter: filter)
}
