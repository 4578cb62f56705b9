import Foundation
import LatheCompress
import LatheData
import LatheIO
import LatheNN
import LatheTensor

/// A variant file a stage wrote.
public struct VariantFile: Sendable, Equatable {
    public var name: String
    public var url: URL
    public init(name: String, url: URL) { (self.name, self.url) = (name, url) }
}

/// What a compression stage produced: variant files and lines for the report's notes.
public struct StageOutput: Sendable, Equatable {
    public var files: [VariantFile] = []
    public var notes: [String] = []
    /// Distillation: test accuracies of the KD students and of the plain ones, one per seed.
    public var distillation: DistillationResult?
    public init(files: [VariantFile] = [], notes: [String] = []) { (self.files, self.notes) = (files, notes) }
}

/// Test accuracies of a distillation stage's students, one per seed (same seeds, steps,
/// batches and initialisation for both).
public struct DistillationResult: Sendable, Equatable {
    public var kd: [Double]
    public var plain: [Double]
    public var studentParameters: Int
    public var teacherParameters: Int
    public var meanKD: Double { kd.reduce(0, +) / Double(Swift.max(kd.count, 1)) }
    public var meanPlain: Double { plain.reduce(0, +) / Double(Swift.max(plain.count, 1)) }
}

/// Runs the stages of a recipe's `compress:` section (``CompressSpec``), each from the
/// baseline weights, writing one variant file per stage into `directory`.
public struct CompressionRun {
    public let source: RecipeSource
    public let recipe: Recipe
    public let task: TrainingTask
    public let baseline: [String: Tensor]
    public let directory: URL
    public let calibrationBatches: Int
    /// Progress lines (seeds of a distillation, ...).
    public var log: (String) -> Void
    let scratch = ScratchSpace()

    /// `recipe` is `source` parsed, possibly with settings of the caller on top (`threads`).
    public init(source: RecipeSource, recipe: Recipe, task: TrainingTask, baseline: [String: Tensor], directory: URL,
                calibrationBatches: Int, log: @escaping (String) -> Void = { _ in }) {
        (self.source, self.recipe, self.task, self.baseline, self.directory) = (source, recipe, task, baseline, directory)
        (self.calibrationBatches, self.log) = (calibrationBatches, log)
    }

    /// The recipe's model with the baseline weights; `finetune` makes its trainer a fine-tuning
    /// run (`steps` at `lr`, cosine without warm-up, in a scratch directory).
    public func trainer(finetune: (steps: Int, lr: Float)? = nil) throws -> Trainer {
        var r = recipe
        if let finetune {
            r.output = scratch.directory("lathe-finetune").path
            (r.training.epochs, r.training.steps) = (nil, Swift.max(finetune.steps, 1))
            r.schedule.warmupSteps = 0
            r.optimizer.lr = finetune.lr
        }
        let t = try Trainer(recipe: r, task: task)
        try t.model.loadStateDict(baseline)
        if let bad = t.model.namedParameters.first(where: { !$0.1.value.scalars.allSatisfy { $0.isFinite && abs($0) < 8e6 } }) {
            throw CompressError("the baseline's \(bad.0) has NaN, infinite or huge (|w| >= 8e6) values; it cannot be compressed (was its training stopped by a NaN loss?)")
        }
        return t
    }

    /// Training batches as they are (not augmented), for activation ranges.
    var calibration: [Tensor] {
        let plain: TrainingTask = (task as? ClassificationTask)?.with(augmentation: ImageAugmentation()) ?? task
        return (0..<calibrationBatches).map { plain.batch($0).inputs }
    }

    /// The task whose training batches a stage's `augment` gives, or an error that says why the
    /// data cannot be augmented so (checked before the baseline trains, see ``checkStages(_:task:)``).
    public static func augmented(_ task: TrainingTask, _ a: ImageAugmentation, stage: String, data: String) throws -> ClassificationTask {
        guard let c = task as? ClassificationTask else { throw CompressError("\(stage): augment applies to images, not to \(data)") }
        if let problem = c.augmentationProblem(a) { throw CompressError("\(stage): augment cannot apply to \(data): \(problem)") }
        return c.with(augmentation: a)
    }

    /// Checks what of the stages depends on the data, so a bad stage stops the run before training.
    public static func checkStages(_ stages: [CompressSpec.Stage], task: TrainingTask, data: String) throws {
        for s in stages { if let a = s.augmentation { _ = try augmented(task, a, stage: s.name, data: data) } }
    }

    public func url(_ name: String) -> URL { directory.appendingPathComponent("\(name).safetensors") }

    func firstLastFilter(_ model: Module, keep: Bool) -> (String, Module) -> Bool {
        let layers = Quantizer.quantizableLayers(in: model).map(\.0)
        let skip: Set<String> = keep ? Set([layers.first, layers.last].compactMap { $0 }) : []
        return { name, _ in !skip.contains(name) }
    }

    public func metadata(_ description: String) -> [String: String] {
        ["lathe.recipe": source.file, "lathe.model": recipe.model.name, VariantMetadata.description: description]
    }

    /// Runs one stage and writes its variant file(s).
    public func run(_ s: CompressSpec.Stage) throws -> StageOutput {
        switch s.method {
        case .quantize, .qat: return try quantize(s)
        case .prune: return try prune(s)
        case .distill: return try distill(s)
        }
    }

    /// What quantization did, for the stage's file and for `lathe quantize`'s printout.
    public struct QuantizeOutcome {
        public var trainer: Trainer
        public var description: String
        public var layers: [String]
        public var folded: [FoldedPair]
        /// Test evaluations of the fp32 model and of the quantized one.
        public var fp32: Evaluation, quantized: Evaluation
        /// QAT: the fake-quantized model before and after training, and the run.
        public var qat: (before: Evaluation, after: Evaluation, summary: TrainSummary)?
    }

    /// Quantizes the baseline as the stage says (`qat`: after quantization-aware training).
    public func quantizeModel(_ s: CompressSpec.Stage, foldBatchNorms: Bool = true) throws -> QuantizeOutcome {
        let isQAT = s.method == .qat
        let t = try trainer(finetune: isQAT ? (s.steps, s.lr) : nil)
        let net = t.model
        let fp32 = t.evaluate(.test)
        net.eval()
        let folded = foldBatchNorms ? try BatchNormFolding.fold(net) : []
        let kind: ObserverKind = switch s.observer {
        case .mse: .mse
        case .percentile: .percentile(99.99)
        case .minmax: .minMax
        }
        let config: QuantizationConfig
        var description: String
        switch s.scheme {
        case .int8 where isQAT:
            config = QuantizationConfig(scheme: .staticInt8, observer: kind)
            description = "int8 static after \(s.steps) quantization-aware training steps (lr \(s.lr), \(s.ranges) ranges starting from \(s.observer) on \(calibrationBatches) batches)"
        case .int8:
            config = QuantizationConfig(scheme: .staticInt8, observer: kind)
            description = "int8 static (per-channel weights, \(s.observer) activation ranges on \(calibrationBatches) batches)"
        case .int8Dynamic:
            config = QuantizationConfig(scheme: .dynamicInt8)
            description = "int8 dynamic (activations quantized per batch)"
        case .int4, .int8Weight:
            let scheme = GroupwiseScheme(bits: s.scheme == .int4 ? 4 : 8, groupSize: s.groupSize, symmetric: s.symmetric)
            config = QuantizationConfig(scheme: .weightOnly(scheme))
            description = "weight-only \(scheme) on the linear layers"
        }
        precondition(!isQAT || config.scheme == .staticInt8, "QAT converts to static int8")
        let filter = firstLastFilter(net, keep: s.keepFirstLast)
        var candidates = Quantizer.quantizableLayers(in: net, filter: filter)
        if case .weightOnly = config.scheme { candidates = candidates.filter { $0.1 is Linear } }
        guard !candidates.isEmpty else {
            throw CompressError("\(recipe.model.name) has no layer to quantize with \(s.scheme.rawValue)" + (s.keepFirstLast ? " once the first and last are kept in fp32" : ""))
        }
        let batches = config.scheme == .staticInt8 ? calibration : []
        let layers: [String]
        var qat: (before: Evaluation, after: Evaluation, summary: TrainSummary)?
        if isQAT {
            layers = try QAT.prepare(net, calibrationBatches: batches, learning: s.ranges == .learned ? .learned : .ema, observer: kind, filter: filter)
            let before = t.evaluate(.test)
            let summary = try t.run()
            qat = (before, t.evaluate(.test), summary)
            try QAT.convert(net)
        } else {
            layers = try LatheCompress.quantize(model: net, config: config, calibrationBatches: batches, filter: filter)
        }
        description += "; layers \(layers.joined(separator: ", "))" + (folded.isEmpty ? "" : "; batch norms folded")
        return QuantizeOutcome(trainer: t, description: description, layers: layers, folded: folded, fp32: fp32, quantized: t.evaluate(.test), qat: qat)
    }

    func quantize(_ s: CompressSpec.Stage) throws -> StageOutput {
        let o = try quantizeModel(s)
        try QuantizedModelFile.save(o.trainer.model, to: url(s.name), metadata: metadata(o.description))
        let file = VariantFile(name: s.name, url: url(s.name))
        guard let q = o.qat else { return StageOutput(files: [file]) }
        return StageOutput(files: [file], notes: [
            "`\(s.name)`: fake-quantized \(o.trainer.testSplitName) accuracy \(scoreText(q.before)) before QAT, \(scoreText(q.after)) after "
                + "(best validation step \(q.summary.bestStep ?? q.summary.steps) of \(q.summary.steps)).",
        ])
    }

    /// What pruning did, for the stage's file and for `lathe prune`'s printout.
    public struct PruneOutcome {
        public var trainer: Trainer
        public var description: String
        public var masks: PruningMasks?
        public var structured: StructuredPruningResult?
        /// Test evaluations before pruning, right after it, and after fine-tuning (if any).
        public var before: Evaluation, pruned: Evaluation, tuned: Evaluation?
        public var metadata: [String: String]
    }

    /// Prunes the baseline as the stage says and fine-tunes it with the zeros kept.
    public func pruneModel(_ s: CompressSpec.Stage) throws -> PruneOutcome {
        let t = try trainer(finetune: (s.steps, s.lr))
        let net = t.model
        let before = t.evaluate(.test)
        var masks: PruningMasks?
        var gradual: GradualPruner?
        var description: String
        var structured: StructuredPruningResult?
        switch s.prune {
        case .magnitude, .global:
            let scope: PruningScope = s.prune == .global ? .global : .layerwise
            if s.gradual {
                gradual = GradualPruner(net, schedule: CubicSparsitySchedule(final: s.sparsity, steps: s.steps * 2 / 3,
                                                                             frequency: Swift.max(1, s.steps / 30)), scope: scope)
            } else {
                masks = pruneMagnitude(net, sparsity: s.sparsity, scope: scope)
            }
            description = String(format: "%@ magnitude pruning to %.0f%% sparsity%@", s.prune == .global ? "global" : "layer-wise",
                                 100 * s.sparsity, s.gradual ? " (cubic schedule over 2/3 of the steps)" : "")
        case .twoFour:
            let m = semiStructuredMasks(net)
            guard !m.names.isEmpty else { throw CompressError("\(s.name): \(recipe.model.name) has no weight whose inputs are a multiple of 4; 2:4 cannot apply") }
            m.apply(to: net)
            masks = m
            description = "2:4 semi-structured sparsity on \(m.names.joined(separator: ", "))"
        case .structured:
            guard let plan = ChannelDependency.plan(for: net), !plan.isEmpty else {
                throw CompressError("\(s.name): structured pruning has no channel plan for \(recipe.model.name) (\(type(of: net))): it supports "
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
            if let gradual { t.add(.afterStep) { gradual.update(step: $0.step) } } else if let masks { t.add(.afterStep) { masks.apply(to: $0.model) } }
            try t.run()
            // The final weights: the best-validation ones (restored by the recipe's run) may predate the final sparsity.
            try net.loadStateDict(SafeTensors.read(contentsOf: t.finalURL!).tensors)
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
        return StageOutput(files: [VariantFile(name: s.name, url: url(s.name))], notes: o.masks == nil ? [] : ["`\(s.name)` sparsity by layer: "
            + sparsityReport(net).rows.map { String(format: "%@ %.1f%%", $0.name, 100 * $0.sparsity) }.joined(separator: ", ")])
    }

    public func distill(_ s: CompressSpec.Stage) throws -> StageOutput {
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
                var r = try source.recipe(extra: s.student + ["seed=\(seed)"])
                r.threads = recipe.threads  // the command line's --threads, if any
                let student = try Trainer(recipe: r, task: task).model
                studentParameters = student.parameterCount()
                let warmup = s.steps / 20
                let options = TrainerOptions(steps: s.steps, schedule: .warmup(warmupSteps: warmup, after: .cosine(totalSteps: Swift.max(1, s.steps - warmup), minRate: 0))) {
                    AdamW($0, learningRate: s.lr, weightDecay: recipe.optimizer.weightDecay ?? 0.01)
                }
                let distillation = DistillationTask(teacher: teacher, data: batches, alpha: alpha, temperature: s.temperature)
                let run = Trainer(model: student, task: distillation, options: options)
                do { try run.run() } catch { throw CompressError("\(s.name): \(error)") }
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
                    out.files.append(VariantFile(name: name, url: url(name)))
                }
            }
        }
        let mean = { (a: [Double]) in 100 * a.reduce(0, +) / Double(Swift.max(a.count, 1)) }
        out.notes.append(String(format: "`%@`: a student with %d parameters (%.1f%% of the teacher's %d); mean test accuracy over %d seed%@: "
                                    + "%.2f%% with KD, %.2f%% without (%+.2f points; same steps, batches and initialisation).",
                                s.name, studentParameters, 100 * Double(studentParameters) / Double(teacherParameters), teacherParameters,
                                s.seeds, s.seeds == 1 ? "" : "s", mean(kd), mean(plain), mean(kd) - mean(plain)))
        out.distillation = DistillationResult(kd: kd, plain: plain, studentParameters: studentParameters, teacherParameters: teacherParameters)
        return out
    }
}

