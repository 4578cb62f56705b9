import ArgumentParser
import Foundation
import Lathe

/// Until the training stack lands (layers, optimisers, data sets), the demo shows the engine
/// on its own: a two-layer network learns a three-arm spiral with tensors, autodiff and SGD.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a small network on a synthetic spiral with Lathe's engine and report its accuracy."
    )

    @OptionGroup var threadOptions: ThreadOptions
    @Option(help: "Training steps.") var steps: Int = 400
    @Option(help: "Random seed.") var seed: UInt64 = 0

    func run() throws {
        try threadOptions.apply()
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        let start = now()
        var rng = RandomGenerator(seed: seed)
        let (x, y) = spiral(pointsPerClass: 200, classes: 3, generator: &rng)
        let (testX, testY) = spiral(pointsPerClass: 100, classes: 3, generator: &rng)
        let hidden = 64
        var w1 = Init.kaimingUniform([hidden, 2], generator: &rng).requiringGrad()
        var b1 = Tensor.zeros([hidden]).requiringGrad()
        var w2 = Init.kaimingUniform([3, hidden], generator: &rng).requiringGrad()
        var b2 = Tensor.zeros([3]).requiringGrad()
        func forward(_ input: Tensor) -> Tensor {
            (input.matmul(w1.T) + b1).relu().matmul(w2.T) + b2
        }
        print("Lathe demo: 2-64-3 network on a 3-arm spiral (\(x.shape[0]) train / \(testX.shape[0]) test points)")
        print("kernels \(KernelInfo.isaName), threads \(ThreadPool.threadCount)")
        let lr: Float = 0.5
        for step in 1...steps {
            let logits = forward(x)
            let loss = -logits.logSoftmax(dim: 1).gathering(dim: 1, index: y.unsqueezed(1)).mean()
            loss.backward()
            guard loss.item.isFinite else {
                throw ValidationError("loss became \(loss.item) at step \(step); lower the learning rate")
            }
            noGrad {
                w1 = (w1 - w1.grad! * lr).requiringGrad()
                b1 = (b1 - b1.grad! * lr).requiringGrad()
                w2 = (w2 - w2.grad! * lr).requiringGrad()
                b2 = (b2 - b2.grad! * lr).requiringGrad()
            }
            if step % 100 == 0 || step == 1 {
                print(String(format: "step %4d  loss %.4f", step, loss.item))
            }
        }
        let predictions = noGrad { forward(testX) }.argmax(dim: 1).intScalars
        let correct = zip(predictions, testY.intScalars).filter { $0 == $1 }.count
        print(String(format: "test accuracy %.1f%% (%d/%d) in %.2f s", 100 * Double(correct) / Double(predictions.count),
                     correct, predictions.count, now() - start))
    }

    /// Points on `classes` spiral arms with noise: features [n, 2], labels [n] (int64).
    func spiral(pointsPerClass: Int, classes: Int, generator: inout RandomGenerator) -> (Tensor, Tensor) {
        let n = pointsPerClass * classes
        let noise = Tensor.normal([n], std: 0.2, generator: &generator).scalars
        var features: [Float] = [], labels: [Int] = []
        for c in 0..<classes {
            for i in 0..<pointsPerClass {
                let r = Float(i) / Float(pointsPerClass)
                let t = Float(c) * 4 + r * 4 + noise[c * pointsPerClass + i]
                features += [r * Foundation.sin(t), r * Foundation.cos(t)]
                labels.append(c)
            }
        }
        return (Tensor(features, shape: [n, 2]), Tensor(labels))
    }
}
