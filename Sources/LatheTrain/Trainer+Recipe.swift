import Foundation
import LatheNN
import LatheTensor

extension Trainer {
    /// A trainer for a ``Recipe``: the data from ``DataRegistry``, the model from ``ModelRegistry``
    /// (sized from the data) and the options of ``TrainerOptions/init(recipe:task:)``. Applies the
    /// recipe's `threads` (the one global setting a recipe has).
    ///
    /// Its run writes `model.safetensors` (final), `best.safetensors` (best validation: highest
    /// accuracy, then lowest loss) and `checkpoint.safetensors` (resumable) to the recipe's
    /// output directory, and ends with the best weights loaded and evaluated on the validation
    /// and test splits (``TrainerOptions/restoreBest``), as recipes report the best model.
    public convenience init(recipe: Recipe, recipeDirectory: URL? = nil) throws {
        if let threads = recipe.threads { ThreadPool.threadCount = threads }
        try self.init(recipe: recipe, task: makeTask(recipe, relativeTo: recipeDirectory))
    }

    /// A trainer on an already loaded task (its data and batch order), with a model built from
    /// `recipe` (which may differ from the task's in its `model` section, e.g. a student).
    public convenience init(recipe: Recipe, task: TrainingTask) throws {
        if let threads = recipe.threads { ThreadPool.threadCount = threads }
        let model = try makeModel(recipe, task: task)
        self.init(model: model, task: task, options: TrainerOptions(recipe: recipe, task: task))
        self.recipe = recipe
    }
}

extension TrainerOptions {
    /// The options a classifier or character-model recipe gives: steps (or epochs over the
    /// task's batches), accumulation, optimiser and schedule, clipping, evaluation every epoch
    /// (or `eval_every`), the best by ``BestMetric/highestAccuracy``, whole-model checkpoints
    /// that must match the recipe's model, data and optimiser, and ``restoreBest``.
    public init(recipe: Recipe, task: TrainingTask) {
        let t = recipe.training
        let steps = t.steps ?? Swift.max(1, t.epochs! * task.microBatchesPerEpoch / t.accumulation)
        let evalEvery = t.evalEvery ?? Swift.max(1, task.microBatchesPerEpoch / t.accumulation)
        self.init(steps: steps, accumulation: t.accumulation, schedule: recipe.schedule.schedule(totalSteps: steps),
                  clipGradNorm: t.clipGradNorm, evalEvery: evalEvery, bestMetric: .highestAccuracy,
                  output: URL(fileURLWithPath: recipe.output), checkpointEvery: t.checkpointEvery ?? evalEvery,
                  checkpointContents: .modelState, makeOptimizer: { recipe.optimizer.makeOptimizer($0) })
        identity = [("lathe.model", recipe.model.name), ("lathe.data", recipe.data.name), ("lathe.optimizer", recipe.optimizer.name)]
        restoreBest = true
    }
}
