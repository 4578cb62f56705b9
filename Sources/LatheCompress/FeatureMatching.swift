import LatheNN
import LatheTensor

/// Intermediate activations to match between student and teacher (hint learning), for
/// `LatheTrain`'s `DistillationTask` and `Distiller`.
///
/// Each closure runs its model on a batch and returns the logits with the chosen
/// activations, in the same order for both; pair `i` adds
/// `weight * MSE(projections[i](student_i), teacher_i)` (flattened to `[N, D]`) to the loss.
public struct FeatureMatching {
    public var student: (Tensor) -> (logits: Tensor, features: [Tensor])
    public var teacher: (Tensor) -> (logits: Tensor, features: [Tensor])
    /// A learned map per pair from the student's width to the teacher's (nil: same width).
    /// Its parameters are trained with the student.
    public var projections: [Linear?]
    public var weight: Float

    public init(student: @escaping (Tensor) -> (logits: Tensor, features: [Tensor]),
                teacher: @escaping (Tensor) -> (logits: Tensor, features: [Tensor]),
                projections: [Linear?] = [], weight: Float = 1) {
        (self.student, self.teacher, self.projections, self.weight) = (student, teacher, projections, weight)
    }
}
