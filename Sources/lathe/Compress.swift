import ArgumentParser
import Foundation
import Lathe

extension QuantizeScheme: ExpressibleByArgument {}
extension ObserverName: ExpressibleByArgument {}
extension QATRanges: ExpressibleByArgument {}
extension PruneMethod: ExpressibleByArgument {}

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
    @Option(help: "int8, int8-dynamic, int4 or int8-weight.") var scheme: QuantizeScheme
    @Option(help: "Group size of int4 / int8-weight (a multiple of 16: 32, 64, 128).") var groupSize: Int = 64
    @Flag(help: "Asymmetric (min/scale) groups instead of symmetric ones (int4, int8-weight).") var asymmetric = false
    @Option(help: "Calibration observer of static int8: minmax, percentile (99.99) or mse.") var observer: ObserverName = .minmax
    @Option(help: "Training batches to calibrate static int8 on.") var calibrationBatches: Int = 8
    @Flag(help: "Keep the first and the last quantizable layer in fp32.") var keepFirstLast = false
    @Flag(help: "Keep batch norms as they are instead of folding them into the layer before them.") var noFoldBn = false
    @Option(help: "Quantization-aware training steps before converting (int8 only; 0: post-training quantization).") var qatSteps: Int = 0
    @Option(help: "QAT learning rate.") var qatLr: Float = 1e-4
    @Option(help: "QAT activation ranges: ema (moving average of batch min/max) or learned (trained bounds).") var qatRanges: QATRanges = .ema
    @Option(help: "Where to write the quantized model.") var output: String
    @Option(name: .customLong("set"), help: "Override a recipe key: --set key.path=value.") var overrides: [String] = []
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard groupSize > 0, groupSize % 16 == 0 else { throw ValidationError("--group-size must be a positive multiple of 16, got \(groupSize)") }
        if asymmetric, !scheme.isGroupwise {
            throw ValidationError("--asymmetric applies to the group-wise schemes (int4, int8-weight), not \(scheme.rawValue)")
        }
        guard calibrationBatches >= 1 else { throw ValidationError("--calibration-batches must be at least 1, got \(calibrationBatches)") }
        guard qatSteps >= 0 else { throw ValidationError("--qat-steps must be at least 0, got \(qatSteps)") }
        if qatSteps > 0, scheme != .int8 { throw ValidationError("--qat-steps applies to --scheme int8, not \(scheme.rawValue)") }
        if qatSteps > 0, noFoldBn { throw ValidationError("QAT needs the batch norms folded; drop --no-fold-bn") }
        guard qatLr > 0 else { throw ValidationError("--qat-lr must be positive, got \(qatLr)") }
    }

    func run() throws {
        let source = try RecipeSource.file(URL(fileURLWithPath: recipe), overrides: overrides)
        var r = try source.recipe()
        try threadOptions.apply(to: &r)  // --threads wins over the recipe's `threads`
        let task = try Trainer(recipe: r).task
        var stage = CompressSpec.Stage(name: "quantized", method: qatSteps > 0 ? .qat : .quantize)
        (stage.scheme, stage.groupSize, stage.symmetric, stage.observer, stage.keepFirstLast) = (scheme, groupSize, !asymmetric, observer, keepFirstLast)
        (stage.steps, stage.lr, stage.ranges) = (qatSteps, qatLr, qatRanges)
        let run = CompressionRun(source: source, recipe: r, task: task,
                                 baseline: try SafeTensors.read(contentsOf: URL(fileURLWithPath: model)).tensors,
                                 directory: FileManager.default.temporaryDirectory, calibrationBatches: calibrationBatches)
        let o = try run.quantizeModel(stage, foldBatchNorms: !noFoldBn)
        let trainer = o.trainer, net = trainer.model
        let url = URL(fileURLWithPath: output)
        try QuantizedModelFile.save(net, to: url, metadata: run.metadata(o.description))

        // Reload into a fresh model, so that the file is known to hold what was evaluated.
        let fresh = try Trainer(recipe: r, task: task)
        try QuantizedModelFile.load(into: fresh.model, from: url)
        let reloaded = fresh.evaluate(.test)

        let split = trainer.testSplitName
        let fp32Bytes = fileBytes(model), qBytes = fileBytes(output)
        let fp32Layers = Quantizer.quantizableLayers(in: net).map(\.0).filter { !o.layers.contains($0) }
        print("lathe quantize: \(r.model.name) on \(r.data.name), \(o.description)")
        if let q = o.qat {
            print("QAT: \(q.summary.steps) steps in " + String(format: "%.1f s", q.summary.seconds) + "; fake-quantized \(split) "
                  + scoreText(q.before) + " before, " + scoreText(q.after) + " after (best validation step \(q.summary.bestStep ?? q.summary.steps))")
        }
        print("quantized layers: \(o.layers.joined(separator: ", "))" + (fp32Layers.isEmpty ? "" : "; fp32: \(fp32Layers.joined(separator: ", "))")
              + (o.folded.isEmpty ? "" : "; batch norms folded: " + o.folded.map { "\($0.norm) into \($0.layer)" }.joined(separator: ", ")))
        print(String(format: "file: fp32 %d bytes (%@), quantized %d bytes (%@), %.2fx smaller",
                     fp32Bytes, model, qBytes, output, Double(fp32Bytes) / Double(max(qBytes, 1))))
        let count = "\(o.fp32.count) \(task is LanguageModelTask ? "tokens" : "samples")"
        if let a = o.fp32.accuracy, let b = o.quantized.accuracy {
            print(String(format: "accuracy (%@, %@): fp32 %.2f%%, quantized %.2f%%, drop %.2f points", split, count, 100 * a, 100 * b, 100 * (a - b)))
        }
        print(String(format: "loss (%@): fp32 %.4f, quantized %.4f", split, o.fp32.loss, o.quantized.loss))
        print("reloaded \(output): \(split) \(scoreText(reloaded))" + (reloaded.loss == o.quantized.loss ? " (same as before saving)" : String(format: " (loss %.6f before saving, %.6f reloaded)", o.quantized.loss, reloaded.loss)))
    }
}

struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prune trained weights, fine-tune with the pruning kept, and save the pruned state dict.",
        discussion: """
        Methods: magnitude (each weight loses --sparsity of its entries), global (one magnitude threshold across all \
        weights), 2:4 (two of every four consecutive inputs), structured (removes --ratio of the channels of every \
        layer that feeds another, for digits-cnn and Sequential chains such as digits-mlp). --gradual reaches the \
        sparsity on a cubic schedule over the first two thirds of the fine-tuning. Fine-tuning runs the recipe's \
        optimiser at --lr on a cosine schedule without warm-up, in a temporary directory, and uses the final weights.
        The unstructured methods save a state dict of the recipe's shapes (lathe eval loads it). Structured pruning saves \
        the smaller shapes: lathe eval cannot load it, because a recipe cannot describe the pruned widths; lathe report \
        can, and in Swift loadPrunedStateDict(_:into:) loads it into a freshly built model of the recipe.
        Example: lathe prune Recipes/digits-cnn.yaml --model runs/digits-cnn/best.safetensors --method global --sparsity 0.9 --output p.safetensors
        """
    )

    @Argument(help: "The recipe that describes the model and data.") var recipe: String
    @Option(help: "Trained weights (safetensors state dict).") var model: String
    @Option(help: "magnitude, global, structured or 2:4.") var method: PruneMethod
    @Option(help: "Fraction of the weights to remove (magnitude, global).") var sparsity: Double = 0.9
    @Flag(help: "Reach the sparsity gradually during fine-tuning (magnitude, global).") var gradual = false
    @Option(help: "Fraction of the channels to remove from each layer (structured).") var ratio: Double = 0.5
    @Option(help: "Fine-tune steps after pruning (0: none).") var finetuneSteps: Int = 200
    @Option(help: "Fine-tune learning rate.") var lr: Float = 1e-3
    @Option(help: "Where to write the pruned state dict.") var output: String
    @Option(name: .customLong("set"), help: "Override a recipe key: --set key.path=value.") var overrides: [String] = []
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard (0...1).contains(sparsity) else { throw ValidationError("--sparsity must be in [0, 1], got \(sparsity)") }
        guard ratio >= 0, ratio < 1 else { throw ValidationError("--ratio must be in [0, 1), got \(ratio)") }
        guard finetuneSteps >= 0 else { throw ValidationError("--finetune-steps must be at least 0, got \(finetuneSteps)") }
        guard lr > 0 else { throw ValidationError("--lr must be positive, got \(lr)") }
        if gradual, !(method == .magnitude || method == .global) || finetuneSteps < 3 {
            throw ValidationError("--gradual applies to --method magnitude or global with --finetune-steps of at least 3")
        }
    }

    func line(_ label: String, _ m: Module, _ e: Evaluation, split: String) -> String {
        let counts = weightCounts(m)
        return "\(label): \(counts.total) parameters, \(counts.nonZero) non-zero; \(split) " + (e.accuracy.map { String(format: "accuracy %.2f%%", 100 * $0) } ?? "")
            + String(format: "%@loss %.4f", e.accuracy == nil ? "" : ", ", e.loss)
    }

    func run() throws {
        let source = try RecipeSource.file(URL(fileURLWithPath: recipe), overrides: overrides)
        var r = try source.recipe()
        try threadOptions.apply(to: &r)  // --threads wins over the recipe's `threads`
        let task = try Trainer(recipe: r).task
        let baseline = try SafeTensors.read(contentsOf: URL(fileURLWithPath: model)).tensors
        let original = try Trainer(recipe: r, task: task).model
        try original.loadStateDict(baseline)
        var stage = CompressSpec.Stage(name: "pruned", method: .prune)
        (stage.prune, stage.sparsity, stage.ratio, stage.gradual, stage.steps, stage.lr) = (method, sparsity, ratio, gradual, finetuneSteps, lr)
        let run = CompressionRun(source: source, recipe: r, task: task, baseline: baseline,
                                 directory: FileManager.default.temporaryDirectory, calibrationBatches: 1)
        let o = try run.pruneModel(stage)
        let net = o.trainer.model
        try SafeTensors.write(net.stateDict(), metadata: o.metadata, to: URL(fileURLWithPath: output))

        let split = o.trainer.testSplitName
        print("lathe prune: \(r.model.name) on \(r.data.name), \(o.description)")
        print(line("before", original, o.before, split: split))
        if !gradual { print(line("after pruning", net, o.pruned, split: split)) }
        if let tuned = o.tuned { print(line("after \(finetuneSteps) fine-tune steps", net, tuned, split: split)) }
        if let s = o.structured {
            let shapes = s.kept.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.count)" }.joined(separator: ", ")
            print("kept channels: \(shapes); parameters \(s.parametersBefore) -> \(s.parametersAfter)")
        }
        print(sparsityReport(net))
        print("saved \(output) (\(fileBytes(output)) bytes, \(fileBytes(model)) before)")
        if o.structured != nil {
            print("note: \(output) holds the pruned (smaller) shapes; lathe eval cannot load it, because a recipe cannot describe the "
                  + "pruned widths. lathe report loads it, and in Swift loadPrunedStateDict(_:into:) loads it into a freshly built \(r.model.name).")
        }
    }
}
