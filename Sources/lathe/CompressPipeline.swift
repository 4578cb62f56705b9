import ArgumentParser
import Foundation
import Lathe

/// What a compression stage produced: variant files and lines for the report's notes.
struct StageOutput {
    var files: [(name: String, url: URL)] = []
    var notes: [String] = []
}

/// Runs the stages of a recipe's `compress:` section, each from the baseline weights.
struct CompressionRun {
    let recipe: Recipe
    let recipePath: String
    /// The command line's `--set` overrides (students add theirs on top).
    let overrides: [String]
    let task: TrainingTask
    let baseline: [String: Tensor]
    let directory: URL
    let calibrationBatches: Int
    var log: (String) -> Void = { print($0) }

    /// A trainer with the baseline weights; `finetune` makes it a fine-tuning run.
    func trainer(finetune: (steps: Int, lr: Float)? = nil) throws -> Trainer {
        var r = recipe
        if let finetune { fineTuning(&r, steps: finetune.steps, lr: finetune.lr) }
        let t = try Trainer(recipe: r, task: task)
        try t.model.loadStateDict(baseline)
        if let bad = t.model.namedParameters.first(where: { !$0.1.value.scalars.allSatisfy { $0.isFinite && abs($0) < 8e6 } }) {
            throw CLIError("the baseline's \(bad.0) has NaN, infinite or huge (|w| >= 8e6) values; it cannot be compressed (was its training stopped by a NaN loss?)")
        }
        return t
    }

    /// Training batches as they are (not augmented), for activation ranges.
    var calibration: [Tensor] {
        let plain: TrainingTask = (task as? ClassificationTask)?.with(augmentation: ImageAugmentation()) ?? task
        return (0..<calibrationBatches).map { plain.trainBatch($0).x }
    }

    /// The task whose training batches a stage's `augment` gives, or an error that says why the
    /// data cannot be augmented so (checked before the baseline trains, see ``checkStages(_:task:)``).
    static func augmented(_ task: TrainingTask, _ a: ImageAugmentation, stage: String, data: String) throws -> ClassificationTask {
        guard let c = task as? ClassificationTask else { throw CLIError("\(stage): augment applies to images, not to \(data)") }
        if let problem = c.augmentationProblem(a) { throw CLIError("\(stage): augment cannot apply to \(data): \(problem)") }
        return c.with(augmentation: a)
    }

    /// Checks what of the stages depends on the data, so a bad stage stops the run before training.
    static func checkStages(_ stages: [CompressSpec.Stage], task: TrainingTask, data: String) throws {
        for s in stages { if let a = s.augmentation { _ = try augmented(task, a, stage: s.name, data: data) } }
    }

    func url(_ name: String) -> URL { directory.appendingPathComponent("\(name).safetensors") }

    func firstLastFilter(_ model: Module, keep: Bool) -> (String, Module) -> Bool {
        let layers = Quantizer.quantizableLayers(in: model).map(\.0)
        let skip: Set<String> = keep ? Set([layers.first, layers.last].compactMap { $0 }) : []
        return { name, _ in !skip.contains(name) }
    }

    func metadata(_ description: String) -> [String: String] {
        ["lathe.recipe": recipePath, "lathe.model": recipe.model.name, VariantMetadata.description: description]
    }

    func run(_ s: CompressSpec.Stage) throws -> StageOutput {
        switch s.method {
        case "quantize", "qat": return try quantize(s)
        case "prune": return try prune(s)
        default: return try distill(s)
        }
    }

    /// What quantization did, for the stage's file and for `lathe quantize`'s printout.
    struct QuantizeOutcome {
        var trainer: Trainer
        var description: String
        var layers: [String]
        var folded: [FoldedPair]
        /// Test evaluations of the fp32 model and of the quantized one.
        var fp32: Evaluation, quantized: Evaluation
        /// QAT: the fake-quantized model before and after training, and the run.
        var qat: (before: Evaluation, after: Evaluation, summary: TrainSummary)?
    }

    /// Quantizes the baseline as the stage says (`qat`: after quantization-aware training).
    func quantizeModel(_ s: CompressSpec.Stage, foldBatchNorms: Bool = true) throws -> QuantizeOutcome {
        let isQAT = s.method == "qat"
        let t = try trainer(finetune: isQAT ? (s.steps, s.lr) : nil)
        let net = t.model
        let fp32 = t.evaluate(.test)
        net.eval()
        let folded = foldBatchNorms ? BatchNormFolding.fold(net) : []
        let kind: ObserverKind = s.observer == "mse" ? .mse : s.observer == "percentile" ? .percentile(99.99) : .minMax
        let config: QuantizationConfig
        var description: String
        switch s.scheme {
        case "int8" where isQAT:
            config = QuantizationConfig(scheme: .staticInt8, observer: kind)
            description = "int8 static after \(s.steps) quantization-aware training steps (lr \(s.lr), \(s.ranges) ranges starting from \(s.observer) on \(calibrationBatches) batches)"
        case "int8":
            config = QuantizationConfig(scheme: .staticInt8, observer: kind)
            description = "int8 static (per-channel weights, \(s.observer) activation ranges on \(calibrationBatches) batches)"
        case "int8-dynamic":
            config = QuantizationConfig(scheme: .dynamicInt8)
            description = "int8 dynamic (activations quantized per batch)"
        default:
            let scheme = GroupwiseScheme(bits: s.scheme == "int4" ? 4 : 8, groupSize: s.groupSize, symmetric: s.symmetric)
            config = QuantizationConfig(scheme: .weightOnly(scheme))
            description = "weight-only \(scheme) on the linear layers"
        }
        precondition(!isQAT || config.scheme == .staticInt8, "QAT converts to static int8")
        let filter = firstLastFilter(net, keep: s.keepFirstLast)
        var candidates = Quantizer.quantizableLayers(in: net, filter: filter)
        if case .weightOnly = config.scheme { candidates = candidates.filter { $0.1 is Linear } }
        guard !candidates.isEmpty else {
            throw CLIError("\(recipe.model.name) has no layer to quantize with \(s.scheme)" + (s.keepFirstLast ? " once the first and last are kept in fp32" : ""))
        }
        let batches = config.scheme == .staticInt8 ? calibration : []
        let layers: [String]
        var qat: (before: Evaluation, after: Evaluation, summary: TrainSummary)?
        if isQAT {
            layers = QAT.prepare(net, calibrationBatches: batches, learning: s.ranges == "learned" ? .learned : .ema, observer: kind, filter: filter)
            let before = t.evaluate(.test)
            let summary = try t.run()
            qat = (before, t.evaluate(.test), summary)
            QAT.convert(net)
        } else {
            layers = Lathe.quantize(model: net, config: config, calibrationBatches: batches, filter: filter)
        }
        description += "; layers \(layers.joined(separator: ", "))" + (folded.isEmpty ? "" : "; batch norms folded")
        return QuantizeOutcome(trainer: t, description: description, layers: layers, folded: folded, fp32: fp32, quantized: t.evaluate(.test), qat: qat)
    }

    func quantize(_ s: CompressSpec.Stage) throws -> StageOutput {
        let o = try quantizeModel(s)
        try QuantizedModelFile.save(o.trainer.model, to: url(s.name), metadata: metadata(o.description))
        guard let q = o.qat else { return StageOutput(files: [(s.name, url(s.name))]) }
        return StageOutput(files: [(s.name, url(s.name))], notes: [
            "`\(s.name)`: fake-quantized \(testSplitName(o.trainer)) accuracy \(scoreText(q.before)) before QAT, \(scoreText(q.after)) after "
                + "(best validation step \(q.summary.bestStep ?? q.summary.steps) of \(q.summary.steps)).",
        ])
    }

    /// What pruning did, for the stage's file and for `lathe prune`'s printout.
    struct PruneOutcome {
        var trainer: Trainer
        var description: String
        var masks: PruningMasks?
        var structured: StructuredPruningResult?
        /// Test evaluations before pruning, right after it, and after fine-tuning (if any).
        var before: Evaluation, pruned: Evaluation, tuned: Evaluation?
        var metadata: [String: String]
    }

    /// Prunes the baseline as the stage says and fine-tunes it with the zeros kept.
    func pruneModel(_ s: CompressSpec.Stage) throws -> PruneOutcome {
        let t = try trainer(finetune: (s.steps, s.lr))
        let net = t.model
        let before = t.evaluate(.test)
        var masks: PruningMasks?
        var gradual: GradualPruner?
        var description: String
        var structured: StructuredPruningResult?
        switch s.prune {
        case "magnitude", "global":
            let scope: PruningScope = s.prune == "global" ? .global : .layerwise
            if s.gradual {
                gradual = GradualPruner(net, schedule: CubicSparsitySchedule(final: s.sparsity, steps: s.steps * 2 / 3,
                                                                             frequency: Swift.max(1, s.steps / 30)), scope: scope)
            } else {
                masks = pruneMagnitude(net, sparsity: s.sparsity, scope: scope)
            }
            description = String(format: "%@ magnitude pruning to %.0f%% sparsity%@", s.prune == "global" ? "global" : "layer-wise",
                                 100 * s.sparsity, s.gradual ? " (cubic schedule over 2/3 of the steps)" : "")
        case "2:4":
            let m = semiStructuredMasks(net)
            guard !m.names.isEmpty else { throw CLIError("\(s.name): \(recipe.model.name) has no weight whose inputs are a multiple of 4; 2:4 cannot apply") }
            m.apply(to: net)
            masks = m
            description = "2:4 semi-structured sparsity on \(m.names.joined(separator: ", "))"
        default:
            guard let plan = ChannelDependency.plan(for: net), !plan.isEmpty else {
                throw CLIError("\(s.name): structured pruning has no channel plan for \(recipe.model.name) (\(type(of: net))): it supports "
                               + "digits-cnn and Sequential chains such as digits-mlp; use magnitude, global or 2:4")
            }
            let result = pruneChannels(net, dependencies: plan, ratio: s.ratio)
            structured = result
            description = String(format: "structured pruning (L1) of %.0f%% of the channels of ", 100 * s.ratio) + plan.map(\.producer).joined(separator: ", ")
                + " (\(result.parametersBefore) -> \(result.parametersAfter) parameters)"
        }
        let pruned = t.evaluate(.test)
        var tuned: Evaluation?
        if s.steps > 0 {
            if let gradual { t.onStep = { step, _, _ in gradual.update(step: step) } } else if let masks { t.onStep = { _, _, _ in masks.apply(to: net) } }
            try t.run()
            // The final weights: the best-validation ones may predate the final sparsity.
            try net.loadStateDict(SafeTensors.read(contentsOf: t.output.appendingPathComponent("model.safetensors")).tensors)
            masks = gradual?.masks ?? masks
            masks?.apply(to: net)
            tuned = t.evaluate(.test)
            description += "; \(s.steps) fine-tuning steps at lr \(s.lr)"
        }
        var meta = metadata(description)
        meta["lathe.pruning"] = description
        if structured != nil { meta[VariantMetadata.structured] = "1" }
        return PruneOutcome(trainer: t, description: description, masks: masks, structured: structured, before: before, pruned: pruned,
                            tuned: tuned, metadata: meta)
    }

    func prune(_ s: CompressSpec.Stage) throws -> StageOutput {
        let o = try pruneModel(s)
        let net = o.trainer.model
        try SafeTensors.write(net.stateDict(), metadata: o.metadata, to: url(s.name))
        return StageOutput(files: [(s.name, url(s.name))], notes: o.masks == nil ? [] : ["`\(s.name)` sparsity by layer: "
            + sparsityReport(net).rows.map { String(format: "%@ %.1f%%", $0.name, 100 * $0.sparsity) }.joined(separator: ", ")])
    }

    func distill(_ s: CompressSpec.Stage) throws -> StageOutput {
        let teacher = try trainer().model
        teacher.eval()
        let teacherParameters = teacher.parameterCount()
        var kd: [Double] = [], plain: [Double] = []
        var out = StageOutput()
        var studentParameters = 0
        let batches: TrainingTask = try s.augmentation.map { try Self.augmented(task, $0, stage: s.name, data: recipe.data.name) } ?? task
        for k in 0..<s.seeds {
            let seed = recipe.seed &+ UInt64(k) &+ 1
            for (alpha, suffix) in [(s.alpha, ""), (Float(1), "-no-kd")] {
                var r = try Recipe.load(contentsOf: URL(fileURLWithPath: recipePath), overrides: overrides + s.student + ["seed=\(seed)"])
                r.threads = recipe.threads  // the command line's --threads, if any
                let student = try Trainer(recipe: r, task: task).model
                studentParameters = student.parameterCount()
                let warmup = s.steps / 20
                let distiller = Distiller(student: student, teacher: teacher, alpha: alpha, temperature: s.temperature,
                                          schedule: .warmup(warmupSteps: warmup, after: .cosine(totalSteps: Swift.max(1, s.steps - warmup), minRate: 0))) {
                    AdamW($0, learningRate: s.lr, weightDecay: recipe.optimizer.weightDecay ?? 0.01)
                }
                distiller.run(steps: s.steps) { batches.trainBatch($0) }
                student.eval()
                let e = noGrad { task.evaluate(student, split: .test) }
                if suffix.isEmpty { kd.append(e.accuracy ?? 0) } else { plain.append(e.accuracy ?? 0) }
                log("  \(s.name)\(suffix) seed \(seed): \(scoreText(e))")
                if k == 0 {
                    let name = s.name + suffix
                    let how = suffix.isEmpty ? String(format: "knowledge distillation from the baseline (alpha %.2f, T %.1f)", s.alpha, s.temperature)
                        : "the same student trained on the labels alone (no teacher)"
                    let augmented = (batches as? ClassificationTask).map(\.augmentation).flatMap { $0.isIdentity ? nil : $0 }
                        .map { ", images shifted by up to \($0.shift) px" + ($0.horizontalFlip ? " and flipped" : "") } ?? ""
                    var meta = metadata("student \(s.student.joined(separator: " ")) (\(studentParameters) parameters), \(how); \(s.steps) steps at lr \(s.lr)\(augmented)")
                    meta[VariantMetadata.modelOverrides] = s.student.joined(separator: "\n")
                    try SafeTensors.write(student.stateDict(), metadata: meta, to: url(name))
                    out.files.append((name, url(name)))
                }
            }
        }
        let mean = { (a: [Double]) in 100 * a.reduce(0, +) / Double(Swift.max(a.count, 1)) }
        out.notes.append(String(format: "`%@`: a student with %d parameters (%.1f%% of the teacher's %d); mean test accuracy over %d seed%@: "
                                    + "%.2f%% with KD, %.2f%% without (%+.2f points; same steps, batches and initialisation).",
                                s.name, studentParameters, 100 * Double(studentParameters) / Double(teacherParameters), teacherParameters,
                                s.seeds, s.seeds == 1 ? "" : "s", mean(kd), mean(plain), mean(kd) - mean(plain)))
        return out
    }
}

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
        var r = try Recipe.load(contentsOf: URL(fileURLWithPath: recipe), overrides: overrides)
        try threadOptions.apply(to: &r)
        guard let spec = r.compress else {
            throw CLIError("\(recipe) has no compress: section (see Recipes/compress-digits.yaml for one)")
        }
        var stages = spec.stages
        if let only {
            let names = only.split(separator: ",").map(String.init)
            if let unknown = names.first(where: { n in !stages.contains { $0.name == n } }) {
                throw CLIError("--only: \(recipe) has no stage '\(unknown)' (stages: \(stages.map(\.name).joined(separator: ", ")))")
            }
            stages = stages.filter { names.contains($0.name) }
        }
        let output = URL(fileURLWithPath: r.output)
        let variants = output.appendingPathComponent("variants")
        try FileManager.default.createDirectory(at: variants, withIntermediateDirectories: true)
        let start = now()

        // The baseline.
        var base = r
        base.output = output.appendingPathComponent("baseline").path
        let trainer = try Trainer(recipe: base)
        try CompressionRun.checkStages(stages, task: trainer.task, data: r.data.name)
        let baselineURL = variants.appendingPathComponent("baseline.safetensors")
        var description: String
        if let model {
            try trainer.model.loadStateDict(SafeTensors.read(contentsOf: URL(fileURLWithPath: model)).tensors)
            description = "fp32 weights from \(model)"
        } else {
            print("training the baseline (\(trainer.totalSteps) steps)")
            let summary = try trainer.run()
            description = String(format: "fp32, trained by the recipe: %d steps in %.1f s, best validation step %d", summary.steps,
                                 summary.seconds, summary.bestStep ?? summary.steps)
        }
        try SafeTensors.write(trainer.model.stateDict(), metadata: ["lathe.recipe": recipe, "lathe.model": r.model.name,
                                                                    VariantMetadata.description: description], to: baselineURL)
        print("baseline: \(testSplitName(trainer)) \(scoreText(trainer.evaluate(.test)))")

        let run = CompressionRun(recipe: r, recipePath: recipe, overrides: overrides, task: trainer.task, baseline: trainer.model.stateDict(),
                                 directory: variants, calibrationBatches: spec.calibrationBatches)
        var files: [(name: String, url: URL)] = [("baseline", baselineURL)]
        var notes: [String] = []
        for s in stages {
            let t0 = now()
            print("stage \(s.name) (\(s.method))")
            let out = try run.run(s)
            files += out.files
            notes += out.notes
            print(String(format: "  done in %.1f s: %@", now() - t0, out.files.map { $0.url.lastPathComponent }.joined(separator: ", ")))
        }
        print("measuring \(files.count) variants")
        let rows = try measureVariants(files, recipe: r, recipePath: recipe, task: trainer.task, overrides: overrides) { print("  " + $0) }
        let md = output.appendingPathComponent("report.md"), svg = output.appendingPathComponent("pareto.svg")
        try writeReport(rows, markdown: md, svg: svg, title: "\(r.model.name) on \(r.data.name): compression variants",
                        split: testSplitName(trainer), notes: notes)
        print(try String(contentsOf: md, encoding: .utf8))
        print(String(format: "wrote %@ and %@ (%.0f s in all)", md.path, svg.path, now() - start))
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
        var r = try Recipe.load(contentsOf: URL(fileURLWithPath: recipe), overrides: overrides)
        try threadOptions.apply(to: &r)
        _ = try Recipe.load(contentsOf: URL(fileURLWithPath: recipe), overrides: overrides + student)  // checks the student's keys
        let trainer = try Trainer(recipe: r)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-distill-\(UUID().uuidString)")
        TemporaryDirectories.removeAtExit(directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var stage = CompressSpec.Stage(name: "student", method: "distill")
        (stage.student, stage.steps, stage.lr, stage.alpha, stage.temperature, stage.seeds) = (student, steps, lr, alpha, temperature, seeds)
        if augmentShift != nil || augmentFlip != nil {
            stage.augmentation = ImageAugmentation(shift: augmentShift ?? r.data.augmentation.shift,
                                                   horizontalFlip: augmentFlip ?? r.data.augmentation.horizontalFlip)
        }
        let run = CompressionRun(recipe: r, recipePath: recipe, overrides: overrides, task: trainer.task,
                                 baseline: try SafeTensors.read(contentsOf: URL(fileURLWithPath: teacher)).tensors,
                                 directory: directory, calibrationBatches: 1)
        let out = try run.distill(stage)
        try? FileManager.default.removeItem(atPath: output)
        try FileManager.default.copyItem(at: out.files[0].url, to: URL(fileURLWithPath: output))
        for n in out.notes { print(n.replacingOccurrences(of: "`", with: "")) }
        print("saved \(output) (lathe report loads it: the student's model keys are in its metadata)")
    }
}
