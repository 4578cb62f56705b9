import LatheTensor

/// How a loss combines per-element values.
public enum Reduction: String, Sendable { case mean, sum, none }

/// Loss functions with PyTorch's definitions and defaults (`torch.nn.functional`).
public enum Loss {
    /// Cross-entropy on logits `[N, C]` (or `[N, C, d...]`) against class ids `[N]`
    /// (or `[N, d...]`, int64):
    /// `loss_i = -(1 - s) w[y_i] log p_i[y_i] - (s / C) sum_c w[c] log p_i[c]`.
    ///
    /// - Parameters:
    ///   - weight: per-class weights `[C]`; the mean divides by the sum of `w[y_i]`.
    ///   - labelSmoothing: `s` in `[0, 1]`.
    ///   - ignoreIndex: targets equal to it contribute nothing (and are not counted).
    public static func crossEntropy(_ logits: Tensor, _ targets: Tensor, weight: Tensor? = nil, labelSmoothing: Float = 0,
                                    ignoreIndex: Int? = -100, reduction: Reduction = .mean) -> Tensor {
        nllWithSmoothing(logits.logSoftmax(dim: 1), targets, weight: weight, labelSmoothing: labelSmoothing,
                         ignoreIndex: ignoreIndex, reduction: reduction)
    }

    /// Negative log-likelihood on log-probabilities `[N, C]` against class ids `[N]`.
    public static func nll(_ logProbs: Tensor, _ targets: Tensor, weight: Tensor? = nil, ignoreIndex: Int? = -100,
                           reduction: Reduction = .mean) -> Tensor {
        nllWithSmoothing(logProbs, targets, weight: weight, labelSmoothing: 0, ignoreIndex: ignoreIndex, reduction: reduction)
    }

    private static func nllWithSmoothing(_ logProbs: Tensor, _ targets: Tensor, weight: Tensor?, labelSmoothing: Float,
                                         ignoreIndex: Int?, reduction: Reduction) -> Tensor {
        // Move classes last and flatten: [M, C] against [M].
        let c = logProbs.shape[1]
        let lp = logProbs.rank == 2 ? logProbs : logProbs.permuted([0] + Array(2..<logProbs.rank) + [1]).reshaped([-1, c])
        let t = targets.reshaped([-1])
        precondition(lp.shape[0] == t.count, "cross_entropy: \(logProbs.shape) logits do not match \(targets.shape) targets")
        let ids = t.intScalars
        let ignored = ids.map { $0 == ignoreIndex }
        for (i, id) in ids.enumerated() where !ignored[i] {
            precondition(id >= 0 && id < c, "cross_entropy: target \(id) out of range for \(c) classes")
        }
        let safeIds = Tensor(zip(ids, ignored).map { $1 ? 0 : $0 }, shape: [ids.count, 1])
        let keep = Tensor(ignored.map { $0 ? 0 : 1 }, shape: [ids.count]).to(.float32)
        let w = weight.map { $0.detached() } ?? Tensor.ones([c])
        let wTarget = w.indexSelect(dim: 0, index: safeIds.reshaped([-1])) * keep   // [M]
        var perItem = -lp.gathering(dim: 1, index: safeIds).reshaped([-1]) * wTarget
        if labelSmoothing > 0 {
            let smooth = -(lp * w).sum(dim: 1) * keep / Float(c)
            perItem = perItem * (1 - labelSmoothing) + smooth * labelSmoothing
        }
        switch reduction {
        case .none: return perItem.reshaped(targets.shape)
        case .sum: return perItem.sum()
        case .mean: return perItem.sum() / wTarget.sum()
        }
    }

    /// The causal language-modelling loss as transformers computes it: logits `[B, T, V]` at
    /// position `t` predict `labels[:, t + 1]` (`[B, T]` class ids), the mean cross-entropy over the
    /// labels that are not `ignoreIndex`. NaN when every shifted label is ignored (as PyTorch).
    public static func nextTokenCrossEntropy(_ logits: Tensor, labels: Tensor, ignoreIndex: Int = -100) -> Tensor {
        precondition(logits.rank == 3 && labels.shape == Array(logits.shape.prefix(2)),
                     "next_token_cross_entropy: logits \(logits.shape) should be [B, T, V] and labels \(labels.shape) [B, T]")
        let (b, t, v) = (logits.shape[0], logits.shape[1], logits.shape[2])
        let shifted = logits.sliced(dim: 1, end: t - 1).reshaped([b * (t - 1), v])
        let targets = labels.sliced(dim: 1, start: 1).contiguous().reshaped([b * (t - 1)])
        return crossEntropy(shifted, targets, ignoreIndex: ignoreIndex)
    }

    /// Mean squared error `(x - y)^2`.
    public static func mse(_ x: Tensor, _ y: Tensor, reduction: Reduction = .mean) -> Tensor {
        reduce((x - y).square(), reduction)
    }

    /// Mean absolute error `|x - y|`.
    public static func l1(_ x: Tensor, _ y: Tensor, reduction: Reduction = .mean) -> Tensor {
        reduce((x - y).abs(), reduction)
    }

    /// Huber loss: `0.5 d^2` where `|d| < delta`, else `delta (|d| - 0.5 delta)`.
    public static func huber(_ x: Tensor, _ y: Tensor, delta: Float = 1, reduction: Reduction = .mean) -> Tensor {
        let d = (x - y).abs()
        let quadratic = d.clamped(max: delta)
        return reduce(quadratic.square() * 0.5 + (d - quadratic) * delta, reduction)
    }

    /// Binary cross-entropy on logits, computed stably:
    /// `max(x, 0) - x y + log(1 + exp(-|x|))`, with an optional positive-class weight.
    public static func binaryCrossEntropyWithLogits(_ logits: Tensor, _ targets: Tensor, posWeight: Tensor? = nil,
                                                    reduction: Reduction = .mean) -> Tensor {
        let logSigmoidNeg = (-logits).softplus()          // -log(sigmoid(x))
        let logSigmoidPos = logits.softplus()             // -log(1 - sigmoid(x))
        let positive = posWeight.map { targets * $0 } ?? targets
        return reduce(positive * logSigmoidNeg + (1 - targets) * logSigmoidPos, reduction)
    }

    /// KL divergence `sum target (log target - input)` with `input` as log-probabilities
    /// (PyTorch's `kl_div`); `batchMean` divides the sum by the batch size.
    public static func klDivergence(_ input: Tensor, _ target: Tensor, logTarget: Bool = false, batchMean: Bool = true) -> Tensor {
        let pointwise = logTarget ? target.exp() * (target - input) : target * ((target.clamped(min: 1e-38)).log() - input)
        let s = pointwise.sum()
        return batchMean ? s / Float(input.shape.first ?? 1) : s
    }

    private static func reduce(_ x: Tensor, _ r: Reduction) -> Tensor {
        switch r {
        case .mean: x.mean()
        case .sum: x.sum()
        case .none: x
        }
    }
}
