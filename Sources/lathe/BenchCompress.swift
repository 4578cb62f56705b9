import ArgumentParser
import Foundation
import Lathe

/// Accuracy and speed of pruning and distillation on the bundled digits, printed for the
/// record (it trains for about a minute):
///
///     lathe bench compress
///
/// The teacher is trained with `Recipes/digits-cnn.yaml` (`Recipe.demoYAML`); fine-tunes use
/// the same data order with `finetuneSteps` steps of AdamW at lr 1e-3 (cosine, no warm-up).
struct BenchCompress: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compress",
        abstract: "Accuracy and speed of pruning and distillation on the bundled digits (about a minute)."
    )

    let finetuneSteps = 200
    var directory = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-prune-\(UUID().uuidString)")

    enum CodingKeys: CodingKey {}

    func run() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        try measure()
    }

    func recipe(_ name: String, steps: Int? = nil, lr: Float? = nil) throws -> Recipe {
        var r = try Recipe.parse(Recipe.demoYAML)
        r.output = directory.appendingPathComponent(name).path
        if let steps {
            (r.training.epochs, r.training.steps) = (nil, steps)
            r.schedule.warmupSteps = 0
        }
        if let lr { r.optimizer.lr = lr }
        return r
    }

    func percent(_ e: Evaluation?) -> String { String(format: "%.2f%%", 100 * (e?.accuracy ?? .nan)) }

    func evaluate(_ model: Module, _ task: ClassificationTask, _ split: DataSplit) -> Evaluation {
        model.eval()
        defer { model.train() }
        return noGrad { task.evaluate(model, split: split) }
    }

    /// Test accuracy of the run's final weights (`Trainer.run` leaves the best-validation
    /// weights in the model, which for gradual pruning may predate the final sparsity).
    func finalTest(_ t: Trainer) throws -> Evaluation {
        try t.model.loadStateDict(SafeTensors.read(contentsOf: t.output.appendingPathComponent("model.safetensors")).tensors)
        return evaluate(t.model, t.task as! ClassificationTask, .test)
    }

    /// Mean seconds per forward pass at batch 64 (eval mode, no tape), after a warm-up.
    func forwardSeconds(_ model: Module, iterations: Int = 300) -> Double {
        model.eval()
        var g = RandomGenerator(seed: 0)
        let x = Tensor.uniform([64, 1, 8, 8], generator: &g)
        for _ in 0..<30 { _ = noGrad { model(x) } }
        var best = Double.infinity
        for _ in 0..<3 {
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<iterations { _ = noGrad { model(x) } }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(iterations))
        }
        return best
    }

    func measure() throws {
        // Teacher: the demo recipe.
        let teacherTrainer = try Trainer(recipe: try recipe("teacher"))
        let teacherSummary = try teacherTrainer.run()
        let teacher = teacherTrainer.model as! DigitsCNN
        let task = teacherTrainer.task as! ClassificationTask
        let teacherState = teacher.stateDict()
        print("teacher: \(teacher.parameterCount()) parameters, val \(percent(teacherSummary.validation)), test \(percent(teacherSummary.test)) (\(teacherSummary.steps) steps)")

        // Sensitivity of each layer (validation accuracy), and ratios within a 1-point drop.
        let scan = sensitivityScan(teacher) { self.evaluate(teacher, task, .validation).accuracy! }
        for name in prunableParameters(teacher) {
            print("sensitivity \(name): " + scan.rows(for: name).map { String(format: "%.1f:%.3f", $0.sparsity, $0.metric) }.joined(separator: " "))
        }
        print("ratios within a 1-point drop: \(scan.ratios(maxDrop: 0.01).sorted { $0.key < $1.key })")

        // 50% structured (L1), then a short fine-tune.
        let structured = try Trainer(recipe: try recipe("structured", steps: finetuneSteps, lr: 1e-3))
        try structured.model.loadStateDict(teacherState)
        let result = pruneChannels(structured.model, dependencies: ChannelDependency.digitsCNN, ratio: 0.5)
        let structuredBefore = evaluate(structured.model, task, .test)
        let structuredSummary = try structured.run()
        print("structured 50%: \(result.parametersBefore) -> \(result.parametersAfter) parameters; test \(percent(structuredBefore)) before, after \(finetuneSteps) fine-tune steps \(percent(try finalTest(structured))) (final), \(percent(structuredSummary.test)) (best val)")

        // Forward speed at batch 64.
        let original = DigitsCNN(seed: 0)
        try original.loadStateDict(teacherState)
        let tOriginal = forwardSeconds(original), tPruned = forwardSeconds(structured.model)
        print(String(format: "forward batch 64: original %.1f us, 50%% structured %.1f us, speed-up %.2fx",
                     tOriginal * 1e6, tPruned * 1e6, tOriginal / tPruned))

        // 90% unstructured: one-shot (layer-wise and global), then fine-tune with the masks.
        for scope in PruningScope.allCases {
            let t = try Trainer(recipe: try recipe("unstructured-\(scope)", steps: finetuneSteps, lr: 1e-3))
            try t.model.loadStateDict(teacherState)
            let masks = pruneMagnitude(t.model, sparsity: 0.9, scope: scope)
            let before = evaluate(t.model, task, .test)
            t.onStep = { _, _, _ in masks.apply(to: t.model) }
            let s = try t.run()
            print("unstructured 90% \(scope): test \(percent(before)) before, after fine-tune \(percent(try finalTest(t))) (final), \(percent(s.test)) (best val); sparsity \(String(format: "%.4f", sparsityReport(t.model).overall.sparsity))")
        }
        // 90% gradual (cubic over the first 3/4 of the fine-tune, every 10 steps).
        do {
            let t = try Trainer(recipe: try recipe("gradual", steps: finetuneSteps, lr: 1e-3))
            try t.model.loadStateDict(teacherState)
            let pruner = GradualPruner(t.model, schedule: CubicSparsitySchedule(final: 0.9, steps: finetuneSteps * 3 / 4, frequency: 10),
                                       scope: .global)
            t.onStep = { step, _, _ in pruner.update(step: step) }
            try t.run()
            print("unstructured 90% gradual (global): test \(percent(try finalTest(t))) (final); sparsity \(String(format: "%.4f", sparsityReport(t.model).overall.sparsity))")
            print(sparsityReport(t.model))
        }
        // 2:4, then fine-tune.
        do {
            let t = try Trainer(recipe: try recipe("2to4", steps: finetuneSteps, lr: 1e-3))
            try t.model.loadStateDict(teacherState)
            let masks = semiStructuredMasks(t.model)
            masks.apply(to: t.model)
            let before = evaluate(t.model, task, .test)
            t.onStep = { _, _, _ in masks.apply(to: t.model) }
            try t.run()
            print("2:4 (conv2, fc1, fc2): test \(percent(before)) before, \(percent(try finalTest(t))) after fine-tune (final); all 2:4: \(masks.names.allSatisfy { n in is2to4Sparse(t.model.namedParameters.first { $0.0 == n }!.1.value) })")
        }

        // Distillation: a CNN at 45% of the width (a structurally pruned, untrained DigitsCNN),
        // trained from scratch with and without the teacher, same steps and batches, with and
        // without shifting the images by up to a pixel.
        teacher.eval()
        let mean = { (a: [Double]) in a.reduce(0, +) / Double(a.count) }
        for (kdSteps, shift) in [(600, 0), (2000, 0), (2000, 1)] {
        let batches = task.with(augmentation: ImageAugmentation(shift: shift))
        var withKD: [Double] = [], withoutKD: [Double] = []
        for seed in [UInt64(1), 2, 3] {
            for alpha in [Float(0.3), 1] {
                let student = DigitsCNN(dropout: 0.1, seed: seed)
                pruneChannels(student, dependencies: ChannelDependency.digitsCNN, ratio: 0.55)
                precondition(student.parameterCount() * 4 <= teacher.parameterCount(), "the student must have at most a quarter of the teacher's parameters")
                let distiller = Distiller(student: student, teacher: teacher, alpha: alpha, temperature: 4,
                                          schedule: .cosine(totalSteps: kdSteps, minRate: 0)) { AdamW($0, learningRate: 3e-3) }
                distiller.run(steps: kdSteps) { batches.trainBatch($0) }
                let acc = evaluate(student, task, .test).accuracy!
                if alpha == 1 { withoutKD.append(acc) } else { withKD.append(acc) }
                print(String(format: "student %d steps shift %d seed %d alpha %.1f: %d parameters, test %.2f%%", kdSteps, shift, seed, alpha,
                             student.parameterCount(), 100 * acc))
            }
        }
        print(String(format: "KD student (alpha 0.3, T 4): mean test %.2f%%; without KD: %.2f%% (3 seeds, %d steps, %@)",
                     100 * mean(withKD), 100 * mean(withoutKD), kdSteps, shift == 0 ? "training images as they are" : "images shifted by up to \(shift) px"))
        }
    }
}
