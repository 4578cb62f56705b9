import LatheNN
import LatheTensor

/// Where one magnitude threshold applies.
public enum PruningScope: String, Sendable, CaseIterable {
    /// Each parameter loses the same fraction of its entries (its own threshold).
    case layerwise
    /// One threshold across all the chosen parameters (torch's `global_unstructured`):
    /// layers with many small weights lose more.
    case global
}

/// The weights that pruning acts on by default: the `weight` of every ``Linear`` and
/// ``Conv2d``, in registration order (biases and normalisation parameters are left alone).
public func prunableParameters(_ model: Module) -> [String] {
    model.namedModules.compactMap { path, m in
        guard m is Linear || m is Conv2d else { return nil }
        return path.isEmpty ? "weight" : "\(path).weight"
    }
}

/// Masks that remove the smallest-magnitude entries (Han et al. 2015).
///
/// With `.layerwise` scope each parameter of `n` entries loses `round(sparsity * n)` of them;
/// with `.global` the chosen parameters together lose `round(sparsity * N)` (the smallest
/// `|w|` across all of them). Ties are broken by position (earlier entries go first), so the
/// count is exact. Entries already masked out in `existing` count as the smallest, so masks
/// only grow (gradual pruning relies on this).
///
/// - Parameters:
///   - sparsity: fraction in `[0, 1]` to remove.
///   - parameters: parameter names; default ``prunableParameters(_:)``.
/// - Returns: masks for the chosen parameters; the model is not changed (see ``pruneMagnitude(_:sparsity:parameters:scope:)``).
public func magnitudeMasks(_ model: Module, sparsity: Double, parameters: [String]? = nil, scope: PruningScope = .layerwise,
                           existing: PruningMasks? = nil) -> PruningMasks {
    precondition(sparsity >= 0 && sparsity <= 1, "magnitudeMasks: sparsity must be in [0, 1], got \(sparsity)")
    let byName = Dictionary(uniqueKeysWithValues: model.namedParameters)
    let names = parameters ?? prunableParameters(model)
    // Scores: |w|, or -1 where an existing mask already removed the entry.
    let scores: [[Float]] = names.map { name in
        guard let p = byName[name] else { preconditionFailure("magnitudeMasks: the model has no parameter \(name)") }
        var s = p.value.detached().abs().scalars
        if let m = existing?[name]?.scalars { for i in s.indices where m[i] == 0 { s[i] = -1 } }
        return s
    }
    var keep: [[Float]] = scores.map { [Float](repeating: 1, count: $0.count) }
    switch scope {
    case .layerwise:
        for (k, s) in scores.enumerated() {
            for i in smallest(Int((sparsity * Double(s.count)).rounded()), of: s) { keep[k][i] = 0 }
        }
    case .global:
        let flat = scores.flatMap { $0 }
        var offsets = [0]
        for s in scores { offsets.append(offsets.last! + s.count) }
        var layer = 0
        for i in smallest(Int((sparsity * Double(flat.count)).rounded()), of: flat).sorted() {
            while i >= offsets[layer + 1] { layer += 1 }
            keep[layer][i - offsets[layer]] = 0
        }
    }
    var out: [String: Tensor] = [:]
    for (k, name) in names.enumerated() { out[name] = Tensor(keep[k], shape: byName[name]!.value.shape) }
    return PruningMasks(out)
}

/// Computes ``magnitudeMasks(_:sparsity:parameters:scope:existing:)`` and zeroes the pruned
/// weights in place.
@discardableResult
public func pruneMagnitude(_ model: Module, sparsity: Double, parameters: [String]? = nil, scope: PruningScope = .layerwise,
                           existing: PruningMasks? = nil) -> PruningMasks {
    let masks = magnitudeMasks(model, sparsity: sparsity, parameters: parameters, scope: scope, existing: existing)
    masks.apply(to: model)
    return masks
}

/// Indices of the `k` smallest values (ties: lower index first).
func smallest(_ k: Int, of values: [Float]) -> ArraySlice<Int> {
    guard k > 0 else { return [] }
    let order = values.indices.sorted { values[$0] != values[$1] ? values[$0] < values[$1] : $0 < $1 }
    return order.prefix(Swift.min(k, values.count))
}
