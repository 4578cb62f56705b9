import Foundation
import LatheCompress
import LatheIO
import LatheLM
import LatheNN
import LatheTensor

/// One progress report of ``FineTuner/run(resume:stopAfter:)``, for the steps since the last.
public struct FineTuneProgress: Sendable {
    public var step: Int
    public var totalSteps: Int
    public var epoch: Int
    /// Mean training loss of the steps since the last report.
    public var loss: Double
    public var learningRate: Float
    /// Tokens (padding excluded) and labelled tokens per second since the last report.
    public var tokensPerSecond: Double
    public var labelledPerSecond: Double
    /// Seconds since the run (or the resumed run) started.
    public var elapsed: Double
}

/// Loss and perplexity on the validation rows.
public struct FineTuneEvaluation: Sendable, Equatable {
    /// Mean next-token cross-entropy over the labelled tokens.
    public var loss: Double
    /// `exp(loss)`.
    public var perplexity: Double { Foundation.exp(loss) }
    /// Labelled tokens scored.
    public var tokens: Int
}

/// What a finished run reports.
public struct FineTuneSummary: Sendable {
    public var steps: Int
    public var seconds: Double
    public var validation: FineTuneEvaluation?
    public var bestStep: Int?
    public var bestLoss: Double?
    /// The final adapter folder (PEFT), or the final weights for full fine-tuning.
    public var outputPath: String
}

/// Fine-tunes a pretrained decoder on jsonl data (``SFTTokenizer``) as a ``FineTuneRecipe`` says,
/// with LoRA/DoRA adapters (on a float32 copy of the model, or on its quantized layers for QLoRA)
/// or all parameters.
///
/// A thin layer over the general ``Trainer``: it loads the model and the data, attaches the
/// adapter, and gives the trainer an ``SFTTask`` (batches of token ids, labels and segment ids for
/// ``DecoderModel/labelledLoss(_:labels:segmentIDs:reduction:)``), options for checkpoints of the
/// trained tensors only, the lowest validation loss as the best, and PEFT folders as the weights it
/// writes. Add hooks to ``trainer`` to change a step.
///
/// Files in ``output``: `adapter/` (PEFT folder: the final adapter), `best-adapter/` (the adapter of
/// the lowest validation loss; never loaded back behind the user's back), `checkpoint.safetensors`
/// (the trained tensors and the optimiser state: resumes bit-exactly), `metrics.csv` and TensorBoard
/// events (written by the caller from ``onMetrics``). Full fine-tuning writes `model.safetensors`
/// and `best.safetensors` instead of the adapter folders.
///
/// One step is one optimiser update over `accumulation` micro-batches of `batch_size` rows. Rows
/// are visited epoch by epoch in an order that is a pure function of the seed and the epoch, so a
/// checkpoint needs only the trained tensors, the optimiser, the dropout generators and the step.
public final class FineTuner {
    public let recipe: FineTuneRecipe
    public let pretrained: PretrainedModel
    public let model: DecoderModel
    /// The adapter configuration (nil: full fine-tuning).
    public let loraConfig: LoRAConfig?
    /// The adapted module paths.
    public let adaptedPaths: [String]
    public let sft: SFTTokenizer
    public let format: SFTFormat
    public let trainRows: [SFTRow]
    public let validRows: [SFTRow]
    public let trainExamples: Int
    public let validExamples: Int
    /// Truncations and skipped lines, one message each.
    public let warnings: [String]
    public let output: URL
    /// Called every `training.log_every` steps and at the last.
    public var onProgress: ((FineTuneProgress) -> Void)?
    /// Called with (step, epoch, split, metrics) after each step and each evaluation.
    public var onMetrics: ((Int, Int, MetricSplit, [String: Double]) -> Void)?
    /// The task the trainer runs: batches of ``trainRows``, the labelled loss, validation on ``validRows``.
    public let task: SFTTask
    /// The loop (its options follow the recipe; hooks may be added before ``run(resume:stopAfter:)``).
    public let trainer: Trainer

    /// Loads the model and data and attaches the adapter.
    /// - Throws: ``RecipeError`` for an adapter that cannot be built, ``SFTDataError`` for bad
    ///   data, ``ModelFileError`` for a model that cannot be loaded.
    public init(recipe: FineTuneRecipe) throws {
        self.recipe = recipe
        if let threads = recipe.threads { ThreadPool.threadCount = threads }
        // QLoRA keeps a GGUF model's quantized layers as they are; the others train on float32 weights.
        let loaded = recipe.adapter == .qlora ? try PretrainedModel.load(recipe.model) : try PretrainedModel.loadForTraining(recipe.model)
        let decoder = try loaded.decoder()
        if recipe.adapter == .qlora, !decoder.namedModules.contains(where: { $0.1 is WeightOnlyLinear }) {
            throw RecipeError(file: "recipe", key: "adapter", message: "qlora trains adapters on a quantized base, and \(recipe.model) "
                              + "has no quantized layers (give a quantized .gguf file, or use adapter: lora)")
        }
        (pretrained, model) = (loaded, decoder)
        output = URL(fileURLWithPath: recipe.output)

        let template = loaded.chatTemplate == nil ? nil : try loaded.parsedChatTemplate()
        let sft = SFTTokenizer(tokenizer: loaded.tokenizer, template: template,
                               options: SFTOptions(format: recipe.data.format, maskPrompt: recipe.data.maskPrompt, maxLength: recipe.data.maxLength))
        self.sft = sft
        var warnings: [String] = []
        let (format, all) = try sft.read(URL(fileURLWithPath: recipe.data.train), warnings: &warnings)
        var train = all, valid: [SFTExample] = []
        if let v = recipe.data.valid {
            let (vf, examples) = try sft.read(URL(fileURLWithPath: v), warnings: &warnings)
            guard vf == format else {
                throw SFTDataError(file: v, message: "the validation file is \(vf.rawValue) data, the training file \(format.rawValue) data")
            }
            valid = examples
        } else if let f = recipe.data.validFraction {
            let order = SFTTask.permutation(all.count, seed: recipe.seed ^ 0x5eed_5a11)
            let n = Int((Double(all.count) * f).rounded())
            guard n >= 1, n < all.count else {
                throw SFTDataError(file: recipe.data.train, message: "valid_fraction \(f) of \(all.count) examples leaves "
                                   + (n < 1 ? "no validation example" : "no training example"))
            }
            valid = order.prefix(n).sorted().map { all[$0] }
            train = order.dropFirst(n).sorted().map { all[$0] }
        }
        self.format = format
        self.warnings = warnings
        (trainExamples, validExamples) = (train.count, valid.count)
        let tokenizer = loaded.tokenizer
        let pad = tokenizer.pad ?? tokenizer.eos ?? 0
        func rows(_ examples: [SFTExample]) -> [SFTRow] {
            recipe.data.packing ? SFTPacking.pack(examples, length: recipe.data.maxLength, pad: pad)
                : examples.map { SFTPacking.single($0, length: $0.ids.count, pad: pad) }
        }

        var lora: LoRAConfig? = nil
        switch recipe.adapter {
        case .lora, .dora, .qlora:
            let config = recipe.loraConfig(layerCount: decoder.config.layers)!
            do { adaptedPaths = try decoder.addLoRA(config, initialization: .kaimingUniform(seed: recipe.seed)) } catch {
                throw RecipeError(file: "recipe", key: "lora", message: error.message)
            }
            lora = config
        case .full:
            decoder.freeze(false)
            adaptedPaths = []
        }
        loraConfig = lora
        // Each dropout layer its own stream (they start alike).
        let dropouts = decoder.namedModules.compactMap { $0.1 as? Dropout }
        for (i, d) in dropouts.enumerated() { d.generator = RandomGenerator(seed: recipe.seed &+ UInt64(i) &* 0x9e37_79b9) }

        let task = SFTTask(trainRows: rows(train), validRows: rows(valid), batchSize: recipe.training.batchSize, pad: pad,
                           segments: recipe.data.packing, seed: recipe.seed, evalBatches: recipe.training.evalBatches)
        self.task = task
        (trainRows, validRows) = (task.trainRows, task.validRows)
        let t = recipe.training
        let total = FineTuner.totalSteps(recipe, rows: task.trainRows.count)
        var options = TrainerOptions(steps: total, accumulation: t.accumulation, schedule: recipe.schedule.schedule(totalSteps: total),
                                     clipGradNorm: t.clipGradNorm, evalEvery: task.validRows.isEmpty ? nil : t.evalEvery ?? total,
                                     bestMetric: .lowestLoss, output: URL(fileURLWithPath: recipe.output), checkpointEvery: t.checkpointEvery ?? t.evalEvery ?? total,
                                     checkpointContents: .trainableParameters, makeOptimizer: { recipe.optimizer.makeOptimizer($0) })
        let config = lora, rowCount = task.trainRows.count
        options.identity = [("lathe.finetune", "1"), ("lathe.model", recipe.model), ("lathe.adapter", recipe.adapter.rawValue),
                            ("lathe.train_rows", "\(rowCount)"), ("lathe.optimizer", recipe.optimizer.name)]
        (options.finalName, options.bestName) = config == nil ? ("model.safetensors", "best.safetensors") : ("adapter", "best-adapter")
        trainer = Trainer(model: decoder, task: task, options: options)
        trainer.writeWeights = { trainer, url in try FineTuner.write(trainer.model, adapter: config, step: trainer.step, to: url) }
    }

    /// Total optimiser steps of the run.
    public var totalSteps: Int { trainer.totalSteps }

    static func totalSteps(_ recipe: FineTuneRecipe, rows: Int) -> Int {
        if let steps = recipe.training.steps { return steps }
        let perStep = recipe.training.batchSize * recipe.training.accumulation
        return Swift.max(1, (recipe.training.epochs! * rows + perStep - 1) / perStep)
    }

    /// The trained parameters by name (adapters, or every parameter).
    public var trainableParameters: [(String, Parameter)] {
        var seen = Set<ObjectIdentifier>()
        return model.namedParameters.filter { $0.1.requiresGrad && seen.insert(ObjectIdentifier($0.1)).inserted }
    }

    // MARK: - Training

    /// The step of the output directory's checkpoint, if there is a readable one.
    public func checkpointStep() -> Int? { trainer.checkpointStep() }

    /// Trains to the end (or to `stopAfter` steps, for tests that simulate an interruption),
    /// evaluating every `eval_every` steps and at the end, and writes the adapter. The model keeps
    /// its final weights; the best adapter is only written to ``bestPath``.
    @discardableResult
    public func run(resume: Bool = false, stopAfter: Int? = nil) throws -> FineTuneSummary {
        let start = Date()
        let total = totalSteps, logEvery = recipe.training.logEvery
        var window = (loss: 0.0, steps: 0, tokens: 0, labelled: 0, seconds: 0.0)
        trainer.onMetrics = onMetrics
        trainer.onStep = { [onMetrics, onProgress] r in
            window.loss += r.loss
            window.steps += 1
            window.tokens += r.counts[SFTTask.tokens] ?? 0
            window.labelled += r.counts[SFTTask.labelled] ?? 0
            window.seconds += r.seconds
            guard r.step % logEvery == 0 || r.step == total else { return }
            let seconds = Swift.max(window.seconds, 1e-9)
            let report = FineTuneProgress(step: r.step, totalSteps: total, epoch: r.epoch, loss: window.loss / Double(window.steps),
                                          learningRate: r.learningRate, tokensPerSecond: Double(window.tokens) / seconds,
                                          labelledPerSecond: Double(window.labelled) / seconds, elapsed: Date().timeIntervalSince(start))
            onMetrics?(r.step, r.epoch, .train, ["tokens_per_second": report.tokensPerSecond])
            onProgress?(report)
            window = (0, 0, 0, 0, 0)
        }
        defer { (trainer.onStep, trainer.onMetrics) = (nil, nil) }
        let summary = try trainer.run(resume: resume, stopAfter: stopAfter)
        return FineTuneSummary(steps: summary.steps, seconds: Date().timeIntervalSince(start),
                               validation: summary.validation.map { FineTuneEvaluation(loss: $0.loss, tokens: $0.count) },
                               bestStep: summary.bestStep, bestLoss: summary.bestScore.map { -$0 }, outputPath: finalPath.path)
    }

    /// Mean loss over the validation rows (the first `eval_batches` batches), in evaluation mode.
    public func evaluate() -> FineTuneEvaluation {
        evaluate(validRows, batches: recipe.training.evalBatches)
    }

    /// Mean loss over `rows` in batches of `batch_size`.
    public func evaluate(_ rows: [SFTRow], batches: Int? = nil) -> FineTuneEvaluation {
        FineTuner.evaluate(model, rows: rows, batchSize: recipe.training.batchSize, pad: task.pad, segments: recipe.data.packing, batches: batches)
    }

    /// Mean next-token loss of `model` over `rows` (the labels after each row's first position)
    /// in batches of `batchSize` rows (at most `batches` of them), in evaluation mode, without gradients.
    public static func evaluate(_ model: DecoderModel, rows: [SFTRow], batchSize: Int, pad: Int, segments: Bool,
                                batches: Int? = nil) -> FineTuneEvaluation {
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        var sum = 0.0, count = 0
        var start = 0, done = 0
        while start < rows.count, done < (batches ?? Int.max) {
            let batch = SFTTask.tensors(Array(rows[start..<Swift.min(start + batchSize, rows.count)]), pad: pad, segments: segments)
            if let loss = try? noGrad({ try model.labelledLoss(batch.ids, labels: batch.labels, segmentIDs: batch.segments, reduction: .sum) }) {
                sum += Double(loss.item)
                let width = batch.labels.shape[1]
                count += batch.labels.intScalars.enumerated().filter { $0.offset % width != 0 && $0.element != -100 }.count
            }
            start += batchSize
            done += 1
        }
        return FineTuneEvaluation(loss: count == 0 ? .nan : sum / Double(count), tokens: count)
    }

    // MARK: - Files

    /// `adapter/` (or `model.safetensors` for full fine-tuning).
    public var finalPath: URL { output.appendingPathComponent(trainer.options.finalName) }
    /// `best-adapter/` (or `best.safetensors`).
    public var bestPath: URL { output.appendingPathComponent(trainer.options.bestName) }

    /// The adapter as a PEFT folder, or (full fine-tuning, `adapter` nil) the whole state dict.
    static func write(_ model: Module, adapter: LoRAConfig?, step: Int, to url: URL) throws {
        if let adapter {
            try PEFTAdapter.save(model, config: adapter, to: url)
        } else {
            try SafeTensors.write(model.stateDict(), metadata: ["format": "pt", "lathe.step": "\(step)"], to: url)
        }
    }
}

/// Supervised fine-tuning of a decoder as a ``TrainingTask``: batches of ``SFTRow``s as token ids,
/// labels (-100 where not scored) and, for packed rows, segment ids; the loss is
/// ``DecoderModel/labelledLoss(_:labels:segmentIDs:reduction:)``; the evaluation is the mean
/// next-token loss (and perplexity) over the validation rows.
///
/// Rows are visited epoch by epoch in an order that is a pure function of the seed and the epoch.
public final class SFTTask: TrainingTask {
    public let trainRows: [SFTRow], validRows: [SFTRow]
    public let batchSize: Int, pad: Int, segments: Bool, seed: UInt64
    /// Validation batches scored by an evaluation (nil: all).
    public let evalBatches: Int?
    /// Names of ``Batch/counts``: tokens without padding, and labelled tokens.
    public static let tokens = "tokens", labelled = "labelled"

    public init(trainRows: [SFTRow], validRows: [SFTRow], batchSize: Int, pad: Int, segments: Bool, seed: UInt64, evalBatches: Int?) {
        (self.trainRows, self.validRows, self.batchSize, self.pad) = (trainRows, validRows, batchSize, pad)
        (self.segments, self.seed, self.evalBatches) = (segments, seed, evalBatches)
    }

    public var microBatchesPerEpoch: Int { Swift.max(1, (trainRows.count + batchSize - 1) / batchSize) }

    public func epoch(afterMicroBatches microBatches: Int) -> Int { microBatches * batchSize / Swift.max(trainRows.count, 1) }

    public func batch(_ index: Int) -> Batch {
        let b = SFTTask.tensors(trainBatchRows(index), pad: pad, segments: segments)
        var tensors = [Batch.Key.inputIDs: b.ids, Batch.Key.labels: b.labels]
        tensors[Batch.Key.segmentIDs] = b.segments
        return Batch(tensors, counts: [SFTTask.tokens: b.tokens, SFTTask.labelled: b.labelled])
    }

    public func loss(_ model: Module, on batch: Batch) throws -> TaskLoss {
        guard let decoder = model as? DecoderModel else { preconditionFailure("SFTTask: the model is a \(type(of: model)), not a DecoderModel") }
        return TaskLoss(try decoder.labelledLoss(batch.inputIDs, labels: batch.labels, segmentIDs: batch.segmentIDs))
    }

    public func evaluate(_ model: Module, split: DataSplit) -> Evaluation {
        guard let decoder = model as? DecoderModel else { preconditionFailure("SFTTask: the model is a \(type(of: model)), not a DecoderModel") }
        let e = FineTuner.evaluate(decoder, rows: split == .train ? trainRows : validRows, batchSize: batchSize, pad: pad, segments: segments,
                                   batches: evalBatches)
        return Evaluation(loss: e.loss, accuracy: nil, count: e.tokens, extra: ["perplexity": e.perplexity])
    }

    // MARK: - Batches

    /// A seeded Fisher-Yates permutation of `0..<n` (SplitMix64).
    static func permutation(_ n: Int, seed: UInt64) -> [Int] {
        var state = seed
        func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        var p = Array(0..<n)
        if n > 1 {
            for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, Int(next() % UInt64(i + 1))) }
        }
        return p
    }

    private var epochOrders: [Int: [Int]] = [:]

    /// The rows of training micro-batch `index` (0, 1, ...), epoch after epoch.
    func trainBatchRows(_ index: Int) -> [SFTRow] {
        let b = batchSize, n = trainRows.count
        return (0..<b).map { i in
            let k = index * b + i
            let epoch = k / n
            if epochOrders[epoch] == nil {
                epochOrders = [epoch: SFTTask.permutation(n, seed: seed &+ UInt64(epoch) &* 0x1000_0001)]
            }
            return trainRows[epochOrders[epoch]![k % n]]
        }
    }

    /// Token ids, labels and (with `segments`) segment ids of rows, padded to the longest, with
    /// the count of their tokens (padding excluded) and of their labels.
    static func tensors(_ rows: [SFTRow], pad: Int, segments withSegments: Bool) -> (ids: Tensor, labels: Tensor, segments: Tensor?, tokens: Int, labelled: Int) {
        let length = rows.map(\.ids.count).max() ?? 0
        var ids: [Int] = [], labels: [Int] = [], segments: [Int] = []
        var tokens = 0, labelled = 0
        for var r in rows {
            tokens += r.segments.lazy.filter { $0 != 0 }.count
            labelled += r.labels.lazy.filter { $0 != -100 }.count
            SFTPacking.pad(&r, to: length, with: pad)
            ids += r.ids; labels += r.labels; segments += r.segments
        }
        let shape = [rows.count, length]
        return (Tensor(ids, shape: shape, dtype: .int64), Tensor(labels, shape: shape, dtype: .int64),
                withSegments ? Tensor(segments, shape: shape, dtype: .int64) : nil, tokens, labelled)
    }
}
