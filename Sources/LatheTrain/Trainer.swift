import Foundation
import LatheData
import LatheIO
import LatheNN
import LatheTensor

/// A failure of a training run that the user can act on.
public enum TrainError: Error, CustomStringConvertible, Equatable {
    case nonFiniteLoss(step: Int, value: Float, lastCheckpoint: String?)
    case noCheckpoint(directory: String)
    case badCheckpoint(path: String, reason: String)

    public var description: String {
        switch self {
        case let .nonFiniteLoss(step, value, checkpoint):
            return "the loss became \(value) at step \(step); training stopped. "
                + (checkpoint.map { "The last good checkpoint is \($0). " } ?? "No checkpoint was written yet. ")
                + "Lower optimizer.lr or set training.clip_grad_norm, then rerun (with --resume to continue)."
        case let .noCheckpoint(dir):
            return "nothing to resume: \(dir)/checkpoint.safetensors does not exist (run without --resume to start)"
        case let .badCheckpoint(path, reason):
            return "cannot resume from \(path): \(reason)"
        }
    }
}

/// What a finished run reports.
public struct TrainSummary: Sendable {
    public var steps: Int
    public var seconds: Double
    public var parameters: Int
    public var validation: Evaluation?
    public var test: Evaluation?
    public var bestStep: Int?
    /// The best validation score (``BestMetric/score``, higher is better).
    public var bestScore: Double?
    /// The output directory ("" for a run without files).
    public var outputDirectory: String
    /// The final weights ("" for a run without files).
    public var modelPath: String
}

/// What a ``Trainer/onMetrics`` call reports on: the training step just taken, or an
/// evaluation of the validation split. The raw value is the split's name in `metrics.csv` and
/// the TensorBoard tags (`train/loss`, `val/accuracy`).
public enum MetricSplit: String, Sendable, CaseIterable {
    case train
    case validation = "val"
}

/// Loss and (for classifiers) accuracy on one split, with any other metrics of the task.
public struct Evaluation: Sendable, Equatable {
    public var loss: Double
    public var accuracy: Double?
    /// Samples (classifiers) or scored tokens (language models).
    public var count: Int
    /// Other metrics by name (`perplexity`, ...).
    public var extra: [String: Double]

    public init(loss: Double, accuracy: Double?, count: Int, extra: [String: Double] = [:]) {
        (self.loss, self.accuracy, self.count, self.extra) = (loss, accuracy, count, extra)
    }

    /// `loss`, `accuracy` (if any) and ``extra``, as logged to `metrics.csv`.
    public var metrics: [String: Double] {
        var m = extra
        m["loss"] = loss
        if let accuracy { m["accuracy"] = accuracy }
        return m
    }
}

/// Which validation result is the best so far: the one with the highest ``score``.
///
/// Language models keep the lowest validation loss (``lowestLoss``); classifiers the highest
/// accuracy, ties broken by the lower loss (``highestAccuracy``). Any function of an
/// ``Evaluation`` will do: `BestMetric(name: "f1") { $0.extra["f1"] ?? 0 }`.
public struct BestMetric: Sendable {
    public var name: String
    /// Higher is better.
    public var score: @Sendable (Evaluation) -> Double

    public init(name: String, score: @escaping @Sendable (Evaluation) -> Double) { (self.name, self.score) = (name, score) }

    /// The lowest validation loss.
    public static let lowestLoss = BestMetric(name: "lowest validation loss") { -$0.loss }
    /// The highest accuracy, ties broken by the lowest loss (the loss alone without accuracy).
    public static let highestAccuracy = BestMetric(name: "highest validation accuracy") { ($0.accuracy ?? 0) * 1e6 - $0.loss }
}

/// Where the ``Trainer`` calls its hooks in a step.
public enum TrainerEvent: Sendable {
    /// After the backward pass of the step's last micro-batch, before gradient clipping and the
    /// optimiser step: the gradients are complete (all-reduce them, mask them).
    case afterBackward
    /// After the optimiser step (re-apply pruning masks, update a sparsity schedule).
    case afterStep
}

/// A finished step, for progress and throughput (``Trainer/onStep``).
public struct StepReport {
    /// Steps done, this one included.
    public var step: Int
    public var epoch: Int
    /// Mean loss of the step's micro-batches.
    public var loss: Double
    public var learningRate: Float
    /// The micro-batches' ``Batch/counts``, summed.
    public var counts: [String: Int]
    /// The micro-batches' ``TaskLoss/metrics``, averaged.
    public var metrics: [String: Double]
    /// Seconds the step took (batches, forward, backward, hooks, optimiser; no evaluation or checkpoint).
    public var seconds: Double
}

/// How a ``Trainer`` runs: steps, accumulation, schedule, clipping, evaluation, files.
public struct TrainerOptions {
    /// What a checkpoint holds besides the optimiser state, the dropout generators and the step.
    public enum CheckpointContents: Sendable {
        /// The model's whole state dict (parameters and buffers such as batch-norm statistics).
        case modelState
        /// Only the trained parameters (adapters): the frozen base is not written.
        case trainableParameters
    }

    /// Optimiser steps of the whole run.
    public var steps: Int
    /// Micro-batches per step (their gradients add up; the loss of each is divided by this).
    public var accumulation: Int = 1
    /// The learning rate at each step, over the optimiser's initial rate.
    public var schedule: LRSchedule = .constant
    public var clipGradNorm: Float?
    /// Evaluate the validation split every this many steps and at the last (nil: never).
    public var evalEvery: Int?
    /// How the best validation result is chosen.
    public var bestMetric: BestMetric = .lowestLoss
    /// Write checkpoints here every `checkpointEvery` steps and at the last, the best weights
    /// at each new best and the final weights at the end (nil: no files, no resume).
    public var output: URL?
    /// Checkpoint every this many steps (nil: at each evaluation, or only at the last step).
    public var checkpointEvery: Int?
    public var checkpointContents: CheckpointContents = .modelState
    /// Metadata a checkpoint must carry to be resumed by this run (`lathe.model`, ...), checked
    /// on resume; also written with the weights.
    public var identity: [(String, String)] = []
    /// File names (in ``output``) of the final and the best weights.
    public var finalName = "model.safetensors", bestName = "best.safetensors"
    /// After the last step, load the best weights (``bestName``, a safetensors state dict) into the
    /// model and report its validation and test evaluations. Off by default: the model keeps
    /// its final weights.
    public var restoreBest = false
    /// The base learning rate of ``schedule`` (nil: the optimiser's when ``makeOptimizer`` returns it).
    public var learningRate: Float?
    /// Builds the optimiser over the trained parameters at the start of each run (default AdamW,
    /// lr 1e-3), so that it sees the parameters the model has then (after QAT or structured
    /// pruning swapped layers).
    public var makeOptimizer: ([(String, Parameter)]) -> Optimizer = { AdamW($0, learningRate: 1e-3) }

    public init(steps: Int, accumulation: Int = 1, schedule: LRSchedule = .constant, clipGradNorm: Float? = nil, evalEvery: Int? = nil,
                bestMetric: BestMetric = .lowestLoss, output: URL? = nil, checkpointEvery: Int? = nil,
                checkpointContents: CheckpointContents = .modelState,
                makeOptimizer: @escaping ([(String, Parameter)]) -> Optimizer = { AdamW($0, learningRate: 1e-3) }) {
        precondition(steps >= 0 && accumulation >= 1, "TrainerOptions: steps \(steps) and accumulation \(accumulation) must be >= 0 and >= 1")
        (self.steps, self.accumulation, self.schedule, self.clipGradNorm, self.evalEvery) = (steps, accumulation, schedule, clipGradNorm, evalEvery)
        (self.bestMetric, self.output, self.checkpointEvery, self.checkpointContents) = (bestMetric, output, checkpointEvery, checkpointContents)
        self.makeOptimizer = makeOptimizer
    }
}

/// The training loop: a model, a ``TrainingTask`` and ``TrainerOptions``.
///
/// One *step* is one optimiser update over `accumulation` micro-batches:
///
/// 1. the learning rate from the schedule; gradients zeroed;
/// 2. for each micro-batch `task.batch(step * accumulation + m)`: `task.loss(model, on:)`,
///    checked finite, divided by `accumulation`, `backward()`;
/// 3. the ``TrainerEvent/afterBackward`` hooks; gradient clipping; the optimiser step;
/// 4. the ``TrainerEvent/afterStep`` hooks; ``onMetrics`` (train) and ``onStep``;
/// 5. every `evalEvery` steps and at the last: the validation evaluation, and at a new best
///    (``BestMetric``) the best weights; every `checkpointEvery` steps and at the last: the checkpoint.
///
/// The batch order is a pure function of the index, so a checkpoint needs only the trained
/// tensors, the optimiser state, the dropout generators and the step to resume bit-exactly.
/// Constructing a trainer has no global side effect; files are written only by ``run(resume:stopAfter:)``
/// and only under ``TrainerOptions/output``. Unless ``TrainerOptions/restoreBest`` asks, the
/// model keeps its final weights after the run.
public final class Trainer {
    public let model: Module
    public let task: TrainingTask
    public var options: TrainerOptions
    /// The trained parameters of the current (or last) run: the model's that require gradients,
    /// then the task's ``TrainingTask/taskParameters``.
    public private(set) var parameters: [(String, Parameter)] = []
    /// The optimiser of the current (or last) run (nil before the first).
    public private(set) var optimizer: Optimizer?
    /// Steps done: ``run(resume:stopAfter:)`` continues from here (a resume sets it from the checkpoint).
    public var step = 0
    /// The recipe the trainer was built from (``init(recipe:recipeDirectory:)``), if any.
    public internal(set) var recipe: Recipe?
    /// Called with (step, epoch, split, metrics) after each step (`loss`, `lr`) and each
    /// evaluation (``Evaluation/metrics``).
    public var onMetrics: ((Int, Int, MetricSplit, [String: Double]) -> Void)?
    /// Called after every step.
    public var onStep: ((StepReport) -> Void)?
    /// Writes weights (final and best) to a URL; default: the model's state dict as safetensors
    /// with `format`, `lathe.step` and the ``TrainerOptions/identity``. Adapter training writes
    /// PEFT folders instead.
    public var writeWeights: ((Trainer, URL) throws -> Void)?
    var hooks: [(TrainerEvent, (Trainer) throws -> Void)] = []
    var best: (score: Double, step: Int)?

    /// A trainer of `model` on `task`. Nothing global changes and nothing is built but the
    /// trainer: the optimiser is made when a run starts.
    public init(model: Module, task: TrainingTask, options: TrainerOptions) {
        (self.model, self.task, self.options) = (model, task, options)
    }

    /// Adds a hook, called with the trainer at `event` of every step, in the order added.
    public func add(_ event: TrainerEvent, _ hook: @escaping (Trainer) throws -> Void) {
        hooks.append((event, hook))
    }

    /// Total optimiser steps of the run.
    public var totalSteps: Int { options.steps }
    /// ``TrainerOptions/output``.
    public var output: URL? { options.output }
    var checkpointURL: URL? { options.output?.appendingPathComponent("checkpoint.safetensors") }
    /// Where the final and the best weights go (nil without an output directory).
    public var finalURL: URL? { options.output?.appendingPathComponent(options.finalName) }
    public var bestURL: URL? { options.output?.appendingPathComponent(options.bestName) }

    /// The step of the output directory's checkpoint, if there is a readable one.
    public func checkpointStep() -> Int? {
        checkpointURL.flatMap { (try? SafeTensors.readHeader(contentsOf: $0))?.metadata["lathe.step"].flatMap(Int.init) }
    }

    func callHooks(_ event: TrainerEvent) throws {
        for (e, hook) in hooks where e == event { try hook(self) }
    }

    /// Trains from ``step`` to `options.steps` (or to `stopAfter` steps, for tests that simulate
    /// an interruption); `resume` first loads the output directory's checkpoint.
    @discardableResult
    public func run(resume: Bool = false, stopAfter: Int? = nil) throws -> TrainSummary {
        let start = Date()
        if let output = options.output { try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true) }
        parameters = model.namedParameters.filter { $0.1.requiresGrad } + task.taskParameters
        let optimizer = options.makeOptimizer(parameters)
        self.optimizer = optimizer
        let baseLearningRate = options.learningRate ?? optimizer.learningRate
        var lastCheckpoint: String? = nil
        if resume {
            guard let url = checkpointURL, FileManager.default.fileExists(atPath: url.path) else {
                throw TrainError.noCheckpoint(directory: options.output?.path ?? "(no output directory)")
            }
            try loadCheckpoint(url, optimizer: optimizer)
            lastCheckpoint = url.path
        }
        let total = options.steps, accumulation = options.accumulation
        let checkpointEvery = options.checkpointEvery ?? options.evalEvery ?? total
        var validation: Evaluation? = nil
        model.train()
        while step < total {
            if let stopAfter, step >= stopAfter { break }
            let stepStart = Date()
            optimizer.learningRate = options.schedule.rate(at: step, base: baseLearningRate)
            optimizer.zeroGrad()
            var lossSum = 0.0
            var counts: [String: Int] = [:], metrics: [String: Double] = [:]
            for micro in 0..<accumulation {
                let batch = task.batch(step * accumulation + micro)
                let out = try task.loss(model, on: batch)
                let value = out.loss.item
                guard value.isFinite else { throw TrainError.nonFiniteLoss(step: step + 1, value: value, lastCheckpoint: lastCheckpoint) }
                lossSum += Double(value)
                (accumulation == 1 ? out.loss : out.loss / Float(accumulation)).backward()
                for (k, v) in batch.counts { counts[k, default: 0] += v }
                for (k, v) in out.metrics { metrics[k, default: 0] += v / Double(accumulation) }
            }
            try callHooks(.afterBackward)
            if let maxNorm = options.clipGradNorm { clipGradNorm(parameters.map(\.1), maxNorm: maxNorm) }
            optimizer.step()
            step += 1
            try callHooks(.afterStep)
            let epoch = task.epoch(afterMicroBatches: step * accumulation)
            let meanLoss = lossSum / Double(accumulation)
            onMetrics?(step, epoch, .train, ["loss": meanLoss, "lr": Double(optimizer.learningRate)])
            onStep?(StepReport(step: step, epoch: epoch, loss: meanLoss, learningRate: optimizer.learningRate, counts: counts,
                               metrics: metrics, seconds: Date().timeIntervalSince(stepStart)))
            if let evalEvery = options.evalEvery, step % evalEvery == 0 || step == total {
                let v = evaluate(.validation)
                validation = v
                onMetrics?(step, epoch, .validation, v.metrics)
                let score = options.bestMetric.score(v)
                if best == nil || score > best!.score {
                    best = (score, step)
                    if let url = bestURL { try saveWeights(to: url) }
                }
            }
            if let url = checkpointURL, step % checkpointEvery == 0 || step == total {
                try saveCheckpoint(url, optimizer: optimizer)
                lastCheckpoint = url.path
            }
        }
        if let url = finalURL { try saveWeights(to: url) }
        var summary = TrainSummary(steps: step, seconds: Date().timeIntervalSince(start), parameters: model.parameterCount(),
                                   validation: validation, test: nil, bestStep: best?.step, bestScore: best?.score,
                                   outputDirectory: options.output?.path ?? "", modelPath: finalURL?.path ?? "")
        if step == total, options.restoreBest {
            // Asked for: report the best model's validation and test figures.
            if let url = bestURL, FileManager.default.fileExists(atPath: url.path) {
                try model.loadStateDict(SafeTensors.read(contentsOf: url).tensors)
            }
            summary.validation = evaluate(.validation)
            summary.test = task.hasTestSplit ? evaluate(.test) : nil
        }
        return summary
    }

    /// The task's evaluation of the current model on a split, in evaluation mode, without gradients.
    public func evaluate(_ split: DataSplit) -> Evaluation {
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        return noGrad { task.evaluate(model, split: split) }
    }

    // MARK: - Files

    func saveWeights(to url: URL) throws {
        if let writeWeights { return try writeWeights(self, url) }
        var meta = ["format": "pt", "lathe.step": "\(step)"]
        for (k, v) in options.identity { meta[k] = v }
        try SafeTensors.write(model.stateDict(), metadata: meta, to: url)
    }

    func dropoutLayers() -> [(String, Dropout)] {
        model.namedModules.compactMap { name, m in (m as? Dropout).map { (name, $0) } }
    }

    func saveCheckpoint(_ url: URL, optimizer: Optimizer) throws {
        var tensors: [String: Tensor] = [:]
        switch options.checkpointContents {
        case .modelState: for (k, v) in model.stateDict() { tensors["model.\(k)"] = v }
        case .trainableParameters: for (k, p) in parameters { tensors["param.\(k)"] = p.value.detached() }
        }
        for (k, v) in optimizer.stateDict() { tensors["optimizer.\(k)"] = v }
        var meta = ["lathe.checkpoint": "1", "lathe.step": "\(step)"]
        for (k, v) in options.identity { meta[k] = v }
        if let best { meta["lathe.best_metric"] = "\(best.score)"; meta["lathe.best_step"] = "\(best.step)" }
        for (name, d) in dropoutLayers() { meta["lathe.rng.\(name)"] = "\(d.generator.offset)" }
        try SafeTensors.write(tensors, metadata: meta, to: url)
    }

    func loadCheckpoint(_ url: URL, optimizer: Optimizer) throws {
        let path = url.path
        let file: SafeTensorsFile
        do { file = try SafeTensors.read(contentsOf: url) } catch {
            throw TrainError.badCheckpoint(path: path, reason: "\(error)")
        }
        let meta = file.metadata
        // `lathe.finetune`: a checkpoint of FineTuner's own loop, before it ran on this one.
        guard meta["lathe.checkpoint"] == "1" || meta["lathe.finetune"] == "1", let step = meta["lathe.step"].flatMap(Int.init) else {
            throw TrainError.badCheckpoint(path: path, reason: "it is not a Lathe checkpoint (no lathe.checkpoint/lathe.step metadata)")
        }
        for (key, expected) in options.identity where meta[key] != expected {
            throw TrainError.badCheckpoint(path: path, reason: "it was written for \(key.dropFirst(6)) '\(meta[key] ?? "?")', this run has '\(expected)'")
        }
        var modelState: [String: Tensor] = [:], optimState: [String: Tensor] = [:]
        for (k, v) in file.tensors {
            if k.hasPrefix("model.") { modelState[String(k.dropFirst(6))] = v }
            if k.hasPrefix("optimizer.") { optimState[String(k.dropFirst(10))] = v }
        }
        switch options.checkpointContents {
        case .modelState:
            do { try model.loadStateDict(modelState) } catch { throw TrainError.badCheckpoint(path: path, reason: "\(error)") }
        case .trainableParameters:
            for (name, p) in parameters {
                guard let v = file.tensors["param.\(name)"], v.shape == p.value.shape else {
                    throw TrainError.badCheckpoint(path: path, reason: "param.\(name) is missing or has another shape")
                }
                p.value = v.contiguous()
            }
            if parameters.count != file.tensors.keys.filter({ $0.hasPrefix("param.") }).count {
                throw TrainError.badCheckpoint(path: path, reason: "it holds other trained tensors than this run's (another adapter configuration?)")
            }
        }
        do { try optimizer.loadStateDict(optimState) } catch { throw TrainError.badCheckpoint(path: path, reason: "\(error)") }
        for (name, d) in dropoutLayers() {
            if let offset = meta["lathe.rng.\(name)"].flatMap(UInt64.init) { d.generator.offset = offset }
        }
        self.step = step
        let score = meta["lathe.best_metric"].flatMap(Double.init) ?? meta["lathe.best_loss"].flatMap(Double.init).map { -$0 }
        best = score.flatMap { m in meta["lathe.best_step"].flatMap(Int.init).map { (m, $0) } }
    }
}
