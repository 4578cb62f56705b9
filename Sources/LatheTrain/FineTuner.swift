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
/// A separate loop from ``Trainer``, whose tasks are built around one input and one target tensor
/// from a registry: this one feeds batches of token ids, labels and segment ids to
/// ``DecoderModel/labelledLoss(_:labels:segmentIDs:reduction:)``.
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
            let order = FineTuner.permutation(all.count, seed: recipe.seed ^ 0x5eed_5a11)
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
        trainRows = rows(train)
        validRows = rows(valid)
        padID = pad

        switch recipe.adapter {
        case .lora, .dora, .qlora:
            let config = recipe.loraConfig(layerCount: decoder.config.layers)!
            do { adaptedPaths = try decoder.addLoRA(config, initialization: .kaimingUniform(seed: recipe.seed)) } catch {
                throw RecipeError(file: "recipe", key: "lora", message: error.message)
            }
            loraConfig = config
        case .full:
            decoder.freeze(false)
            adaptedPaths = []
            loraConfig = nil
        }
        // Each dropout layer its own stream (they start alike).
        for (i, (_, d)) in dropoutLayers().enumerated() { d.generator = RandomGenerator(seed: recipe.seed &+ UInt64(i) &* 0x9e37_79b9) }
    }

    let padID: Int

    /// Total optimiser steps of the run.
    public var totalSteps: Int {
        if let steps = recipe.training.steps { return steps }
        let perStep = recipe.training.batchSize * recipe.training.accumulation
        return Swift.max(1, (recipe.training.epochs! * trainRows.count + perStep - 1) / perStep)
    }

    /// The trained parameters by name (adapters, or every parameter).
    public var trainableParameters: [(String, Parameter)] {
        var seen = Set<ObjectIdentifier>()
        return model.namedParameters.filter { $0.1.requiresGrad && seen.insert(ObjectIdentifier($0.1)).inserted }
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
        let b = recipe.training.batchSize, n = trainRows.count
        return (0..<b).map { i in
            let k = index * b + i
            let epoch = k / n
            if epochOrders[epoch] == nil {
                epochOrders = [epoch: FineTuner.permutation(n, seed: recipe.seed &+ UInt64(epoch) &* 0x1000_0001)]
            }
            return trainRows[epochOrders[epoch]![k % n]]
        }
    }

    func tensors(_ rows: [SFTRow]) -> (ids: Tensor, labels: Tensor, segments: Tensor?, tokens: Int, labelled: Int) {
        FineTuner.tensors(rows, pad: padID, segments: recipe.data.packing)
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

    // MARK: - Training

    var checkpointURL: URL { output.appendingPathComponent("checkpoint.safetensors") }

    /// The step of the output directory's checkpoint, if there is a readable one.
    public func checkpointStep() -> Int? {
        (try? SafeTensors.readHeader(contentsOf: checkpointURL))?.metadata["lathe.step"].flatMap(Int.init)
    }

    /// Trains to the end (or to `stopAfter` steps, for tests that simulate an interruption),
    /// evaluating every `eval_every` steps and at the end, and writes the adapter.
    @discardableResult
    public func run(resume: Bool = false, stopAfter: Int? = nil) throws -> FineTuneSummary {
        let start = Date()
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        let parameters = trainableParameters
        let optimizer = recipe.optimizer.makeOptimizer(parameters)
        var step = 0
        var best: (loss: Double, step: Int)? = nil
        var lastCheckpoint: String? = nil
        if resume {
            guard FileManager.default.fileExists(atPath: checkpointURL.path) else { throw TrainError.noCheckpoint(directory: output.path) }
            (step, best) = try loadCheckpoint(parameters: parameters, optimizer: optimizer)
            lastCheckpoint = checkpointURL.path
        }
        let total = totalSteps
        let schedule = recipe.schedule.schedule(totalSteps: total)
        let t = recipe.training
        let evalEvery = t.evalEvery ?? total
        let checkpointEvery = t.checkpointEvery ?? evalEvery
        var window = (loss: 0.0, steps: 0, tokens: 0, labelled: 0, since: Date())
        var validation: FineTuneEvaluation? = nil
        model.train()
        while step < total {
            if let stopAfter, step >= stopAfter { break }
            optimizer.learningRate = schedule.rate(at: step, base: recipe.optimizer.lr)
            optimizer.zeroGrad()
            var lossSum = 0.0
            for micro in 0..<t.accumulation {
                let batch = tensors(trainBatchRows(step * t.accumulation + micro))
                let loss = try model.labelledLoss(batch.ids, labels: batch.labels, segmentIDs: batch.segments)
                let value = loss.item
                guard value.isFinite else { throw TrainError.nonFiniteLoss(step: step + 1, value: value, lastCheckpoint: lastCheckpoint) }
                lossSum += Double(value)
                (t.accumulation == 1 ? loss : loss / Float(t.accumulation)).backward()
                window.tokens += batch.tokens
                window.labelled += batch.labelled
            }
            if let maxNorm = t.clipGradNorm { clipGradNorm(parameters.map(\.1), maxNorm: maxNorm) }
            optimizer.step()
            step += 1
            let epoch = step * t.accumulation * t.batchSize / Swift.max(trainRows.count, 1)
            let meanLoss = lossSum / Double(t.accumulation)
            window.loss += meanLoss
            window.steps += 1
            let seconds = Swift.max(Date().timeIntervalSince(window.since), 1e-9)
            onMetrics?(step, epoch, .train, ["loss": meanLoss, "lr": Double(optimizer.learningRate)])
            if step % t.logEvery == 0 || step == total {
                let report = FineTuneProgress(step: step, totalSteps: total, epoch: epoch, loss: window.loss / Double(window.steps),
                                              learningRate: optimizer.learningRate, tokensPerSecond: Double(window.tokens) / seconds,
                                              labelledPerSecond: Double(window.labelled) / seconds, elapsed: Date().timeIntervalSince(start))
                onMetrics?(step, epoch, .train, ["tokens_per_second": report.tokensPerSecond])
                onProgress?(report)
                window = (0, 0, 0, 0, Date())
            }
            if !validRows.isEmpty, step % evalEvery == 0 || step == total {
                let v = evaluate()
                validation = v
                onMetrics?(step, epoch, .validation, ["loss": v.loss, "perplexity": v.perplexity])
                if best == nil || v.loss < best!.loss {
                    best = (v.loss, step)
                    try saveWeights(to: bestPath, step: step)
                }
                window.since = Date()  // the evaluation is not training time
            }
            if step % checkpointEvery == 0 || step == total {
                try saveCheckpoint(parameters: parameters, optimizer: optimizer, step: step, best: best)
                lastCheckpoint = checkpointURL.path
                window.since = Date()
            }
        }
        if step == total { try saveWeights(to: finalPath, step: step) }
        return FineTuneSummary(steps: step, seconds: Date().timeIntervalSince(start), validation: validation, bestStep: best?.step,
                               bestLoss: best?.loss, outputPath: finalPath.path)
    }

    /// Mean loss over the validation rows (the first `eval_batches` batches), in evaluation mode.
    public func evaluate() -> FineTuneEvaluation {
        evaluate(validRows, batches: recipe.training.evalBatches)
    }

    /// Mean loss over `rows` in batches of `batch_size`.
    public func evaluate(_ rows: [SFTRow], batches: Int? = nil) -> FineTuneEvaluation {
        FineTuner.evaluate(model, rows: rows, batchSize: recipe.training.batchSize, pad: padID, segments: recipe.data.packing, batches: batches)
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
            let batch = tensors(Array(rows[start..<Swift.min(start + batchSize, rows.count)]), pad: pad, segments: segments)
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
    public var finalPath: URL { output.appendingPathComponent(loraConfig == nil ? "model.safetensors" : "adapter") }
    /// `best-adapter/` (or `best.safetensors`).
    public var bestPath: URL { output.appendingPathComponent(loraConfig == nil ? "best.safetensors" : "best-adapter") }

    func saveWeights(to url: URL, step: Int) throws {
        if let loraConfig {
            try PEFTAdapter.save(model, config: loraConfig, to: url)
        } else {
            try SafeTensors.write(model.stateDict(), metadata: ["format": "pt", "lathe.step": "\(step)"], to: url)
        }
    }

    func dropoutLayers() -> [(String, Dropout)] {
        model.namedModules.compactMap { name, m in (m as? Dropout).map { (name, $0) } }
    }

    var identity: [(String, String)] {
        [("lathe.model", recipe.model), ("lathe.adapter", recipe.adapter.rawValue), ("lathe.train_rows", "\(trainRows.count)"),
         ("lathe.optimizer", recipe.optimizer.name)]
    }

    func saveCheckpoint(parameters: [(String, Parameter)], optimizer: Optimizer, step: Int, best: (loss: Double, step: Int)?) throws {
        var tensors: [String: Tensor] = [:]
        for (k, p) in parameters { tensors["param.\(k)"] = p.value.detached() }
        for (k, v) in optimizer.stateDict() { tensors["optimizer.\(k)"] = v }
        var meta = ["lathe.finetune": "1", "lathe.step": "\(step)"]
        for (k, v) in identity { meta[k] = v }
        if let best { meta["lathe.best_loss"] = "\(best.loss)"; meta["lathe.best_step"] = "\(best.step)" }
        for (name, d) in dropoutLayers() { meta["lathe.rng.\(name)"] = "\(d.generator.offset)" }
        try SafeTensors.write(tensors, metadata: meta, to: checkpointURL)
    }

    func loadCheckpoint(parameters: [(String, Parameter)], optimizer: Optimizer) throws -> (Int, (loss: Double, step: Int)?) {
        let path = checkpointURL.path
        let file: SafeTensorsFile
        do { file = try SafeTensors.read(contentsOf: checkpointURL) } catch {
            throw TrainError.badCheckpoint(path: path, reason: "\(error)")
        }
        let meta = file.metadata
        guard meta["lathe.finetune"] == "1", let step = meta["lathe.step"].flatMap(Int.init) else {
            throw TrainError.badCheckpoint(path: path, reason: "it is not a checkpoint of lathe finetune (no lathe.finetune/lathe.step metadata)")
        }
        for (key, expected) in identity where meta[key] != expected {
            throw TrainError.badCheckpoint(path: path, reason: "it was written for \(key.dropFirst(6)) '\(meta[key] ?? "?")', this run has '\(expected)'")
        }
        var optimState: [String: Tensor] = [:]
        for (k, v) in file.tensors where k.hasPrefix("optimizer.") { optimState[String(k.dropFirst(10))] = v }
        for (name, p) in parameters {
            guard let v = file.tensors["param.\(name)"], v.shape == p.value.shape else {
                throw TrainError.badCheckpoint(path: path, reason: "param.\(name) is missing or has another shape")
            }
            p.value = v.contiguous()
        }
        if parameters.count != file.tensors.keys.filter({ $0.hasPrefix("param.") }).count {
            throw TrainError.badCheckpoint(path: path, reason: "it holds other trained tensors than this run's (another adapter configuration?)")
        }
        do { try optimizer.loadStateDict(optimState) } catch { throw TrainError.badCheckpoint(path: path, reason: "\(error)") }
        for (name, d) in dropoutLayers() {
            if let offset = meta["lathe.rng.\(name)"].flatMap(UInt64.init) { d.generator.offset = offset }
        }
        let best = meta["lathe.best_loss"].flatMap(Double.init).flatMap { l in meta["lathe.best_step"].flatMap(Int.init).map { (l, $0) } }
        return (step, best)
    }
}
