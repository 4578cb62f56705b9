import ArgumentParser
import Foundation
import Lathe

struct Compress: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a recipe's compress: pipeline (quantize, QAT, prune, distill) and write a report comparing the variants.",
        discussion: """
        Trains the baseline with the recipe (or takes --model), makes each variant of the recipe's compress: section from \
        the baseline's weights, then measures them all (parameters, non-zero, file bytes, test accuracy, latency at batch 1 \
        and 64) into <output>/report.md and <output>/pareto.svg. Variant files go to <output>/variants/.
        Example: lathe compress Recipes/compress-digits.yaml
        """
    )

    @Argument(help: "A recipe with a compress: section.") var recipe: String
    @Option(help: "Trained fp32 weights to start from (default: train the recipe first).") var model: String?
    @Option(help: "Run only these stages (comma-separated names).") var only: String?
    @Option(name: .customLong("set"), help: "Override a recipe key: --set key.path=value.") var overrides: [String] = []
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        let source = try RecipeSource.file(URL(fileURLWithPath: recipe), overrides: overrides)
        var r = try source.recipe()
        try threadOptions.apply(to: &r)
        let result = try CompressPipeline.run(source: source, recipe: r, only: only.map(commaList), baselineWeights: model.map { URL(fileURLWithPath: $0) }) {
            print($0)
        }
        print(try String(contentsOf: result.report, encoding: .utf8))
        print(String(format: "wrote %@ and %@ (%.0f s in all)", result.report.path, result.chart.path, result.seconds))
    }
}

struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a smaller student on a trained teacher's soft targets (knowledge distillation) and compare it with the student trained alone.",
        discussion: """
        loss = alpha * CE(labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T)). The student is the \
        recipe's model with the --student overrides (e.g. --student model.channels=[8,16] --student model.hidden=32). With \
        --seeds N both the KD student and the plain one (alpha 1: labels only, same steps, batches and initialisation) are \
        trained for N seeds and their mean test accuracies printed; the first KD student is saved.
        Example: lathe distill Recipes/digits-cnn.yaml --teacher runs/digits-cnn/best.safetensors --student model.channels=[8,16] --student model.hidden=32 --output student.safetensors
        """
    )

    @Argument(help: "The recipe that describes the teacher's model and the data.") var recipe: String
    @Option(help: "The teacher's trained weights.") var teacher: String
    @Option(help: "A model key of the student, as key=value (repeatable).") var student: [String] = []
    @Option(help: "Training steps.") var steps: Int = 1000
    @Option(help: "Learning rate (AdamW, warm-up then cosine).") var lr: Float = 3e-3
    @Option(help: "Weight of the hard-label loss (1: no distillation).") var alpha: Float = 0.5
    @Option(help: "Softmax temperature.") var temperature: Float = 4
    @Option(help: "Seeds to compare KD with the plain student over.") var seeds: Int = 1
    @Option(help: "Shift the distillation images by up to this many pixels, for both students (default: the recipe's data.augment.shift).")
    var augmentShift: Int?
    @Flag(inversion: .prefixedNo, help: "Mirror half the distillation images left to right (default: the recipe's data.augment.horizontal_flip).")
    var augmentFlip: Bool?
    @Option(help: "Where to write the (first) KD student's state dict.") var output: String
    @Option(name: .customLong("set"), help: "Override a recipe key: --set key.path=value.") var overrides: [String] = []
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1, got \(steps)") }
        guard lr > 0 else { throw ValidationError("--lr must be positive, got \(lr)") }
        guard (0...1).contains(alpha) else { throw ValidationError("--alpha must be in [0, 1], got \(alpha)") }
        guard temperature > 0 else { throw ValidationError("--temperature must be positive, got \(temperature)") }
        guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1, got \(seeds)") }
        guard (0...4096).contains(augmentShift ?? 0) else { throw ValidationError("--augment-shift must be a number of pixels from 0 to 4096") }
        if let bad = student.first(where: { !$0.hasPrefix("model.") || !$0.contains("=") }) {
            throw ValidationError("--student takes model keys as model.key=value (e.g. model.hidden=32), not '\(bad)'")
        }
    }

    func run() throws {
        let source = try RecipeSource.file(URL(fileURLWithPath: recipe), overrides: overrides)
        var r = try source.recipe()
        try threadOptions.apply(to: &r)
        _ = try source.recipe(extra: student)  // checks the student's keys
        let trainer = try Trainer(recipe: r)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-distill-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var stage = CompressSpec.Stage(name: "student", method: .distill)
        (stage.student, stage.steps, stage.lr, stage.alpha, stage.temperature, stage.seeds) = (student, steps, lr, alpha, temperature, seeds)
        if augmentShift != nil || augmentFlip != nil {
            stage.augmentation = ImageAugmentation(shift: augmentShift ?? r.data.augmentation.shift,
                                                   horizontalFlip: augmentFlip ?? r.data.augmentation.horizontalFlip)
        }
        let run = CompressionRun(source: source, recipe: r, task: trainer.task,
                                 baseline: try SafeTensors.read(contentsOf: URL(fileURLWithPath: teacher)).tensors,
                                 directory: directory, calibrationBatches: 1, log: { print($0) })
        let out = try run.distill(stage)
        try? FileManager.default.removeItem(atPath: output)
        try FileManager.default.copyItem(at: out.files[0].url, to: URL(fileURLWithPath: output))
        for n in out.notes { print(n.replacingOccurrences(of: "`", with: "")) }
        print("saved \(output) (lathe report loads it: the student's model keys are in its metadata)")
    }
}
