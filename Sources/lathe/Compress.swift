import ArgumentParser
import Foundation
import Lathe

/// Size of a file in bytes (0 if it cannot be read).
func fileBytes(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
}

/// "accuracy 98.61%" or, for a model without accuracy, "loss 0.1234".
func scoreText(_ e: Evaluation) -> String {
    e.accuracy.map { String(format: "%.2f%%", 100 * $0) } ?? String(format: "loss %.4f", e.loss)
}

/// The split that `Trainer.evaluate(.test)` measures (validation when the data has no test split).
func testSplitName(_ t: Trainer) -> String { t.task.hasTestSplit ? "test" : "validation" }

/// Loads a recipe and builds its trainer with the weights of `model` loaded. With
/// `finetune` (steps, learning rate) the trainer runs that many AdamW-or-recipe-optimiser steps
/// at that rate on a cosine schedule without warm-up, writing to a temporary directory that is
/// removed when the process ends.
func loadTrainer(recipe: String, overrides: [String], model: String, finetune: (steps: Int, lr: Float)? = nil) throws -> (Recipe, Trainer) {
    var r = try Recipe.load(contentsOf: URL(fileURLWithPath: recipe), overrides: overrides)
    if let finetune { fineTuning(&r, steps: finetune.steps, lr: finetune.lr) }
    let trainer = try Trainer(recipe: r)
    let file = try SafeTensors.read(contentsOf: URL(fileURLWithPath: model))
    try trainer.model.loadStateDict(file.tensors)
    return (r, trainer)
}

/// Turns `r` into a fine-tuning run: `steps` steps at `lr` (cosine, no warm-up), output in a
/// fresh temporary directory that is removed at exit.
func fineTuning(_ r: inout Recipe, steps: Int, lr: Float) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-finetune-\(UUID().uuidString)")
    TemporaryDirectories.removeAtExit(directory)
    r.output = directory.path
    (r.training.epochs, r.training.steps) = (nil, Swift.max(steps, 1))
    r.schedule.warmupSteps = 0
    r.optimizer.lr = lr
}

/// Temporary directories to delete when the command ends.
enum TemporaryDirectories {
    nonisolated(unsafe) static var pending: [URL] = []
    static func removeAtExit(_ url: URL) {
        if pending.isEmpty { atexit { for u in TemporaryDirectories.pending { try? FileManager.default.removeItem(at: u) } } }
        pending.append(url)
    }
}

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize trained weights, compare size and test accuracy with fp32, and save the quantized model.",
        discussion: """
        Schemes: int8 (static: int8 weights and activations, activation ranges calibrated on training batches), \
        int8-dynamic (int8 weights, activations quantized per batch), int4 and int8-weight (group-wise weights of Linear \
        layers, float activations; convolutions stay fp32). The output is a safetensors file with a lathe.quantization \
        manifest (QuantizedModelFile.load restores it into a freshly built model of the recipe).
        Example: lathe quantize Recipes/digits-cnn.yaml --model runs/digits-cnn/best.safetensors --scheme int8 --output q.safetensors
        """
    )

    @Argument(help: "The recipe that describes the model and data.") var recipe: String
    @Option(help: "fp32 weights (safetensors state dict).") var model: String
    @Option(help: "int8, int8-dynamic, int4 or int8-weight.") var scheme: String
    @Option(help: "Group size of int4 / int8-weight (a multiple of 16: 32, 64, 128).") var groupSize: Int = 64
    @Flag(help: "Asymmetric (min/scale) groups instead of symmetric ones (int4, int8-weight).") var asymmetric = false
    @Option(help: "Calibration observer of static int8: minmax, percentile (99.99) or mse.") var observer: String = "minmax"
    @Option(help: "Training batches to calibrate static int8 on.") var calibrationBatches: Int = 8
    @Flag(help: "Keep the first and the last quantizable layer in fp32.") var keepFirstLast = false
    @Flag(help: "Keep batch norms as they are instead of folding them into the layer before them.") var noFoldBn = false
    @Option(help: "Quantization-aware training steps before converting (int8 only; 0: post-training quantization).") var qatSteps: Int = 0
    @Option(help: "QAT learning rate.") var qatLr: Float = 1e-4
    @Option(help: "QAT activation ranges: ema (moving average of batch min/max) or learned (trained bounds).") var qatRanges: String = "ema"
    @Option(help: "Where to write the quantized model.") var output: String
    @Option(name: .customLong("set"), help: "Override a recipe key: --set key.path=value.") var overrides: [String] = []
    @OptionGroup var threadOptions: ThreadOptions

    static let schemes = ["int8", "int8-dynamic", "int4", "int8-weight"]

    func validate() throws {
        guard Self.schemes.contains(scheme) else {
            throw ValidationError("--scheme must be one of \(Self.schemes.joined(separator: ", ")), not '\(scheme)'")
        }
        guard groupSize > 0, groupSize % 16 == 0 else { throw ValidationError("--group-size must be a positive multiple of 16, got \(groupSize)") }
        guard ["minmax", "percentile", "mse"].contains(observer) else {
            throw ValidationError("--observer must be minmax, percentile or mse, not '\(observer)'")
        }
        if asymmetric, scheme != "int4", scheme != "int8-weight" {
            throw ValidationError("--asymmetric applies to the group-wise schemes (int4, int8-weight), not \(scheme)")
        }
        guard calibrationBatches >= 1 else { throw ValidationError("--calibration-batches must be at least 1, got \(calibrationBatches)") }
        guard qatSteps >= 0 else { throw ValidationError("--qat-steps must be at least 0, got \(qatSteps)") }
        if qatSteps > 0, scheme != "int8" { throw ValidationError("--qat-steps applies to --scheme int8, not \(scheme)") }
        if qatSteps > 0, noFoldBn { throw ValidationError("QAT needs the batch norms folded; drop --no-fold-bn") }
        guard qatLr > 0 else { throw ValidationError("--qat-lr must be positive, got \(qatLr)") }
        guard ["ema", "learned"].contains(qatRanges) else { throw ValidationError("--qat-ranges must be ema or learned, not '\(qatRanges)'") }
    }

    var config: QuantizationConfig {
        switch scheme {
        case "int8":
            let kind: ObserverKind = observer == "mse" ? .mse : observer == "percentile" ? .percentile(99.99) : .minMax
            return QuantizationConfig(scheme: .staticInt8, observer: kind)
        case "int8-dynamic": return QuantizationConfig(scheme: .dynamicInt8)
        case "int4": return QuantizationConfig(scheme: .weightOnly(GroupwiseScheme(bits: 4, groupSize: groupSize, symmetric: !asymmetric)))
        default: return QuantizationConfig(scheme: .weightOnly(GroupwiseScheme(bits: 8, groupSize: groupSize, symmetric: !asymmetric)))
        }
    }

    var variant: String {
        switch config.scheme {
        case .staticInt8 where qatSteps > 0: "int8 static after \(qatSteps) QAT steps (\(qatRanges) ranges, initial ones from \(observer) on \(calibrationBatches) batches)"
        case .staticInt8: "int8 static (\(observer) observer, \(calibrationBatches) calibration batches)"
        case .dynamicInt8: "int8 dynamic"
        case .weightOnly(let s): "weight-only \(s)"
        }
    }

    func run() throws {
        try threadOptions.apply()
        let (r, trainer) = try loadTrainer(recipe: recipe, overrides: overrides, model: model,
                                           finetune: qatSteps > 0 ? (qatSteps, qatLr) : nil)
        try threadOptions.apply()  // --threads wins over the recipe's `threads`
        let net = trainer.model
        let fp32 = trainer.evaluate(.test)
        let folded = noFoldBn ? [] : BatchNormFolding.fold(net)

        var candidates = Quantizer.quantizableLayers(in: net).map(\.0)
        if case .weightOnly = config.scheme { candidates = Quantizer.quantizableLayers(in: net).filter { $0.1 is Linear }.map(\.0) }
        var skip: Set<String> = []
        if keepFirstLast, let first = Quantizer.quantizableLayers(in: net).first?.0, let last = Quantizer.quantizableLayers(in: net).last?.0 {
            skip = [first, last]
        }
        guard candidates.contains(where: { !skip.contains($0) }) else {
            throw CLIError("\(r.model.name) has no layer to quantize with \(scheme)"
                                  + (keepFirstLast ? " once the first and last are kept in fp32" : ""))
        }
        var batches: [Tensor] = []
        if config.scheme == .staticInt8 { batches = (0..<calibrationBatches).map { trainer.task.trainBatch($0).x } }
        let done: [String]
        var qatLine: String?
        if qatSteps > 0 {
            done = QAT.prepare(net, calibrationBatches: batches, learning: qatRanges == "learned" ? .learned : .ema,
                               observer: config.observer) { name, _ in !skip.contains(name) }
            let ptqLike = trainer.evaluate(.test)
            let summary = try trainer.run()
            qatLine = "QAT: \(summary.steps) steps in " + String(format: "%.1f s", summary.seconds) + "; fake-quantized \(testSplitName(trainer)) "
                + scoreText(ptqLike) + " before, " + scoreText(trainer.evaluate(.test)) + " after (best validation step \(summary.bestStep ?? summary.steps))"
            QAT.convert(net)
        } else {
            done = quantize(model: net, config: config, calibrationBatches: batches) { name, _ in !skip.contains(name) }
        }
        let quantized = trainer.evaluate(.test)

        let url = URL(fileURLWithPath: output)
        try QuantizedModelFile.save(net, to: url, metadata: ["lathe.recipe": recipe, "lathe.model": r.model.name])

        // Reload into a fresh model, so that the file is known to hold what was evaluated.
        let fresh = try Trainer(recipe: r)
        try QuantizedModelFile.load(into: fresh.model, from: url)
        let reloaded = fresh.evaluate(.test)

        let fp32Bytes = fileBytes(model), qBytes = fileBytes(output)
        let fp32Layers = Quantizer.quantizableLayers(in: net).map(\.0).filter { !done.contains($0) }
        print("lathe quantize: \(r.model.name) on \(r.data.name), \(variant)")
        if let qatLine { print(qatLine) }
        print("quantized layers: \(done.joined(separator: ", "))" + (fp32Layers.isEmpty ? "" : "; fp32: \(fp32Layers.joined(separator: ", "))")
              + (folded.isEmpty ? "" : "; batch norms folded: " + folded.map { "\($0.norm) into \($0.layer)" }.joined(separator: ", ")))
        print(String(format: "file: fp32 %d bytes (%@), quantized %d bytes (%@), %.2fx smaller",
                     fp32Bytes, model, qBytes, output, Double(fp32Bytes) / Double(max(qBytes, 1))))
        let count = "\(fp32.count) \(trainer.task is LanguageModelTask ? "tokens" : "samples")"
        if let a = fp32.accuracy, let b = quantized.accuracy {
            print(String(format: "accuracy (%@, %@): fp32 %.2f%%, quantized %.2f%%, drop %.2f points", testSplitName(trainer), count, 100 * a, 100 * b, 100 * (a - b)))
        }
        print(String(format: "loss (%@): fp32 %.4f, quantized %.4f", testSplitName(trainer), fp32.loss, quantized.loss))
        print("reloaded \(output): \(testSplitName(trainer)) \(scoreText(reloaded))" + (reloaded.loss == quantized.loss ? " (same as before saving)" : String(format: " (loss %.6f before saving, %.6f reloaded)", quantized.loss, reloaded.loss)))
    }
}

struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prune trained weights, fine-tune with the pruning kept, and save the pruned state dict.",
        discussion: """
        Methods: magnitude (each weight loses --sparsity of its entries), global (one magnitude threshold across all \
        weights), 2:4 (two of every four consecutive inputs), structured (removes --ratio of the channels of every \
        layer that feeds another, for digits-cnn and Sequential chains such as digits-mlp). Fine-tuning runs AdamW at \
        --lr on a cosine schedule without warm-up, in a temporary directory, and uses the final weights.
        The unstructured methods save a state dict of the recipe's shapes (lathe eval loads it). Structured pruning saves \
        the smaller shapes: loading it needs the pruned architecture, which a recipe cannot describe, so lathe eval \
        cannot load it; in Swift, loadPrunedStateDict(_:into:) loads it into a freshly built model of the recipe.
        Example: lathe prune Recipes/digits-cnn.yaml --model runs/digits-cnn/best.safetensors --method global --sparsity 0.9 --output p.safetensors
        """
    )

    @Argument(help: "The recipe that describes the model and data.") var recipe: String
    @Option(help: "Trained weights (safetensors state dict).") var model: String
    @Option(help: "magnitude, global, structured or 2:4.") var method: String
    @Option(help: "Fraction of the weights to remove (magnitude, global).") var sparsity: Double = 0.9
    @Option(help: "Fraction of the channels to remove from each layer (structured).") var ratio: Double = 0.5
    @Option(help: "Fine-tune steps after pruning (0: none).") var finetuneSteps: Int = 200
    @Option(help: "Fine-tune learning rate.") var lr: Float = 1e-3
    @Option(help: "Where to write the pruned state dict.") var output: String
    @Option(name: .customLong("set"), help: "Override a recipe key: --set key.path=value.") var overrides: [String] = []
    @OptionGroup var threadOptions: ThreadOptions

    static let methods = ["magnitude", "global", "structured", "2:4"]

    func validate() throws {
        guard Self.methods.contains(method) else {
            throw ValidationError("--method must be one of \(Self.methods.joined(separator: ", ")), not '\(method)'")
        }
        guard (0...1).contains(sparsity) else { throw ValidationError("--sparsity must be in [0, 1], got \(sparsity)") }
        guard ratio >= 0, ratio < 1 else { throw ValidationError("--ratio must be in [0, 1), got \(ratio)") }
        guard finetuneSteps >= 0 else { throw ValidationError("--finetune-steps must be at least 0, got \(finetuneSteps)") }
        guard lr > 0 else { throw ValidationError("--lr must be positive, got \(lr)") }
    }

    func nonZero(_ m: Module) -> Int {
        m.parameters.reduce(0) { sum, p in sum + p.value.detached().withUnsafeBufferPointer { $0.reduce(0) { $1 != 0 ? $0 + 1 : $0 } } }
    }

    func line(_ label: String, _ m: Module, _ e: Evaluation, split: String) -> String {
        "\(label): \(m.parameterCount()) parameters, \(nonZero(m)) non-zero; \(split) " + (e.accuracy.map { String(format: "accuracy %.2f%%", 100 * $0) } ?? "")
            + String(format: "%@loss %.4f", e.accuracy == nil ? "" : ", ", e.loss)
    }

    func run() throws {
        try threadOptions.apply()
        var r = try Recipe.load(contentsOf: URL(fileURLWithPath: recipe), overrides: overrides)
        fineTuning(&r, steps: finetuneSteps, lr: lr)
        let trainer = try Trainer(recipe: r)
        try threadOptions.apply()  // --threads wins over the recipe's `threads`
        let net = trainer.model
        try net.loadStateDict(SafeTensors.read(contentsOf: URL(fileURLWithPath: model)).tensors)
        let before = trainer.evaluate(.test)
        let beforeLine = line("before", net, before, split: testSplitName(trainer))

        var masks: PruningMasks?
        var variant: String
        var structured: StructuredPruningResult?
        switch method {
        case "magnitude", "global":
            masks = pruneMagnitude(net, sparsity: sparsity, scope: method == "global" ? .global : .layerwise)
            variant = String(format: "%@ magnitude, sparsity %.2f", method == "global" ? "global" : "layer-wise", sparsity)
        case "2:4":
            let m = semiStructuredMasks(net)
            guard !m.names.isEmpty else { throw CLIError("\(r.model.name) has no weight whose inputs are a multiple of 4; 2:4 cannot apply") }
            m.apply(to: net)
            masks = m
            variant = "2:4 on \(m.names.joined(separator: ", "))"
        default:
            guard let plan = ChannelDependency.plan(for: net), !plan.isEmpty else {
                throw CLIError("structured pruning has no channel plan for \(r.model.name) (\(type(of: net))): it supports digits-cnn "
                                      + "and Sequential chains such as digits-mlp; use --method magnitude, global or 2:4")
            }
            structured = pruneChannels(net, dependencies: plan, ratio: ratio)
            variant = String(format: "structured (L1), ratio %.2f of the channels of ", ratio) + plan.map(\.producer).joined(separator: ", ")
        }
        let pruned = trainer.evaluate(.test)
        let prunedLine = line("after pruning", net, pruned, split: testSplitName(trainer))

        var tunedLine: String?
        if finetuneSteps > 0 {
            if let masks { trainer.onStep = { _, _, _ in masks.apply(to: net) } }
            let summary = try trainer.run()
            // The final weights (Trainer.run leaves the best-validation ones in the model).
            try net.loadStateDict(SafeTensors.read(contentsOf: URL(fileURLWithPath: summary.modelPath)).tensors)
            masks?.apply(to: net)
            tunedLine = line("after \(finetuneSteps) fine-tune steps", net, trainer.evaluate(.test), split: testSplitName(trainer))
        }

        try SafeTensors.write(net.stateDict(), metadata: ["lathe.recipe": recipe, "lathe.model": r.model.name, "lathe.pruning": variant],
                              to: URL(fileURLWithPath: output))

        print("lathe prune: \(r.model.name) on \(r.data.name), \(variant)")
        print(beforeLine)
        print(prunedLine)
        if let tunedLine { print(tunedLine) }
        if let structured {
            let shapes = structured.kept.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.count)" }.joined(separator: ", ")
            print("kept channels: \(shapes); parameters \(structured.parametersBefore) -> \(structured.parametersAfter)")
        }
        print(sparsityReport(net))
        print("saved \(output) (\(fileBytes(output)) bytes, \(fileBytes(model)) before)")
        if structured != nil {
            print("note: \(output) holds the pruned (smaller) shapes; lathe eval cannot load it, because a recipe cannot describe the "
                  + "pruned widths. In Swift, loadPrunedStateDict(_:into:) loads it into a freshly built \(r.model.name).")
        }
    }
}
