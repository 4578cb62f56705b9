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
    public var outputDirectory: String
    public var modelPath: String
}

/// What a ``Trainer/onMetrics`` call reports on: the training step just taken, or an
/// evaluation of the validation split. The raw value is the split's name in `metrics.csv` and
/// the TensorBoard tags (`train/loss`, `val/accuracy`).
public enum MetricSplit: String, Sendable, CaseIterable {
    case train
    case validation = "val"
}

/// Loss and (for classifiers) accuracy on one split.
public struct Evaluation: Sendable, Equatable {
    public var loss: Double
    public var accuracy: Double?
    public var count: Int

    public init(loss: Double, accuracy: Double?, count: Int) { (self.loss, self.accuracy, self.count) = (loss, accuracy, count) }
}

/// Runs a ``Recipe``: builds the data and model, trains with checkpoints, evaluation and
/// logs, and writes `model.safetensors` (final), `best.safetensors` (best validation) and
/// `checkpoint.safetensors` (resumable) to the output directory.
///
/// One *step* is one optimiser update over `accumulation` micro-batches. The data order is a
/// pure function of the seed and the micro-batch index, so a checkpoint needs only the
/// model, optimiser, dropout generators and step to resume bit-exactly.
public final class Trainer {
    public let recipe: Recipe
    public let model: Module
    public let task: TrainingTask
    public let output: URL
    /// Called with (step, epoch, split, metrics) after each logged step and each evaluation.
    public var onMetrics: ((Int, Int, MetricSplit, [String: Double]) -> Void)?
    /// Called after every step with (step, epoch, mean loss of the step).
    public var onStep: ((Int, Int, Double) -> Void)?

    public init(recipe: Recipe, recipeDirectory: URL? = nil) throws {
        self.recipe = recipe
        if let threads = recipe.threads { ThreadPool.threadCount = threads }
        task = try makeTask(recipe, relativeTo: recipeDirectory)
        model = try makeModel(recipe, task: task)
        output = URL(fileURLWithPath: recipe.output)
    }

    /// A trainer on an already loaded task (its data and batch order), with a model built from
    /// `recipe` (which may differ from the task's in its `model` section, e.g. a student).
    public init(recipe: Recipe, task: TrainingTask) throws {
        self.recipe = recipe
        if let threads = recipe.threads { ThreadPool.threadCount = threads }
        self.task = task
        model = try makeModel(recipe, task: task)
        output = URL(fileURLWithPath: recipe.output)
    }

    /// Total optimiser steps of the run.
    public var totalSteps: Int {
        if let steps = recipe.training.steps { return steps }
        return Swift.max(1, recipe.training.epochs! * task.microBatchesPerEpoch / recipe.training.accumulation)
    }

    var evalEvery: Int {
        recipe.training.evalEvery ?? Swift.max(1, task.microBatchesPerEpoch / recipe.training.accumulation)
    }

    func makeOptimizer() -> Optimizer {
        recipe.optimizer.makeOptimizer(model.namedParameters.filter { $0.1.requiresGrad })
    }

    var schedule: LRSchedule { recipe.schedule.schedule(totalSteps: totalSteps) }

    var checkpointURL: URL { output.appendingPathComponent("checkpoint.safetensors") }

    /// The step of the output directory's checkpoint, if there is a readable one.
    public func checkpointStep() -> Int? {
        (try? SafeTensors.readHeader(contentsOf: checkpointURL))?.metadata["lathe.step"].flatMap(Int.init)
    }

    /// Trains to the end (or to `stopAfter` steps, for tests that simulate an interruption).
    @discardableResult
    public func run(resume: Bool = false, stopAfter: Int? = nil) throws -> TrainSummary {
        let start = Date()
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        let optimizer = makeOptimizer()
        var step = 0
        var best: (metric: Double, step: Int)? = nil
        var lastCheckpoint: String? = nil
        if resume {
            guard FileManager.default.fileExists(atPath: checkpointURL.path) else { throw TrainError.noCheckpoint(directory: output.path) }
            (step, best) = try loadCheckpoint(optimizer: optimizer)
            lastCheckpoint = checkpointURL.path
        }
        let total = totalSteps
        let schedule = self.schedule
        let accumulation = recipe.training.accumulation
        let checkpointEvery = recipe.training.checkpointEvery ?? evalEvery
        model.train()
        while step < total {
            if let stopAfter, step >= stopAfter { break }
            optimizer.learningRate = schedule.rate(at: step, base: recipe.optimizer.lr)
            optimizer.zeroGrad()
            var lossSum: Float = 0
            for micro in 0..<accumulation {
                let (x, y) = task.trainBatch(step * accumulation + micro)
                let loss = task.loss(model(x), y, labelSmoothing: recipe.training.labelSmoothing)
                let value = loss.item
                guard value.isFinite else {
                    throw TrainError.nonFiniteLoss(step: step + 1, value: value, lastCheckpoint: lastCheckpoint)
                }
                lossSum += value
                (accumulation == 1 ? loss : loss / Float(accumulation)).backward()
            }
            if let maxNorm = recipe.training.clipGradNorm { clipGradNorm(model.parameters, maxNorm: maxNorm) }
            optimizer.step()
            step += 1
            let epoch = step * accumulation / Swift.max(task.microBatchesPerEpoch, 1)
            let meanLoss = Double(lossSum) / Double(accumulation)
            onStep?(step, epoch, meanLoss)
            onMetrics?(step, epoch, .train, ["loss": meanLoss, "lr": Double(optimizer.learningRate)])
            if step % evalEvery == 0 || step == total {
                let v = evaluate(.validation)
                onMetrics?(step, epoch, .validation, metrics(v))
                // Higher accuracy wins, lower loss breaks ties (language models: loss alone).
                let metric = (v.accuracy ?? 0) * 1e6 - v.loss
                if best == nil || metric > best!.metric {
                    best = (metric, step)
                    try save(model.stateDict(), to: output.appendingPathComponent("best.safetensors"), step: step)
                }
            }
            if step % checkpointEvery == 0 || step == total {
                try saveCheckpoint(optimizer: optimizer, step: step, best: best)
                lastCheckpoint = checkpointURL.path
            }
        }
        let modelURL = output.appendingPathComponent("model.safetensors")
        try save(model.stateDict(), to: modelURL, step: step)
        var summary = TrainSummary(steps: step, seconds: Date().timeIntervalSince(start), parameters: model.parameterCount(),
                                   validation: nil, test: nil, bestStep: best?.step, outputDirectory: output.path,
                                   modelPath: modelURL.path)
        if step == total {
            // Report the best model's validation and test figures.
            let bestURL = output.appendingPathComponent("best.safetensors")
            if FileManager.default.fileExists(atPath: bestURL.path) {
                try model.loadStateDict(SafeTensors.read(contentsOf: bestURL).tensors)
            }
            summary.validation = evaluate(.validation)
            summary.test = task.hasTestSplit ? evaluate(.test) : nil
        }
        return summary
    }

    func metrics(_ e: Evaluation) -> [String: Double] {
        var m = ["loss": e.loss]
        if let a = e.accuracy { m["accuracy"] = a }
        return m
    }

    /// Loss and accuracy of the current model on a split, in evaluation mode.
    public func evaluate(_ split: DataSplit) -> Evaluation {
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        return noGrad { task.evaluate(model, split: split) }
    }

    // MARK: - Files

    func save(_ state: [String: Tensor], to url: URL, step: Int) throws {
        try SafeTensors.write(state, metadata: ["format": "pt", "lathe.step": "\(step)", "lathe.model": recipe.model.name], to: url)
    }

    func dropoutLayers() -> [(String, Dropout)] {
        model.namedModules.compactMap { name, m in (m as? Dropout).map { (name, $0) } }
    }

    func saveCheckpoint(optimizer: Optimizer, step: Int, best: (metric: Double, step: Int)?) throws {
        var tensors: [String: Tensor] = [:]
        for (k, v) in model.stateDict() { tensors["model.\(k)"] = v }
        for (k, v) in optimizer.stateDict() { tensors["optimizer.\(k)"] = v }
        var meta = ["lathe.checkpoint": "1", "lathe.step": "\(step)", "lathe.model": recipe.model.name,
                    "lathe.data": recipe.data.name, "lathe.optimizer": recipe.optimizer.name]
        if let best { meta["lathe.best_metric"] = "\(best.metric)"; meta["lathe.best_step"] = "\(best.step)" }
        for (name, d) in dropoutLayers() { meta["lathe.rng.\(name)"] = "\(d.generator.offset)" }
        try SafeTensors.write(tensors, metadata: meta, to: checkpointURL)
    }

    func loadCheckpoint(optimizer: Optimizer) throws -> (Int, (metric: Double, step: Int)?) {
        let path = checkpointURL.path
        let file: SafeTensorsFile
        do { file = try SafeTensors.read(contentsOf: checkpointURL) } catch {
            throw TrainError.badCheckpoint(path: path, reason: "\(error)")
        }
        let meta = file.metadata
        guard meta["lathe.checkpoint"] == "1", let step = meta["lathe.step"].flatMap(Int.init) else {
            throw TrainError.badCheckpoint(path: path, reason: "it is not a Lathe checkpoint (no lathe.checkpoint/lathe.step metadata)")
        }
        for (key, expected) in [("lathe.model", recipe.model.name), ("lathe.data", recipe.data.name), ("lathe.optimizer", recipe.optimizer.name)]
        where meta[key] != expected {
            throw TrainError.badCheckpoint(path: path, reason: "it was written for \(key.dropFirst(6)) '\(meta[key] ?? "?")', the recipe says '\(expected)'")
        }
        var modelState: [String: Tensor] = [:], optimState: [String: Tensor] = [:]
        for (k, v) in file.tensors {
            if k.hasPrefix("model.") { modelState[String(k.dropFirst(6))] = v }
            if k.hasPrefix("optimizer.") { optimState[String(k.dropFirst(10))] = v }
        }
        do {
            try model.loadStateDict(modelState)
            try optimizer.loadStateDict(optimState)
        } catch {
            throw TrainError.badCheckpoint(path: path, reason: "\(error)")
        }
        for (name, d) in dropoutLayers() {
            if let offset = meta["lathe.rng.\(name)"].flatMap(UInt64.init) { d.generator.offset = offset }
        }
        let best = meta["lathe.best_metric"].flatMap(Double.init).flatMap { m in meta["lathe.best_step"].flatMap(Int.init).map { (m, $0) } }
        return (step, best)
    }
}
