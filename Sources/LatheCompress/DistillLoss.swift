import LatheNN
import LatheTensor

/// Knowledge-distillation losses (Hinton, Vinyals & Dean 2015, https://arxiv.org/abs/1503.02531).
public enum Distillation {
    /// The soft-target term `T^2 KL(softmax(teacher / T) || softmax(student / T))`, averaged
    /// over the batch.
    ///
    /// As PyTorch's `T * T * F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1),
    /// reduction="batchmean")`: `sum_i sum_c p_t (log p_t - log p_s) / N`, the KL of the
    /// student from the teacher. The `T^2` keeps its gradient scale independent of `T`.
    /// The teacher's logits are detached.
    ///
    /// - Parameters:
    ///   - student: logits `[N, C]`.
    ///   - teacher: logits `[N, C]`.
    public static func softTargetLoss(student: Tensor, teacher: Tensor, temperature: Float = 4) -> Tensor {
        precondition(student.shape == teacher.shape && student.rank == 2,
                     "Distillation: student logits \(student.shape) and teacher logits \(teacher.shape) must both be [N, C]")
        precondition(temperature > 0, "Distillation: temperature must be positive, got \(temperature)")
        let logP = (student / temperature).logSoftmax(dim: 1)
        let logQ = (teacher.detached() / temperature).logSoftmax(dim: 1)
        return Loss.klDivergence(logP, logQ, logTarget: true, batchMean: true) * (temperature * temperature)
    }

    /// `alpha CE(student, labels) + (1 - alpha) T^2 KL(softmax(teacher / T) || softmax(student / T))`.
    ///
    /// With `alpha = 1` this is the cross-entropy alone (the KL term is not computed).
    public static func loss(student: Tensor, teacher: Tensor, labels: Tensor, alpha: Float = 0.5, temperature: Float = 4,
                            labelSmoothing: Float = 0) -> Tensor {
        precondition(alpha >= 0 && alpha <= 1, "Distillation: alpha must be in [0, 1], got \(alpha)")
        let ce = Loss.crossEntropy(student, labels, labelSmoothing: labelSmoothing)
        if alpha == 1 { return ce }
        let kd = softTargetLoss(student: student, teacher: teacher, temperature: temperature)
        return alpha == 0 ? kd : ce * alpha + kd * (1 - alpha)
    }

    /// Mean squared error between a student activation and a (detached) teacher activation,
    /// both flattened to `[N, D]`, the student's first mapped by `projection` when its width
    /// differs (FitNets, Romero et al. 2015, https://arxiv.org/abs/1412.6550).
    public static func featureLoss(student: Tensor, teacher: Tensor, projection: Linear? = nil) -> Tensor {
        var s = student.flattened(from: 1)
        let t = teacher.detached().flattened(from: 1)
        if let projection { s = projection(s) }
        precondition(s.shape == t.shape, "Distillation: student features \(s.shape) do not match teacher features \(t.shape); add a projection")
        return Loss.mse(s, t)
    }
}
