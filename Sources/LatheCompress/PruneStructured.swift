import LatheNN
import LatheTensor

/// How output channels are ranked for structured pruning: the norm of each channel's
/// weights (a conv filter `[in, kh, kw]` or a linear row `[in]`; Li et al. 2017).
public enum ChannelImportance: String, Sendable, CaseIterable {
    case l1, l2
}

/// The layers tied to one layer's output channels: what must shrink with it.
///
/// Removing output channel `j` of `producer` (a ``Conv2d`` or ``Linear``) removes entry `j`
/// of the ``BatchNorm`` `norm` that follows it (weight, bias, running mean and variance) and
/// input channel `j` of every consumer. A ``Linear`` consumer behind a flatten reads
/// `featuresPerChannel` consecutive inputs per channel (`H * W` for `[N, C, H, W]` flattened
/// from dim 1); `nil` infers it as `consumer.inFeatures / producer.outChannels`.
///
/// Lathe describes the dependencies explicitly per model rather than tracing the graph;
/// ``plan(for:)`` knows ``DigitsCNN`` and ``Sequential`` chains. Residual models such as
/// ``SmallResNet`` (whose block outputs are added, so channels are coupled across blocks)
/// are not covered.
public struct ChannelDependency: Sendable, Equatable {
    public struct Consumer: Sendable, Equatable {
        public var name: String
        public var featuresPerChannel: Int?
        public init(_ name: String, featuresPerChannel: Int? = nil) { (self.name, self.featuresPerChannel) = (name, featuresPerChannel) }
    }

    public var producer: String
    public var norm: String?
    public var consumers: [Consumer]

    public init(producer: String, norm: String? = nil, consumers: [Consumer]) {
        (self.producer, self.norm, self.consumers) = (producer, norm, consumers)
    }

    /// `conv1 -> bn1 -> conv2`, `conv2 -> bn2 -> (pool, flatten) -> fc1`, `fc1 -> fc2`.
    public static let digitsCNN: [ChannelDependency] = [
        ChannelDependency(producer: "conv1", norm: "bn1", consumers: [Consumer("conv2")]),
        ChannelDependency(producer: "conv2", norm: "bn2", consumers: [Consumer("fc1")]),
        ChannelDependency(producer: "fc1", consumers: [Consumer("fc2")]),
    ]

    /// For a ``Sequential`` of ``Linear``/``Conv2d`` layers with ``BatchNorm``, activations,
    /// dropout, pooling and ``Flatten`` between them: every weight layer but the last feeds
    /// the next one. Returns nil if some other layer (which might mix channels) sits between
    /// two weight layers.
    public static func chain(_ model: Sequential, prefix: String = "") -> [ChannelDependency]? {
        var out: [ChannelDependency] = []
        var open: (producer: String, norm: String?)?
        for (i, layer) in model.layers.enumerated() {
            let name = prefix.isEmpty ? "\(i)" : "\(prefix).\(i)"
            switch layer {
            case is Linear, is Conv2d:
                if let o = open { out.append(ChannelDependency(producer: o.producer, norm: o.norm, consumers: [Consumer(name)])) }
                open = (name, nil)
            case is BatchNorm:
                guard open != nil, open!.norm == nil else { return nil }
                open!.norm = name
            case is Activation, is Dropout, is Flatten, is MaxPool2d, is AvgPool2d, is Identity:
                continue
            default:
                return nil
            }
        }
        return out
    }

    /// The dependencies of a supported model: ``DigitsCNN`` or a ``Sequential`` chain
    /// (``chain(_:prefix:)``); nil for others.
    public static func plan(for model: Module) -> [ChannelDependency]? {
        if model is DigitsCNN { return digitsCNN }
        if let s = model as? Sequential { return chain(s) }
        return nil
    }
}

/// What ``pruneChannels(_:dependencies:ratio:importance:)`` did.
public struct StructuredPruningResult: Sendable, Equatable {
    /// Kept output channels of each producer, ascending.
    public var kept: [String: [Int]]
    public var parametersBefore: Int, parametersAfter: Int
}

/// Importance of each output channel of a ``Conv2d`` or ``Linear``: the L1 or L2 norm of
/// its weights.
public func channelImportance(_ layer: Module, _ criterion: ChannelImportance = .l1) -> [Float] {
    let w: Tensor
    switch layer {
    case let c as Conv2d: w = c.weight.value
    case let l as Linear: w = l.weight.value
    default: preconditionFailure("channelImportance: \(type(of: layer)) is not a Conv2d or Linear")
    }
    let rows = w.detached().reshaped([w.shape[0], -1])
    switch criterion {
    case .l1: return rows.abs().sum(dim: 1).scalars
    case .l2: return rows.square().sum(dim: 1).sqrt().scalars
    }
}

/// Removes the least important `ratio` of each producer's output channels (rounded; at
/// least one channel stays), physically: the producer, its norm and its consumers get
/// parameters sliced to the kept channels, so the model computes with smaller GEMMs.
///
/// Channels are ranked on the weights before any slicing. The model is changed in place:
/// Lathe layers take their sizes from their parameters, so a ``Conv2d`` whose weight becomes
/// `[16, 1, 3, 3]` is a 16-filter convolution; the state-dict names stay the same (load such
/// a state dict into a fresh model with ``loadPrunedStateDict(_:into:)``). Build optimisers
/// after pruning (their state refers to the old shapes).
///
/// - Parameters:
///   - ratio: fraction of channels to remove from every producer, or per producer via
///     ``pruneChannels(_:dependencies:ratios:importance:)``.
@discardableResult
public func pruneChannels(_ model: Module, dependencies: [ChannelDependency], ratio: Double,
                          importance: ChannelImportance = .l1) -> StructuredPruningResult {
    pruneChannels(model, dependencies: dependencies, ratios: Dictionary(uniqueKeysWithValues: dependencies.map { ($0.producer, ratio) }),
                  importance: importance)
}

/// ``pruneChannels(_:dependencies:ratio:importance:)`` with a ratio per producer (producers
/// not listed keep all channels).
@discardableResult
public func pruneChannels(_ model: Module, dependencies: [ChannelDependency], ratios: [String: Double],
                          importance: ChannelImportance = .l1) -> StructuredPruningResult {
    let modules = Dictionary(uniqueKeysWithValues: model.namedModules)
    var keep: [String: [Int]] = [:]
    for d in dependencies {
        guard let ratio = ratios[d.producer] else { continue }
        precondition(ratio >= 0 && ratio < 1, "pruneChannels: ratio for \(d.producer) must be in [0, 1), got \(ratio)")
        guard let producer = modules[d.producer] else { preconditionFailure("pruneChannels: the model has no layer \(d.producer)") }
        let scores = channelImportance(producer, importance)
        let removed = Swift.min(Int((ratio * Double(scores.count)).rounded()), scores.count - 1)
        let order = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
        keep[d.producer] = order.prefix(scores.count - removed).sorted()
    }
    return removeChannels(model, dependencies: dependencies, keep: keep)
}

/// Keeps exactly the listed output channels of each producer (others keep all) and slices
/// the dependent layers to match; the mechanism under ``pruneChannels(_:dependencies:ratio:importance:)``.
@discardableResult
public func removeChannels(_ model: Module, dependencies: [ChannelDependency], keep: [String: [Int]]) -> StructuredPruningResult {
    let before = model.parameterCount()
    let modules = Dictionary(uniqueKeysWithValues: model.namedModules)
    func layer(_ name: String) -> Module {
        guard let m = modules[name] else { preconditionFailure("removeChannels: the model has no layer \(name)") }
        return m
    }
    noGrad {
        for d in dependencies {
            guard let kept = keep[d.producer] else { continue }
            let producer = layer(d.producer)
            let (weight, bias) = weightAndBias(producer, role: "producer")
            let channels = weight.value.shape[0]
            precondition(!kept.isEmpty && kept.allSatisfy { (0..<channels).contains($0) } && Set(kept).count == kept.count,
                         "removeChannels: kept channels of \(d.producer) must be distinct and in 0..<\(channels)")
            let index = Tensor(kept)
            weight.value = weight.value.indexSelect(dim: 0, index: index).contiguous()
            if let bias { bias.value = bias.value.indexSelect(dim: 0, index: index).contiguous() }
            if let normName = d.norm {
                guard let bn = layer(normName) as? BatchNorm else { preconditionFailure("removeChannels: \(normName) is not a BatchNorm") }
                precondition(bn.features == channels, "removeChannels: \(normName) has \(bn.features) features, \(d.producer) \(channels) channels")
                for p in [bn.weight, bn.bias].compactMap({ $0 }) { p.value = p.value.indexSelect(dim: 0, index: index).contiguous() }
                for b in [bn.runningMean, bn.runningVar] { b.value = b.value.indexSelect(dim: 0, index: index).contiguous() }
            }
            for c in d.consumers {
                let consumer = layer(c.name)
                let (w, _) = weightAndBias(consumer, role: "consumer")
                let inputs = w.value.shape[1]
                let per = c.featuresPerChannel ?? inputs / channels
                precondition(per * channels == inputs,
                             "removeChannels: \(c.name) takes \(inputs) inputs, not a multiple \(per) of \(d.producer)'s \(channels) channels")
                let columns = kept.flatMap { j in (j * per)..<((j + 1) * per) }
                w.value = w.value.indexSelect(dim: 1, index: Tensor(columns)).contiguous()
            }
        }
    }
    return StructuredPruningResult(kept: keep, parametersBefore: before, parametersAfter: model.parameterCount())
}

/// Loads a state dict whose tensors may be smaller than the model's (one saved after
/// structured pruning): every parameter and persistent buffer takes the stored tensor's
/// shape. Keys must match exactly.
public func loadPrunedStateDict(_ state: [String: Tensor], into model: Module) throws(StateDictError) {
    let params = Dictionary(uniqueKeysWithValues: model.namedParameters)
    let buffers = Dictionary(uniqueKeysWithValues: model.namedBuffers.filter { $0.1.persistent })
    let known = Set(params.keys).union(buffers.keys)
    let missing = known.subtracting(state.keys).sorted(), unexpected = Set(state.keys).subtracting(known).sorted()
    if !missing.isEmpty || !unexpected.isEmpty { throw .keys(missing: missing, unexpected: unexpected) }
    for (k, v) in state {
        if let p = params[k] { p.value = v.to(p.value.dtype).contiguous() }
        if let b = buffers[k] { b.value = v.to(b.value.dtype).contiguous() }
    }
}

private func weightAndBias(_ m: Module, role: String) -> (Parameter, Parameter?) {
    switch m {
    case let c as Conv2d:
        precondition(c.groups == 1, "structured pruning: grouped convolutions are not supported (\(role) has groups \(c.groups))")
        return (c.weight, c.bias)
    case let l as Linear:
        return (l.weight, l.bias)
    default:
        preconditionFailure("structured pruning: the \(role) must be a Conv2d or Linear, not \(type(of: m))")
    }
}
