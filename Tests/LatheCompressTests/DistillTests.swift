import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// The distillation loss against hand computations and finite differences, and the Distiller.
final class DistillTests: XCTestCase {
    let student = Tensor([1.0, -0.5, 0.2, /**/ 0.3, 0.9, -1.2], shape: [2, 3])
    let teacher = Tensor([2.0, 0.1, -1.0, /**/ -0.4, 1.5, 0.0], shape: [2, 3])
    let labels = Tensor([0, 2])

    func softmax(_ row: [Double]) -> [Double] {
        let m = row.max()!, e = row.map { Foundation.exp($0 - m) }, s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    func testLossMatchesHandComputation() {
        let (alpha, t) = (0.3, 2.0)
        let s = student.scalars.map(Double.init), q = teacher.scalars.map(Double.init)
        var ce = 0.0, kl = 0.0
        for i in 0..<2 {
            let srow = Array(s[(3 * i)..<(3 * i + 3)]), trow = Array(q[(3 * i)..<(3 * i + 3)])
            ce -= Foundation.log(softmax(srow)[labels.intScalars[i]])
            let ps = softmax(srow.map { $0 / t }), pt = softmax(trow.map { $0 / t })
            // KL(teacher || student) = sum p_t (log p_t - log p_s), as F.kl_div(log p_s, p_t).
            for c in 0..<3 { kl += pt[c] * (Foundation.log(pt[c]) - Foundation.log(ps[c])) }
        }
        ce /= 2
        kl /= 2   // batchmean: divide by the batch size, not by N * C
        let expected = alpha * ce + (1 - alpha) * t * t * kl
        let got = Distillation.loss(student: student, teacher: teacher, labels: labels, alpha: Float(alpha), temperature: Float(t))
        XCTAssertEqual(Double(got.item), expected, accuracy: 1e-5)
        XCTAssertEqual(Double(Distillation.softTargetLoss(student: student, teacher: teacher, temperature: 2).item), t * t * kl, accuracy: 1e-5)
        // The reverse direction is a different number (so the test would catch a swap).
        XCTAssertGreaterThan(abs(Double(Distillation.softTargetLoss(student: teacher, teacher: student, temperature: 2).item) - t * t * kl), 1e-3)
        // The soft term vanishes when the student matches the teacher.
        XCTAssertEqual(Distillation.softTargetLoss(student: teacher, teacher: teacher).item, 0, accuracy: 1e-6)
    }

    func testAlphaOneIsCrossEntropy() {
        let kd = Distillation.loss(student: student, teacher: teacher, labels: labels, alpha: 1, temperature: 5)
        XCTAssertEqual(kd.item, Loss.crossEntropy(student, labels).item)
    }

    func testGradientMatchesFiniteDifferences() {
        var g = RandomGenerator(seed: 3)
        let x = Tensor.normal([4, 3], generator: &g)
        let w = Tensor.normal([5, 3], generator: &g) * 0.5
        let teacherLogits = Tensor.normal([4, 5], generator: &g)
        let y = Tensor([1, 4, 0, 2])
        // (Losses are reshaped to [1]: the helper sums `out * weights`, and `sum()` of a rank-0
        // tensor is not supported.)
        assertGradientsMatchFiniteDifferences([w], eps: 1e-2) { inputs in
            Distillation.loss(student: x.matmul(inputs[0].T), teacher: teacherLogits, labels: y, alpha: 0.4, temperature: 3).reshaped([1])
        }
        // The feature term through a (fixed) projection.
        let teacherFeatures = Tensor.normal([4, 2], generator: &g)
        let projection = Linear(5, 2, generator: &g)
        assertGradientsMatchFiniteDifferences([w], eps: 1e-2) { inputs in
            Distillation.featureLoss(student: x.matmul(inputs[0].T), teacher: teacherFeatures, projection: projection).reshaped([1])
        }
    }

    func testFeatureLossProjects() {
        var g = RandomGenerator(seed: 0)
        let p = Linear(3, 2, generator: &g)
        let s = Tensor.normal([4, 3], generator: &g), t = Tensor.normal([4, 2], generator: &g)
        let l = Distillation.featureLoss(student: s, teacher: t, projection: p)
        XCTAssertEqual(l.item, ((p(s) - t).square().mean()).item, accuracy: 1e-6)
    }

    /// A tiny student learns a fixed teacher; the teacher is untouched and stays in training
    /// mode afterwards if it was in it (it runs in eval mode for the targets).
    func testDistillerTrainsStudentNotTeacher() {
        let teacher = Models.digitsMLP(hidden: 32, seed: 1)
        let student = Models.digitsMLP(hidden: 8, seed: 2)
        let teacherBefore = teacher.stateDict()
        var g = RandomGenerator(seed: 4)
        let x = Tensor.normal([32, 64], generator: &g)
        let y = noGrad { teacher(x) }.argmax(dim: 1)
        let distiller = Distiller(student: student, teacher: teacher, alpha: 0.2, temperature: 2) { AdamW($0, learningRate: 1e-2) }
        let losses = distiller.run(steps: 60) { _ in (x, y) }
        XCTAssertEqual(losses.count, 60)
        XCTAssertLessThan(losses.last!, losses.first! * 0.8)
        student.eval()
        let agreement = zip(noGrad { student(x) }.argmax(dim: 1).intScalars, y.intScalars).filter { $0 == $1 }.count
        XCTAssertGreaterThanOrEqual(agreement, 28, "the student should reproduce the teacher's decisions on its training batch")
        for (k, v) in teacher.stateDict() { XCTAssertEqual(v.scalars, teacherBefore[k]!.scalars, k) }
        XCTAssertTrue(teacher.parameters.allSatisfy { $0.grad == nil }, "the teacher must run under noGrad")
        XCTAssertTrue(teacher.isTraining)
    }

    func testDistillerWithFeatureMatchingAndMasks() {
        let teacher = DigitsCNN(seed: 1)
        let student = Models.digitsMLP(hidden: 16, seed: 2)
        let masks = pruneMagnitude(student, sparsity: 0.5)
        var g = RandomGenerator(seed: 0)
        let projection = Linear(16, 128, generator: &g)
        let projectionBefore = projection.weight.value.scalars
        let features = FeatureMatching(
            student: { x in
                let h = student.layers[1](student.layers[0](x.flattened(from: 1)))
                return (student.layers[4](student.layers[3](student.layers[2](h))), [h])
            },
            teacher: { x in
                var h = teacher.bn1(teacher.conv1(x)).relu().maxPool2d(kernel: (2, 2))
                h = teacher.bn2(teacher.conv2(h)).relu().maxPool2d(kernel: (2, 2))
                let f = teacher.fc1(h.flattened(from: 1)).relu()
                return (teacher.fc2(f), [f])
            },
            projections: [projection], weight: 0.5)
        let distiller = Distiller(student: student, teacher: teacher, features: features, masks: masks)
        var r = RandomGenerator(seed: 1)
        let x = Tensor.uniform([16, 1, 8, 8], generator: &r), y = Tensor.randint([16], low: 0, high: 10, generator: &r)
        let losses = distiller.run(steps: 10) { _ in (x, y) }
        XCTAssertTrue(losses.allSatisfy(\.isFinite))
        XCTAssertLessThan(losses.last!, losses.first!)
        XCTAssertNotEqual(projection.weight.value.scalars, projectionBefore, "the projection is trained")
        XCTAssertEqual(sparsityReport(student).overall.sparsity, 0.5, accuracy: 1e-3)
    }
}
