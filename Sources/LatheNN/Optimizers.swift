import CLatheKernels
import Foundation
import LatheTensor

/// Optimisers update parameters from their gradients. In order of increasing complexity:
/// ``SGD`` (with momentum and Nesterov), ``Adam`` and ``AdamW`` (one implementation; AdamW
/// decouples weight decay, Loshchilov & Hutter 2019).
///
/// State (moments, step count) is exposed as named tensors for checkpoints.
public class Optimizer {
    public let parameters: [(name: String, parameter: Parameter)]
    public var learningRate: Float
    /// Completed steps.
    public internal(set) var stepCount = 0
    /// Per-parameter state tensors by slot name (`exp_avg`, `momentum_buffer`, ...).
    var state: [String: [String: Tensor]] = [:]

    init(_ parameters: [(String, Parameter)], learningRate: Float) {
        self.parameters = parameters.map { (name: $0.0, parameter: $0.1) }
        self.learningRate = learningRate
    }

    /// Clears every parameter's gradient.
    public func zeroGrad() { for p in parameters { p.parameter.zeroGrad() } }

    /// Applies one update with the current gradients (parameters without one are skipped).
    public func step() {
        stepCount += 1
        for (name, p) in parameters where p.requiresGrad {
            guard let g = p.grad else { continue }
            // Taken out of the dictionary so the state tensors are uniquely owned (updated in place).
            var slots = state.removeValue(forKey: name) ?? [:]
            var value = p.value.detached()
            update(&value, grad: g.contiguous(), slots: &slots)
            state[name] = slots
            p.value = value
        }
    }

    /// The rule: changes `value` in place given `grad` and the parameter's state slots.
    func update(_ value: inout Tensor, grad: Tensor, slots: inout [String: Tensor]) {
        fatalError("subclass must implement update")
    }

    /// State as named tensors: `state.<param>.<slot>` and `step`.
    public func stateDict() -> [String: Tensor] {
        var out: [String: Tensor] = ["step": Tensor([stepCount], shape: [], dtype: .int64)]
        for (name, slots) in state { for (slot, t) in slots { out["state.\(name).\(slot)"] = t } }
        return out
    }

    /// Restores ``stateDict()`` output; slots for unknown parameters are an error.
    public func loadStateDict(_ dict: [String: Tensor]) throws(StateDictError) {
        let names = Set(parameters.map(\.name))
        var newState: [String: [String: Tensor]] = [:]
        for (key, t) in dict where key.hasPrefix("state.") {
            let rest = key.dropFirst("state.".count)
            guard let dot = rest.lastIndex(of: ".") else { throw .keys(missing: [], unexpected: [key]) }
            let name = String(rest[..<dot]), slot = String(rest[rest.index(after: dot)...])
            guard names.contains(name) else { throw .keys(missing: [], unexpected: [key]) }
            newState[name, default: [:]][slot] = t.contiguous()
        }
        state = newState
        stepCount = dict["step"]?.intScalars.first ?? 0
    }
}

/// Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and
/// (L2) weight decay, as PyTorch's `SGD`:
/// `g += wd p; b = mu b + (1 - dampening) g; p -= lr (nesterov ? g + mu b : b)`.
public final class SGD: Optimizer {
    public let momentum: Float, dampening: Float, weightDecay: Float, nesterov: Bool

    public init(_ parameters: [(String, Parameter)], learningRate: Float, momentum: Float = 0, dampening: Float = 0,
                weightDecay: Float = 0, nesterov: Bool = false) {
        precondition(!nesterov || (momentum > 0 && dampening == 0), "SGD: Nesterov needs momentum > 0 and no dampening")
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        super.init(parameters, learningRate: learningRate)
    }

    override func update(_ value: inout Tensor, grad: Tensor, slots: inout [String: Tensor]) {
        let n = value.count, lr = learningRate, mu = momentum, wd = weightDecay, damp = dampening, nest = nesterov
        let first = slots["momentum_buffer"] == nil
        var buffer = slots.removeValue(forKey: "momentum_buffer") ?? Tensor.zeros(mu == 0 ? [0] : value.shape)
        grad.withUnsafeBufferPointer { g in
            value.withUnsafeMutableBufferPointer { p in
                if mu == 0 {
                    for i in 0..<n { p[i] -= lr * (g[i] + wd * p[i]) }
                    return
                }
                buffer.withUnsafeMutableBufferPointer { b in
                    for i in 0..<n {
                        let d = g[i] + wd * p[i]
                        b[i] = first ? d : mu * b[i] + (1 - damp) * d
                        p[i] -= lr * (nest ? d + mu * b[i] : b[i])
                    }
                }
            }
        }
        if mu != 0 { slots["momentum_buffer"] = buffer }
    }
}

/// Adam (Kingma & Ba 2015), as PyTorch's `Adam`/`AdamW`:
/// `m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;`
/// `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
/// Weight decay is L2 (added to `g`) for Adam, decoupled (`p *= 1 - lr wd` first) for AdamW.
public class Adam: Optimizer {
    public let beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    let decoupled: Bool

    public init(_ parameters: [(String, Parameter)], learningRate: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999),
                eps: Float = 1e-8, weightDecay: Float = 0) {
        (beta1, beta2, self.eps, self.weightDecay, decoupled) = (betas.0, betas.1, eps, weightDecay, false)
        super.init(parameters, learningRate: learningRate)
    }

    init(_ parameters: [(String, Parameter)], learningRate: Float, betas: (Float, Float), eps: Float, weightDecay: Float,
         decoupled: Bool) {
        (beta1, beta2, self.eps, self.weightDecay, self.decoupled) = (betas.0, betas.1, eps, weightDecay, decoupled)
        super.init(parameters, learningRate: learningRate)
    }

    override func update(_ value: inout Tensor, grad: Tensor, slots: inout [String: Tensor]) {
        var m = slots.removeValue(forKey: "exp_avg") ?? Tensor.zeros(value.shape)
        var v = slots.removeValue(forKey: "exp_avg_sq") ?? Tensor.zeros(value.shape)
        let t = Double(stepCount)
        let bc1 = 1 - Foundation.pow(Double(beta1), t), bc2 = 1 - Foundation.pow(Double(beta2), t)
        let stepSize = Float(Double(learningRate) / bc1), bc2Sqrt = Float(bc2.squareRoot())
        let (b1, b2, eps, lr, wd, decoupled) = (beta1, beta2, self.eps, learningRate, weightDecay, self.decoupled ? 1 : 0)
        let n = value.count
        grad.withUnsafeBufferPointer { g in
            value.withUnsafeMutableBufferPointer { p in
                m.withUnsafeMutableBufferPointer { mp in
                    v.withUnsafeMutableBufferPointer { vp in
                        let (pp, gp, mq, vq) = (p.baseAddress!, g.baseAddress!, mp.baseAddress!, vp.baseAddress!)
                        // Elementwise: any split gives the same bits.
                        ThreadPool.forChunks(n, grain: 1 << 16) { r in
                            let o = r.lowerBound
                            lathe_adam_step_f32(r.count, pp + o, gp + o, mq + o, vq + o, lr, b1, b2, eps, wd, Int32(decoupled),
                                                stepSize, bc2Sqrt)
                        }
                    }
                }
            }
        }
        slots["exp_avg"] = m
        slots["exp_avg_sq"] = v
    }
}

/// Adam with decoupled weight decay (default 0.01, as PyTorch).
public final class AdamW: Adam {
    public override init(_ parameters: [(String, Parameter)], learningRate: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999),
                eps: Float = 1e-8, weightDecay: Float = 0.01) {
        super.init(parameters, learningRate: learningRate, betas: betas, eps: eps, weightDecay: weightDecay, decoupled: true)
    }
}

/// Scales all gradients so their global L2 norm is at most `maxNorm`; returns the norm
/// before clipping (as `torch.nn.utils.clip_grad_norm_`).
@discardableResult
public func clipGradNorm(_ parameters: [Parameter], maxNorm: Float) -> Float {
    let grads = parameters.compactMap(\.grad)
    let total = grads.reduce(Float(0)) { $0 + $1.square().sum().item }.squareRoot()
    let scale = maxNorm / (total + 1e-6)
    if scale < 1 {
        for p in parameters { if let g = p.grad { p.grad = g * scale } }
    }
    return total
}
