import Foundation
import LatheCompress
import LatheData
import LatheIO
import LatheNN
import LatheTensor
import LatheTrain

/// Accuracy and speed of pruning and distillation on the bundled digits (`lathe bench
/// compress`, about a minute): the demo CNN is the teacher and the baseline, and every variant
/// is a stage of the compression pipeline (``CompressionRun``), measured by the report's code.
public enum CompressionBenchmark {
    /// Fine-tuning steps after each pruning (AdamW at lr 1e-3, cosine, no warm-up).
    public static let finetuneSteps = 200

    /// The stages: 50% structured, 90% unstructured (layer-wise, global, gradual), 2:4, and a
    /// student with 7% of the teacher's parameters distilled for 600 and 2000 steps on the
    /// images as they are and for 2000 steps on images shifted by up to a pixel, each against
    /// the same student trained on the labels alone (3 seeds).
    public static var stages: [CompressSpec.Stage] {
        func prune(_ name: String, _ method: PruneMethod, gradual: Bool = false) -> CompressSpec.Stage {
            var s = CompressSpec.Stage(name: name, method: .prune)
            (s.prune, s.sparsity, s.ratio, s.gradual, s.steps, s.lr) = (method, 0.9, 0.5, gradual, finetuneSteps, 1e-3)
            return s
        }
        var out = [prune("structured-50", .structured), prune("sparse-90-layerwise", .magnitude), prune("sparse-90-global", .global),
                   prune("sparse-90-gradual", .global, gradual: true), prune("2to4", .twoFour)]
        for (steps, shift) in [(600, 0), (2000, 0), (2000, 1)] {
            var s = CompressSpec.Stage(name: "student-\(steps)" + (shift > 0 ? "-shift\(shift)" : ""), method: .distill)
            (s.student, s.steps, s.lr, s.alpha, s.temperature, s.seeds) = (["model.channels=[8, 16]", "model.hidden=32"], steps, 3e-3, 0.3, 4, 3)
            s.augmentation = ImageAugmentation(shift: shift)
            out.append(s)
        }
        return out
    }

    public struct Result {
        public var teacher: TrainSummary
        /// Validation accuracy of each prunable weight at each sparsity, one weight pruned at a time.
        public var sensitivity: SensitivityScan
        /// The teacher first, then each variant file.
        public var rows: [VariantRow]
        public var stages: [(stage: CompressSpec.Stage, output: StageOutput)]
    }

    /// Trains the teacher (the demo recipe) and runs every stage in a scratch directory.
    public static func run(log: @escaping (String) -> Void = { _ in }) throws -> Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-bench-compress-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = RecipeSource(text: Recipe.demoYAML, file: "demo recipe", overrides: ["output=\(directory.appendingPathComponent("teacher").path)"])
        let recipe = try source.recipe()
        let trainer = try Trainer(recipe: recipe)
        let summary = try trainer.run()
        log("teacher: \(trainer.model.parameterCount()) parameters, validation \(summary.validation.map(scoreText) ?? "-"), "
            + "test \(summary.test.map(scoreText) ?? "-") (\(summary.steps) steps)")
        let scan = sensitivityScan(trainer.model) { trainer.evaluate(.validation).accuracy ?? 0 }
        let variants = directory.appendingPathComponent("variants")
        try FileManager.default.createDirectory(at: variants, withIntermediateDirectories: true)
        let teacherURL = variants.appendingPathComponent("teacher.safetensors")
        try SafeTensors.write(trainer.model.stateDict(), metadata: [VariantMetadata.description: "the demo CNN"], to: teacherURL)
        let run = CompressionRun(source: source, recipe: recipe, task: trainer.task, baseline: trainer.model.stateDict(), directory: variants,
                                 calibrationBatches: 1, log: log)
        var files = [VariantFile(name: "teacher", url: teacherURL)]
        var outputs: [(stage: CompressSpec.Stage, output: StageOutput)] = []
        for s in stages {
            log("stage \(s.name)")
            let out = try run.run(s)
            files += out.files
            outputs.append((s, out))
        }
        let rows = try measureVariants(files, recipe: recipe, source: source, task: trainer.task, log: log)
        return Result(teacher: summary, sensitivity: scan, rows: rows, stages: outputs)
    }
}
