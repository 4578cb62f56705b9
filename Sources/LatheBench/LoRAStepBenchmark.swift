import Foundation
import LatheCompress
import LatheLM
import LatheNN
import LatheTensor

/// Memory and time of LoRA training steps on a pretrained decoder: on a float base (LoRA) or on
/// a base whose linear layers stay quantized (QLoRA). Each step is what fine-tuning runs: zero
/// the gradients, the training forward and next-token loss on a `[batch, sequence]` batch of
/// fixed pseudo-random ids, the backward pass, one AdamW step on the adapters.
///
/// The resident set is read after the model is loaded and its adapters added; the peak is
/// reset there (Linux `/proc/self/clear_refs`, where allowed), so the reported peak is that of
/// the steps (the model's resident pages included) and not of loading.
public enum LoRAStepBenchmark {
    public struct Result: Sendable {
        /// Resident set before the first step (model, adapters, optimiser), MB.
        public var baselineMB: Double
        /// Peak resident set over the steps, MB.
        public var peakMB: Double
        /// Whether the peak was reset after loading (else it covers loading too).
        public var peakIsStepsOnly: Bool
        /// Median milliseconds of the steps after the first.
        public var msPerStep: Double
        /// The losses of the steps, in order.
        public var losses: [Float]
        public var trainableParameters: Int
        /// Linear layers kept quantized under the adapters.
        public var quantizedLayers: Int
        public var adaptedLayers: Int
    }

    /// The adapters' config: `targets`, rank `rank`, alpha `2 rank`.
    public static func config(rank: Int, targets: LoRAConfig.Targets = .allLinear) -> LoRAConfig {
        LoRAConfig(targets: targets, rank: rank, alpha: Double(2 * rank))
    }

    /// Adds adapters (``config(rank:targets:)``) to `model` and runs `1 + repeats` steps, on
    /// windows of `tokens` (step `i`, row `r` starts at token `(i · batch + r) · sequence`, wrapping
    /// around) or, without tokens, on one batch of fixed pseudo-random ids. Throws for a model or
    /// batch the training forward refuses.
    public static func run(_ model: DecoderModel, batch: Int, sequence: Int, rank: Int = 8, targets: LoRAConfig.Targets = .allLinear,
                           repeats: Int = 2, learningRate: Float = 1e-4, tokens: [Int]? = nil) throws -> Result {
        precondition(batch >= 1 && sequence >= 2 && repeats >= 0, "LoRAStepBenchmark: batch >= 1, sequence >= 2, repeats >= 0")
        precondition(tokens.map { $0.count > sequence } ?? true, "LoRAStepBenchmark: fewer tokens than one row")
        let quantized = model.namedModules.filter { $0.1 is WeightOnlyLinear }.count
        try model.addLoRA(config(rank: rank, targets: targets), initialization: .kaimingUniform(seed: 0))
        let trainable = model.namedParameters.filter { $0.1.requiresGrad }
        let optimizer = AdamW(trainable, learningRate: learningRate, weightDecay: 0)
        var g = RandomGenerator(seed: 7)
        let random = Tensor.randint([batch, sequence], low: 0, high: model.config.vocabularySize, generator: &g)
        func batchIDs(_ i: Int) -> Tensor {
            guard let tokens else { return random }
            let starts = tokens.count - sequence
            return Tensor((0..<batch).flatMap { r in
                let s = ((i * batch + r) * sequence) % starts
                return Array(tokens[s..<(s + sequence)])
            }, shape: [batch, sequence])
        }
        model.train()
        let before = ResidentMemory.read()
        let reset = resetPeak()
        var losses: [Float] = []
        func step() throws {
            let ids = batchIDs(losses.count)
            optimizer.zeroGrad()
            let loss = try model.loss(ids, labels: ids)
            losses.append(loss.item)
            loss.backward()
            optimizer.step()
        }
        try step()
        var times: [Double] = []
        for _ in 0..<repeats {
            let t0 = Timing.now()
            try step()
            times.append(Timing.now() - t0)
        }
        times.sort()
        let after = ResidentMemory.read()
        return Result(baselineMB: before.current, peakMB: reset ? after.peak : max(after.peak, before.peak), peakIsStepsOnly: reset,
                      msPerStep: times.isEmpty ? .nan : times[times.count / 2] * 1e3, losses: losses,
                      trainableParameters: trainable.reduce(0) { $0 + $1.1.value.count }, quantizedLayers: quantized,
                      adaptedLayers: model.loraLayers.count)
    }

    /// Resets this process's peak resident set to the current one (writes 5 to
    /// `/proc/self/clear_refs`); false where that is not possible.
    static func resetPeak() -> Bool {
        guard let h = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? h.close() }
        do { try h.write(contentsOf: Data("5".utf8)) } catch { return false }
        return true
    }
}
