import LatheNN
import LatheTensor

/// Binary masks for a model's parameters, keyed by parameter name (`conv1.weight`, ...):
/// the non-trainable state of unstructured and semi-structured pruning (PyTorch keeps the
/// same thing as a `weight_mask` buffer per pruned parameter).
///
/// A mask is a float32 tensor of the parameter's shape holding 1 (keep) or 0 (pruned). To
/// keep pruned weights exactly zero through fine-tuning, call ``step(_:model:)`` instead of
/// `optimizer.step()`: it zeroes the pruned gradients, steps, and zeroes the pruned weights
/// again (Adam moments or weight decay could otherwise move them). With `LatheTrain`'s
/// `Trainer`, add ``maskGradients(of:)`` as an after-backward hook and ``apply(to:)`` as an
/// after-step hook for the same guarantee.
public final class PruningMasks {
    /// Masks by parameter name.
    public private(set) var masks: [String: Tensor]

    public init(_ masks: [String: Tensor] = [:]) {
        self.masks = masks.mapValues { $0.detached().to(.float32).contiguous() }
    }

    /// Masks from a state dict written by ``stateDict()`` (keys `<param>_mask`); other keys
    /// are ignored.
    public convenience init(stateDict: [String: Tensor]) {
        var out: [String: Tensor] = [:]
        for (k, v) in stateDict where k.hasSuffix("_mask") { out[String(k.dropLast("_mask".count))] = v }
        self.init(out)
    }

    /// The pruned parameter names, sorted.
    public var names: [String] { masks.keys.sorted() }

    public subscript(name: String) -> Tensor? {
        get { masks[name] }
        set { masks[name] = newValue.map { $0.detached().to(.float32).contiguous() } }
    }

    /// Masks as tensors named `<param>_mask` (torch's `weight_mask` naming), e.g. to save
    /// beside the model with `SafeTensors.write`.
    public func stateDict() -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: masks.map { ("\($0.key)_mask", $0.value) })
    }

    /// Fraction of masked-out entries over all masks (0 when there are none).
    public var sparsity: Double {
        var zeros = 0, total = 0
        for m in masks.values {
            zeros += m.withUnsafeBufferPointer { $0.reduce(0) { $1 == 0 ? $0 + 1 : $0 } }
            total += m.count
        }
        return total == 0 ? 0 : Double(zeros) / Double(total)
    }

    /// Zeroes the pruned entries of the model's parameters. Every mask must name a parameter
    /// of the model with the same shape.
    public func apply(to model: Module) {
        for (name, p) in parametersByMask(model) { p.value = Self.masked(p.value, masks[name]!) }
    }

    /// Zeroes the pruned entries of the model's gradients (parameters without a gradient are
    /// skipped).
    public func maskGradients(of model: Module) {
        for (name, p) in parametersByMask(model) {
            if let g = p.grad { p.grad = Self.masked(g, masks[name]!) }
        }
    }

    /// One optimiser step that keeps pruned weights exactly zero: masks the gradients,
    /// steps, then masks the weights.
    public func step(_ optimizer: Optimizer, model: Module) {
        maskGradients(of: model)
        optimizer.step()
        apply(to: model)
    }

    /// `value` with the entries where `mask == 0` set to +0 (not `-0`, as a product would).
    public static func masked(_ value: Tensor, _ mask: Tensor) -> Tensor {
        precondition(value.shape == mask.shape, "PruningMasks: mask \(mask.shape) does not fit tensor \(value.shape)")
        var out = value.detached().contiguous()
        mask.withUnsafeBufferPointer { m in
            out.withUnsafeMutableBufferPointer { v in
                for i in 0..<v.count where m[i] == 0 { v[i] = 0 }
            }
        }
        return out
    }

    private func parametersByMask(_ model: Module) -> [(String, Parameter)] {
        let params = Dictionary(uniqueKeysWithValues: model.namedParameters)
        return names.map { name in
            guard let p = params[name] else { preconditionFailure("PruningMasks: the model has no parameter \(name)") }
            precondition(p.value.shape == masks[name]!.shape,
                         "PruningMasks: mask for \(name) has shape \(masks[name]!.shape), the parameter \(p.value.shape)")
            return (name, p)
        }
    }
}
