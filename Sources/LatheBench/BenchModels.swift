import LatheCompress
import LatheNN
import LatheTensor
import LatheTrain

/// A reference model of the benchmarks on synthetic data of the right shape, as
/// bench/reference/train_step.py and infer.py build them (same sizes, same optimiser).
public struct BenchModel {
    public let name: String
    public let model: Module
    public let input: Tensor
    public let targets: Tensor
    public let classes: Int

    public init(name: String, model: Module, input: Tensor, targets: Tensor, classes: Int) {
        (self.name, self.model, self.input, self.targets, self.classes) = (name, model, input, targets, classes)
    }

    /// How a benchmark model is made: from the batch size (nil: the model's default) and the
    /// char GPT configuration (used by `gpt` only).
    public typealias Maker = @Sendable (_ batch: Int?, _ gpt: CharGPT.Config) -> BenchModel

    /// The benchmark models by name: mlp, cnn (8x8 digits), cnn28 (the same CNN on 28x28
    /// images, the Fashion-MNIST one), resnet and gpt (char GPT: vocab 65, d_model 128, 4 heads,
    /// 4 layers, RoPE, on `context` tokens). Image models default to batch 64, gpt to 16.
    public static let registry: Registry<Maker> = {
        let r = Registry<Maker>(kind: "benchmark model")
        r.register("mlp") { batch, _ in
            var g = RandomGenerator(seed: 1)
            let b = batch ?? 64
            return BenchModel(name: "mlp", model: Models.digitsMLP(), input: Tensor.randint([b, 64], low: 0, high: 17, generator: &g).to(.float32) / 16,
                              targets: Tensor.randint([b], low: 0, high: 10, generator: &g), classes: 10)
        }
        for (name, side) in [("cnn", 8), ("cnn28", 28), ("resnet", 8)] {
            r.register(name) { batch, _ in
                var g = RandomGenerator(seed: 1)
                let b = batch ?? 64
                let model: Module = name == "resnet" ? SmallResNet() : DigitsCNN(image: side)
                return BenchModel(name: name, model: model,
                                  input: Tensor.randint([b, 1, side, side], low: 0, high: 17, generator: &g).to(.float32) / 16,
                                  targets: Tensor.randint([b], low: 0, high: 10, generator: &g), classes: 10)
            }
        }
        r.register("gpt") { batch, config in
            var g = RandomGenerator(seed: 1)
            let b = batch ?? 16
            let seq = Tensor.randint([b, config.context + 1], low: 0, high: config.vocab, generator: &g).intScalars
            var x: [Int] = [], y: [Int] = []
            for i in 0..<b {
                let row = seq[(i * (config.context + 1))..<((i + 1) * (config.context + 1))]
                x += row.dropLast()
                y += row.dropFirst()
            }
            return BenchModel(name: "gpt", model: CharGPT(config), input: Tensor(x, shape: [b, config.context]),
                              targets: Tensor(y, shape: [b, config.context]), classes: config.vocab)
        }
        return r
    }()

    /// The benchmark model `name` (an error lists the known names).
    public static func make(_ name: String, batch: Int? = nil, gpt config: CharGPT.Config = CharGPT.Config()) throws -> BenchModel {
        try registry.lookup(name)(batch, config)
    }

    public var batch: Int { input.shape[0] }

    /// A training step: zero the gradients, forward, mean cross-entropy, backward, AdamW step;
    /// returns the loss.
    public func trainer(learningRate: Float = 1e-3) -> () -> Float {
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

/// One way of running a model for inference: fp32, or quantized by LatheCompress (one line
/// per variant).
public struct InferVariant: Sendable {
    public let name: String
    /// Turns a fresh fp32 model (in eval mode) into the one to time; gets a sample input
    /// for calibration.
    public let prepare: @Sendable (Module, Tensor) throws -> Module

    public init(name: String, prepare: @escaping @Sendable (Module, Tensor) throws -> Module) { (self.name, self.prepare) = (name, prepare) }

    /// Folds batch norms and quantizes every layer in place, as `lathe quantize` does,
    /// and returns the model.
    public static func quantized(_ config: QuantizationConfig) -> @Sendable (Module, Tensor) throws -> Module {
        { model, x in
            try BatchNormFolding.fold(model)
            try quantize(model: model, config: config, calibrationBatches: [x])
            return model
        }
    }

    public static let all: [InferVariant] = [
        InferVariant(name: "fp32") { m, _ in m },
        // fp32 with the batch norms folded, as the quantized variants have them.
        InferVariant(name: "fp32-folded") { m, _ in try BatchNormFolding.fold(m); return m },
        InferVariant(name: "int8", prepare: quantized(QuantizationConfig(scheme: .staticInt8))),
        InferVariant(name: "int8-dynamic", prepare: quantized(QuantizationConfig(scheme: .dynamicInt8))),
        InferVariant(name: "int4-weight", prepare: quantized(QuantizationConfig(scheme: .weightOnly(GroupwiseScheme(bits: 4, groupSize: 32))))),
    ]

    /// The variant `name`, or an error listing the known ones.
    public static func named(_ name: String) throws -> InferVariant {
        guard let v = all.first(where: { $0.name == name }) else {
            throw RegistryError(kind: "inference variant", name: name, known: all.map(\.name))
        }
        return v
    }
}
