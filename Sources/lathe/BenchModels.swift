import ArgumentParser
import Foundation
import Lathe

/// The reference models of the benchmarks on synthetic data of the right shape, as
/// bench/reference/train_step.py and infer.py build them (same sizes, same optimiser).
struct BenchModel {
    let name: String
    let model: Module
    let input: Tensor
    let targets: Tensor
    let classes: Int

    static let known = ["mlp", "cnn", "cnn28", "resnet", "gpt"]

    /// `name`: mlp, cnn (8x8 digits), cnn28 (the same CNN on 28x28 images, the Fashion-MNIST
    /// one), resnet or gpt. `batch` nil: 64 for the image models, 16 for gpt.
    /// `gpt` is the char GPT (vocab 65, d_model 128, 4 heads, 4 layers, RoPE) on `context` tokens.
    static func make(_ name: String, batch: Int? = nil, gpt config: CharGPT.Config = CharGPT.Config()) throws -> BenchModel {
        var g = RandomGenerator(seed: 1)
        switch name {
        case "mlp":
            let b = batch ?? 64
            return BenchModel(name: name, model: Models.digitsMLP(), input: Tensor.randint([b, 64], low: 0, high: 17, generator: &g).to(.float32) / 16,
                              targets: Tensor.randint([b], low: 0, high: 10, generator: &g), classes: 10)
        case "cnn", "cnn28", "resnet":
            let b = batch ?? 64, side = name == "cnn28" ? 28 : 8
            let model: Module = name == "resnet" ? SmallResNet() : DigitsCNN(image: side)
            return BenchModel(name: name, model: model,
                              input: Tensor.randint([b, 1, side, side], low: 0, high: 17, generator: &g).to(.float32) / 16,
                              targets: Tensor.randint([b], low: 0, high: 10, generator: &g), classes: 10)
        case "gpt":
            let b = batch ?? 16
            let seq = Tensor.randint([b, config.context + 1], low: 0, high: config.vocab, generator: &g).intScalars
            var x: [Int] = [], y: [Int] = []
            for i in 0..<b {
                let row = seq[(i * (config.context + 1))..<((i + 1) * (config.context + 1))]
                x += row.dropLast()
                y += row.dropFirst()
            }
            return BenchModel(name: name, model: CharGPT(config), input: Tensor(x, shape: [b, config.context]),
                              targets: Tensor(y, shape: [b, config.context]), classes: config.vocab)
        default:
            throw ValidationError("unknown model '\(name)' (known: \(known.joined(separator: ", ")))")
        }
    }

    var batch: Int { input.shape[0] }

    /// A training step: zero the gradients, forward, mean cross-entropy, backward, AdamW step.
    func trainer(learningRate: Float = 1e-3) -> () -> Float {
        model.train()
        let optimizer = AdamW(model.namedParameters, learningRate: learningRate, weightDecay: 0.01)
        let (model, x, y, c) = (self.model, input, targets, classes)
        return {
            optimizer.zeroGrad()
            let logits = model(x)
            let loss = Loss.crossEntropy(logits.reshaped([-1, c]), y.reshaped([-1]))
            loss.backward()
            optimizer.step()
            return loss.item
        }
    }
}

/// Splits a comma-separated list, dropping empty items.
func commaList(_ s: String) -> [String] { s.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }

extension Bench {
    struct TrainSpeed: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "train",
            abstract: "Training steps per second (forward, cross-entropy, backward, AdamW) of the reference models on synthetic data.",
            discussion: """
            mlp: digits MLP, x [64, 64]. cnn: digits CNN, x [64, 1, 8, 8]. resnet: small ResNet, x [64, 1, 8, 8] \
            (not in the default list). gpt: char GPT, d_model 128, 4 layers, 4 heads, context 64, vocab 65, batch 16. \
            After --warmup steps, --repeat runs of --steps steps are timed; median and best steps/s are reported.
            """
        )

        @OptionGroup var options: BenchOptions
        @Option(help: "Models, comma-separated (mlp, cnn, cnn28, resnet, gpt).") var models: String = "mlp,cnn,cnn28,gpt"
        @Option(help: "Timed steps per repetition.") var steps: Int = 20
        @Option(help: "Untimed steps first.") var warmup: Int = 5
        @Option(help: "Batch size (default: 64 for the digits models, 16 for gpt).") var batch: Int?

        func run() throws {
            let repeats = try options.apply(defaultRepeats: 5)
            guard steps >= 1, warmup >= 0 else { throw ValidationError("--steps must be at least 1 and --warmup at least 0") }
            let names = commaList(models)
            let cases = try names.map { try BenchModel.make($0, batch: batch) }
            if !options.json { print("kernels \(KernelInfo.isaName), threads \(ThreadPool.threadCount)") }
            var out = RowPrinter(json: options.json, columns: [("model", "model"), ("batch", "batch"),
                                                               ("steps_per_second", "median steps/s"),
                                                               ("best_steps_per_second", "best steps/s"), ("ms_per_step", "median ms")])
            for c in cases {
                let step = c.trainer()
                var loss: Float = 0
                for _ in 0..<warmup { loss = step() }
                var rates: [Double] = []
                for _ in 0..<repeats {
                    let t0 = now()
                    for _ in 0..<steps { loss = step() }
                    rates.append(Double(steps) / (now() - t0))
                }
                let med = median(rates)
                out.print([("bench", .string("train")), ("model", .string(c.name)), ("batch", .int(c.batch)),
                           ("threads", .int(ThreadPool.threadCount)), ("steps", .int(steps)), ("repeat", .int(repeats)),
                           ("steps_per_second", .double(med, digits: 3)), ("best_steps_per_second", .double(rates.max()!, digits: 3)),
                           ("ms_per_step", .double(1e3 / med, digits: 3)), ("loss", .double(Double(loss), digits: 4))])
            }
        }
    }

    /// One way of running a model for inference: fp32, or quantized by LatheCompress (one line
    /// per variant).
    struct InferVariant: Sendable {
        let name: String
        /// Turns a fresh fp32 model (in eval mode) into the one to time; gets a sample input
        /// for calibration.
        let prepare: @Sendable (Module, Tensor) -> Module

        /// Folds batch norms and quantizes every layer in place, as `lathe quantize` does,
        /// and returns the model.
        static func quantized(_ config: QuantizationConfig) -> @Sendable (Module, Tensor) -> Module {
            { model, x in
                BatchNormFolding.fold(model)
                quantize(model: model, config: config, calibrationBatches: [x])
                return model
            }
        }

        static let all: [InferVariant] = [
            InferVariant(name: "fp32") { m, _ in m },
            // fp32 with the batch norms folded, as the quantized variants have them.
            InferVariant(name: "fp32-folded") { m, _ in BatchNormFolding.fold(m); return m },
            InferVariant(name: "int8", prepare: quantized(QuantizationConfig(scheme: .staticInt8))),
            InferVariant(name: "int8-dynamic", prepare: quantized(QuantizationConfig(scheme: .dynamicInt8))),
            InferVariant(name: "int4-weight", prepare: quantized(QuantizationConfig(scheme: .weightOnly(GroupwiseScheme(bits: 4, groupSize: 32))))),
        ]
    }

    struct InferSpeed: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "infer",
            abstract: "Inference latency (eval mode, no autodiff) of the reference models at batch 1 and 64.",
            discussion: """
            mlp and cnn at each --batches size; gpt (char GPT, context 64) at batch 1 only. Each repetition times \
            enough calls to last --min-time; median and best latency per call are reported.
            """
        )

        @OptionGroup var options: BenchOptions
        @Option(help: "Models, comma-separated (mlp, cnn, cnn28, resnet, gpt).") var models: String = "mlp,cnn,cnn28,gpt"
        @Option(help: "Batch sizes for the digits models, comma-separated (gpt always uses batch 1).") var batches: String = "1,64"
        @Option(help: "Variants, comma-separated (default: all; known: \(InferVariant.all.map(\.name).joined(separator: ", "))).")
        var variants: String?
        @Option(help: "Seconds per timed repetition.") var minTime: Double = 0.05

        func run() throws {
            let repeats = try options.apply(defaultRepeats: 7)
            let wanted = variants.map(commaList) ?? InferVariant.all.map(\.name)
            let chosen = try wanted.map { w in
                guard let v = InferVariant.all.first(where: { $0.name == w }) else {
                    throw ValidationError("unknown variant '\(w)' (known: \(InferVariant.all.map(\.name).joined(separator: ", ")))")
                }
                return v
            }
            let sizes = commaList(batches).compactMap { Int($0) }
            guard !sizes.isEmpty, sizes.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--batches: expected positive sizes, e.g. 1,64") }
            if !options.json { print("kernels \(KernelInfo.isaName), threads \(ThreadPool.threadCount)") }
            var out = RowPrinter(json: options.json, columns: [("model", "model"), ("variant", "variant"), ("batch", "batch"),
                                                               ("ms", "median ms"), ("best_ms", "best ms"),
                                                               ("samples_per_second", "samples/s")])
            for name in commaList(models) {
                for b in name == "gpt" ? [1] : sizes {
                    for v in chosen {
                        // A fresh (identically seeded) model per variant: quantization works in place.
                        let base = try BenchModel.make(name, batch: b)
                        base.model.eval()
                        let model = v.prepare(base.model, base.input)
                        let x = base.input
                        let call = { _ = noGrad { model(x) } }
                        call()
                        let t0 = now(); call(); let once = now() - t0
                        let inner = Swift.max(1, Int(minTime / Swift.max(once, 1e-9)))
                        var samples: [Double] = []
                        for _ in 0..<repeats {
                            let s = now()
                            for _ in 0..<inner { call() }
                            samples.append((now() - s) / Double(inner))
                        }
                        let med = median(samples)
                        out.print([("bench", .string("infer")), ("model", .string(name)), ("variant", .string(v.name)),
                                   ("batch", .int(b)), ("threads", .int(ThreadPool.threadCount)),
                                   ("ms", .double(med * 1e3, digits: 4)), ("best_ms", .double(samples.min()! * 1e3, digits: 4)),
                                   ("samples_per_second", .double(Double(b) / med, digits: 1))])
                    }
                }
            }
        }
    }
}
