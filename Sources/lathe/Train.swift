import ArgumentParser
import Foundation
import Lathe

/// Runs a trainer with progress output and prints the summary.
func runTraining(_ trainer: Trainer, resume: Bool, label: String) throws -> TrainSummary {
    guard let recipe = trainer.recipe, let output = trainer.output else { throw CLIError("\(label): the trainer has no recipe") }
    print("\(label): \(recipe.model.name) on \(recipe.data.name), \(trainer.model.parameterCount()) parameters, "
          + "\(trainer.totalSteps) steps, kernels \(KernelInfo.isaName), threads \(ThreadPool.threadCount)")
    fflush(nil)
    let logger = try MetricLogger(directory: output, resume: resume)
    let startStep = resume ? trainer.checkpointStep() ?? 0 : 0
    let progress = ProgressReporter(totalSteps: trainer.totalSteps, startStep: startStep)
    var logError: Error?
    trainer.onStep = { progress.update(step: $0.step, epoch: $0.epoch, loss: $0.loss) }
    trainer.onMetrics = { step, epoch, split, metrics in
        do { try logger.log(step: step, epoch: epoch, split: split, metrics: metrics) } catch { logError = error }
        if split == .validation {
            progress.message(String(format: "step %d  validation loss %.4f", step, metrics["loss"] ?? .nan)
                          + (metrics["accuracy"].map { String(format: "  accuracy %.2f%%", 100 * $0) } ?? ""))
        }
    }
    let summary = try trainer.run(resume: resume)
    progress.finish()
    try logger.close()
    if let logError { throw logError }
    print(String(format: "trained %d steps in %.1f s", summary.steps, summary.seconds))
    for (name, e) in [("validation", summary.validation), ("test", summary.test)] {
        guard let e else { continue }
        print(String(format: "%@: loss %.4f", name, e.loss) + (e.accuracy.map { String(format: ", accuracy %.2f%% of %d", 100 * $0, e.count) } ?? ""))
    }
    print("model: \(summary.modelPath) (best: \(summary.outputDirectory)/best.safetensors, step \(summary.bestStep ?? 0)); logs: metrics.csv, TensorBoard events")
    return summary
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model from a YAML recipe.",
        discussion: "Example: lathe train Recipes/digits-cnn.yaml --set optimizer.lr=0.001 --set training.epochs=5"
    )

    @Argument(help: "The recipe file (see Recipes/).") var recipe: String
    @Option(name: .customLong("set"), help: "Override a recipe key: --set key.path=value (repeatable).") var overrides: [String] = []
    @Flag(help: "Continue from the output directory's checkpoint.") var resume = false
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        try threadOptions.apply()
        let url = URL(fileURLWithPath: recipe)
        let r = try Recipe.load(contentsOf: url, overrides: overrides)
        let trainer = try Trainer(recipe: r, recipeDirectory: nil)
        if threadOptions.threads != nil { try threadOptions.apply() }
        _ = try runTraining(trainer, resume: resume, label: "lathe train")
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate saved weights (Lathe's or PyTorch's state_dict as safetensors) on a recipe's data.",
        discussion: "Example: lathe eval Recipes/digits-cnn.yaml --model runs/digits-cnn/best.safetensors"
    )

    @Argument(help: "The recipe that describes the model and data.") var recipe: String
    @Option(help: "Weights to evaluate (default: the recipe's output/best.safetensors).") var model: String?
    @Option(help: "Split: test, validation or train.") var split: String = "test"
    @Option(name: .customLong("set"), help: "Override a recipe key: --set key.path=value.") var overrides: [String] = []
    @Option(help: ArgumentHelp("Write per-sample results of a classifier to this JSON file: the split's sample indices "
                               + "(rows of the full data set), true labels, predicted labels and logits.", valueName: "file"))
    var predictions: String?
    @Flag(help: "Leave the logits out of the --predictions file.") var noLogits = false
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        try threadOptions.apply()
        guard let asked = ["test": DataSplit.test, "validation": .validation, "val": .validation, "train": .train][split] else {
            throw ValidationError("--split must be test, validation or train, not '\(split)'")
        }
        let r = try Recipe.load(contentsOf: URL(fileURLWithPath: recipe), overrides: overrides)
        let trainer = try Trainer(recipe: r)
        try threadOptions.apply()  // --threads wins over the recipe's `threads`
        // Without a test split the task evaluates validation: say so, in the output and the predictions.
        let which = asked == .test && !trainer.task.hasTestSplit ? DataSplit.validation : asked
        let path = model ?? URL(fileURLWithPath: r.output).appendingPathComponent("best.safetensors").path
        let file = try SafeTensors.read(contentsOf: URL(fileURLWithPath: path))
        try trainer.model.loadStateDict(file.tensors)
        if predictions != nil, !(trainer.task is ClassificationTask) {
            throw CLIError("--predictions needs a classifier; \(r.model.name) on \(r.data.name) has no per-sample labels")
        }
        let e = trainer.evaluate(which)
        if let predictions {
            let p = try trainer.predictions(which)
            var info = [("generator", "lathe eval"), ("model", path), ("recipe", recipe), ("model_name", r.model.name),
                        ("data", r.data.name)]
            if let data = DataRegistry.shared[r.data.name] { info.append(("indices_into", data.indexDescription(r, which))) }
            info.append(("split_fractions", r.data.split.map { "\($0)" }.joined(separator: ",")))
            info.append(("split_seed", "\(r.data.splitSeed)"))
            try AtomicFile.write(p.json(info: info, includeLogits: !noLogits), to: URL(fileURLWithPath: predictions))
        }
        print("\(path) on \(r.data.name) \(which.rawValue) (\(e.count) \(trainer.task is LanguageModelTask ? "tokens" : "samples")): "
              + String(format: "loss %.4f", e.loss) + (e.accuracy.map { String(format: ", accuracy %.2f%%", 100 * $0) } ?? ""))
    }
}
