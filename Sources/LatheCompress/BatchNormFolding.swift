import LatheNN
import LatheTensor

/// A batch norm folded into the weight layer before it (``BatchNormFolding``).
public struct FoldedPair: Sendable, Equatable, Codable {
    /// The `Conv2d` or `Linear` whose output the norm normalised.
    public var layer: String
    /// The `BatchNorm` (now an identity).
    public var norm: String
    public init(layer: String, norm: String) { (self.layer, self.norm) = (layer, norm) }
}

/// Folds evaluation-mode batch norms into the convolution or linear layer that feeds them
/// (PyTorch's `fuse_conv_bn_eval`): with `a = gamma / sqrt(running_var + eps)`,
/// `W'[o] = a[o] W[o]` and `b'[o] = a[o] (b[o] - running_mean[o]) + beta[o]`, and the norm
/// becomes an identity. The model then computes the same function in evaluation mode with one
/// layer less, which quantization needs (the int8 layer's requantisation absorbs the norm) and
/// which makes the file smaller.
///
/// Layers are changed with ``Module/setModule(_:at:)``: the weight layer's place holds the
/// folded weights and a bias (a new layer if it had none), the norm's a ``FoldedNorm`` (an identity). Training
/// the folded model trains the folded weights; the norm's statistics are frozen into them.
public enum BatchNormFolding {
    /// The (layer, norm) pairs of `model` that can be folded: a norm that directly follows a
    /// weight layer whose output it alone reads. Known structures: ``DigitsCNN``,
    /// ``SmallResNet`` and its ``BasicBlock``s, and adjacent layers of any ``Sequential``.
    public static func pairs(in model: Module) -> [FoldedPair] {
        var out: [FoldedPair] = []
        for (path, m) in model.namedModules {
            let p = path.isEmpty ? "" : path + "."
            switch m {
            case is DigitsCNN, is BasicBlock:
                out += [FoldedPair(layer: p + "conv1", norm: p + "bn1"), FoldedPair(layer: p + "conv2", norm: p + "bn2")]
            case is SmallResNet:
                out.append(FoldedPair(layer: p + "conv1", norm: p + "bn1"))
            case let s as Sequential:
                for i in s.layers.indices.dropLast() where (s.layers[i] is Conv2d || s.layers[i] is Linear) && s.layers[i + 1] is BatchNorm {
                    out.append(FoldedPair(layer: p + "\(i)", norm: p + "\(i + 1)"))
                }
            default: break
            }
        }
        let modules = Dictionary(model.namedModules, uniquingKeysWith: { a, _ in a })
        // Only pairs still in place (a norm already folded shows as an Identity).
        return out.filter { modules[$0.norm] is BatchNorm && (modules[$0.layer] is Conv2d || modules[$0.layer] is Linear) }
    }

    /// Folds `pairs` (default: all of ``pairs(in:)``) and returns the ones folded.
    @discardableResult
    public static func fold(_ model: Module, pairs: [FoldedPair]? = nil) throws(ModuleSurgeryError) -> [FoldedPair] {
        let todo = pairs ?? Self.pairs(in: model)
        let modules = Dictionary(model.namedModules, uniquingKeysWith: { a, _ in a })
        for pair in todo {
            guard let layer = modules[pair.layer], let bn = modules[pair.norm] as? BatchNorm else {
                preconditionFailure("BatchNormFolding: the model has no layer '\(pair.layer)' followed by a BatchNorm '\(pair.norm)'")
            }
            let folded = withBias(layer)
            noGrad {
                let (w, b) = weightAndBias(folded)
                precondition(w.value.shape[0] == bn.features, "BatchNormFolding: \(pair.layer) has \(w.value.shape[0]) outputs, \(pair.norm) \(bn.features) features")
                let gamma = bn.weight?.value ?? Tensor.ones([bn.features])
                let beta = bn.bias?.value ?? Tensor.zeros([bn.features])
                let a = gamma / (bn.runningVar.value + bn.eps).sqrt()
                var shape = [bn.features]
                shape += Array(repeating: 1, count: w.value.rank - 1)
                w.value = (w.value * a.reshaped(shape)).contiguous()
                b.value = (a * (b.value - bn.runningMean.value) + beta).contiguous()
            }
            try model.setModule(folded, at: pair.layer)
            try model.setModule(FoldedNorm(pair), at: pair.norm)
        }
        return todo
    }

    /// Puts a folded structure back into a freshly built model before its folded weights are
    /// loaded: each norm becomes an identity and each layer gets a bias if it had none.
    public static func prepareFolded(_ model: Module, pairs: [FoldedPair]) throws {
        let modules = Dictionary(model.namedModules, uniquingKeysWith: { a, _ in a })
        for pair in pairs {
            guard let layer = modules[pair.layer], layer is Conv2d || layer is Linear, modules[pair.norm] is BatchNorm else {
                throw FoldingError(message: "the model has no Conv2d/Linear '\(pair.layer)' followed by a BatchNorm '\(pair.norm)' to fold")
            }
            do {
                try model.setModule(withBias(layer), at: pair.layer)
                try model.setModule(FoldedNorm(pair), at: pair.norm)
            } catch {
                throw FoldingError(message: error.description)
            }
        }
    }

    /// `layer` itself if it has a bias, else a copy with a zero bias (same weight values).
    static func withBias(_ layer: Module) -> Module {
        var g = RandomGenerator(seed: 0)
        switch layer {
        case let c as Conv2d:
            guard c.bias == nil else { return c }
            let s = c.weight.value.shape
            let n = Conv2d(s[1] * c.groups, s[0], kernelSize: (s[2], s[3]), stride: c.stride, padding: c.padding, dilation: c.dilation,
                           groups: c.groups, bias: true, generator: &g)
            n.weight.value = c.weight.value
            n.bias!.value = Tensor.zeros([s[0]])
            return n
        case let l as Linear:
            guard l.bias == nil else { return l }
            let n = Linear(l.inFeatures, l.outFeatures, bias: true, generator: &g)
            n.weight.value = l.weight.value
            n.bias!.value = Tensor.zeros([l.outFeatures])
            return n
        default:
            preconditionFailure("BatchNormFolding: \(type(of: layer)) is not a Conv2d or Linear")
        }
    }

    /// The pairs folded in `model` (found by the identities that stand in for the norms).
    public static func foldedPairs(in model: Module) -> [FoldedPair] {
        model.namedModules.compactMap { ($0.1 as? FoldedNorm)?.pair }
    }

    static func weightAndBias(_ layer: Module) -> (Parameter, Parameter) {
        switch layer {
        case let c as Conv2d: (c.weight, c.bias!)
        case let l as Linear: (l.weight, l.bias!)
        default: preconditionFailure("BatchNormFolding: \(type(of: layer)) is not a Conv2d or Linear")
        }
    }
}

/// The identity that stands in for a folded batch norm (it remembers the pair).
public final class FoldedNorm: Module {
    public let pair: FoldedPair
    public init(_ pair: FoldedPair) { self.pair = pair }
    public override func forward(_ x: Tensor) -> Tensor { x }
}

/// A folding that does not fit the model.
public struct FoldingError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
