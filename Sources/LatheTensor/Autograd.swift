import CLatheKernels

/// One vertex of the autodiff graph.
///
/// A leaf (a tensor made with ``Tensor/requiringGrad()``) accumulates its gradient in
/// ``grad``. An interior node holds the parents' nodes and a closure mapping the gradient of
/// its output to the gradients of its inputs (`nil` for an input that needs none).
final class GradNode: @unchecked Sendable {
    let parents: [GradNode?]
    /// The closure, which holds the tensors the op saved; dropped once it has run, so that a
    /// backward pass frees each op's saved tensors as it goes (like PyTorch without
    /// `retain_graph`).
    private(set) var backward: ((Tensor) -> [Tensor?])?
    let op: String
    let isLeaf: Bool
    /// Accumulated gradient (leaves only).
    var grad: Tensor?

    init(op: String, parents: [GradNode?], backward: ((Tensor) -> [Tensor?])?) {
        self.op = op
        self.parents = parents
        self.backward = backward
        isLeaf = backward == nil
    }

    func releaseSavedTensors() { backward = nil }
}

/// Whether ops record the autodiff graph on this thread.
public enum GradMode {
    public static var isEnabled: Bool { lathe_grad_enabled() != 0 }
}

/// Runs `body` without recording gradients (like `torch.no_grad()`).
public func noGrad<R>(_ body: () throws -> R) rethrows -> R {
    let was = lathe_grad_enabled()
    lathe_set_grad_enabled(0)
    defer { lathe_set_grad_enabled(was) }
    return try body()
}

/// Runs `body` with gradient recording switched on.
func withGrad<R>(_ body: () throws -> R) rethrows -> R {
    let was = lathe_grad_enabled()
    lathe_set_grad_enabled(1)
    defer { lathe_set_grad_enabled(was) }
    return try body()
}

extension Tensor {
    /// True when this tensor is a leaf that wants a gradient or was computed from one.
    public var requiresGrad: Bool { node != nil }

    /// The same values as a leaf that accumulates a gradient in ``grad`` (like
    /// `requires_grad_()`). Only float32 tensors can require gradients.
    public func requiringGrad(_ flag: Bool = true) -> Tensor {
        precondition(!flag || dtype == .float32, "requiringGrad: only float32 tensors take gradients, not \(dtype)")
        var t = self
        t.node = flag ? GradNode(op: "leaf", parents: [], backward: nil) : nil
        return t
    }

    /// The same values, cut from the autodiff graph.
    public func detached() -> Tensor {
        var t = self
        t.node = nil
        return t
    }

    /// The gradient accumulated by ``backward(_:)`` for a leaf, or nil. Setting it (on a
    /// leaf) replaces the accumulated gradient, as optimisers and clipping do.
    public var grad: Tensor? {
        get { node?.grad }
        nonmutating set { node?.grad = newValue }
    }

    /// Clears the accumulated gradient of a leaf.
    public func zeroGrad() { node?.grad = nil }

    /// Records `self` as the output of an op on `inputs`, when grad mode is on and some input
    /// requires a gradient. `backward` maps the output gradient to one gradient per input.
    /// (Package-wide, so that layers outside this module whose kernels live elsewhere, such as
    /// quantized ones, can record their own backward.)
    package func recorded(_ op: String, _ inputs: [Tensor], _ backward: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        guard GradMode.isEnabled, inputs.contains(where: { $0.node != nil }) else { return self }
        var t = self
        t.node = GradNode(op: op, parents: inputs.map(\.node), backward: backward)
        return t
    }

    /// Reverse-mode autodiff: adds d(self)/d(leaf) · `gradient` to every leaf's ``grad``.
    ///
    /// - Parameter gradient: the seed, of this tensor's shape. May be omitted only for a
    ///   one-element tensor (then it is 1).
    ///
    /// Gradients of a tensor used several times are summed. Backward closures run without
    /// recording, so higher-order gradients are not available.
    public func backward(_ gradient: Tensor? = nil) {
        guard let root = node else {
            preconditionFailure("backward: tensor of shape \(shape) does not require grad (no input had requiringGrad())")
        }
        let seed: Tensor
        if let g = gradient {
            precondition(g.shape == shape, "backward: seed gradient shape \(g.shape) does not match output shape \(shape)")
            seed = g.detached()
        } else {
            precondition(count == 1, "backward: output of shape \(shape) is not a scalar; pass a seed gradient")
            seed = Tensor.ones(shape)
        }
        // Topological order by iterative depth-first search.
        var order: [GradNode] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(GradNode, Int)] = [(root, 0)]
        visited.insert(ObjectIdentifier(root))
        while let (n, i) = stack.popLast() {
            if i < n.parents.count {
                stack.append((n, i + 1))
                if let p = n.parents[i], visited.insert(ObjectIdentifier(p)).inserted {
                    stack.append((p, 0))
                }
            } else {
                order.append(n)
            }
        }
        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): seed]
        noGrad {
            for n in order.reversed() {
                guard let g = grads.removeValue(forKey: ObjectIdentifier(n)) else { continue }
                if n.isLeaf {
                    n.grad = n.grad.map { $0 + g } ?? g.contiguousStorageView()
                    continue
                }
                guard let bw = n.backward else {
                    preconditionFailure("backward: the graph through '\(n.op)' was already used by a backward pass, which freed its saved tensors; run the forward again")
                }
                n.releaseSavedTensors()
                let inputGrads = bw(g)
                for (p, ig) in zip(n.parents, inputGrads) {
                    guard let p, let ig else { continue }
                    let key = ObjectIdentifier(p)
                    grads[key] = grads[key].map { $0 + ig } ?? ig
                }
            }
        }
    }
}

/// Gradient checkpointing: runs `body` on `inputs` without keeping its intermediate
/// activations, and runs it again in the backward pass to get the gradients.
///
/// Parameters that `body` captures (leaves that require grad) receive their gradients
/// during that recomputation. `body` must be deterministic (same outputs when re-run); draw
/// any randomness (dropout masks) from a generator state it captures by value.
///
/// - Returns: `body`'s output, recorded as one op whose inputs are `inputs`.
public func checkpoint(_ inputs: [Tensor], _ body: @escaping ([Tensor]) -> Tensor) -> Tensor {
    let detachedInputs = inputs.map { $0.detached() }
    let out = noGrad { body(detachedInputs) }
    guard GradMode.isEnabled else { return out }
    // A marker parent so parameters captured by `body` still make the output require grad.
    let marker = Tensor.zeros([]).requiringGrad()
    let recordedInputs = inputs + [marker]
    return out.detached().recorded("checkpoint", recordedInputs) { g in
        let fresh = detachedInputs.enumerated().map { i, t in inputs[i].requiresGrad ? t.requiringGrad() : t }
        let recomputed = withGrad { body(fresh) }
        if recomputed.requiresGrad {
            withGrad { recomputed.backward(g) }
        }
        return fresh.map { $0.grad } + [nil]
    }
}
