import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// Tags each token of a sequence with its parity; token 0 is padding (label -100, not scored).
/// Batches are named tensors: `input_ids`, `attention_mask`, `labels`.
struct ParityTagging: TrainingTask {
    var microBatchesPerEpoch: Int { 4 }

    static func batch(seed: UInt64) -> Batch {
        var g = RandomGenerator(seed: seed)
        let ids = Tensor.randint([4, 6], low: 0, high: 8, generator: &g).to(.int64)
        let scalars = ids.intScalars
        let labels = Tensor(scalars.map { $0 == 0 ? Batch.ignoreIndex : $0 % 2 }, shape: [4, 6], dtype: .int64)
        let mask = Tensor(scalars.map { $0 == 0 ? 0 : 1 }, shape: [4, 6], dtype: .int64)
        return Batch([Batch.Key.inputIDs: ids, Batch.Key.attentionMask: mask, Batch.Key.labels: labels],
                     counts: ["tokens": scalars.filter { $0 != 0 }.count])
    }

    func batch(_ index: Int) -> Batch { Self.batch(seed: UInt64(index)) }

    func logits(_ model: Module, _ batch: Batch) -> Tensor { model(batch.inputIDs).reshaped([-1, 2]) }

    func loss(_ model: Module, on batch: Batch) throws -> TaskLoss {
        XCTAssertNotNil(batch.attentionMask)
        return TaskLoss(Loss.crossEntropy(logits(model, batch), batch.labels.reshaped([-1])), metrics: ["rows": 4])
    }

    func evaluate(_ model: Module, split: DataSplit) -> Evaluation {
        let b = Self.batch(seed: 1000)
        let l = logits(model, b)
        let labels = b.labels.intScalars
        let scored = labels.indices.filter { labels[$0] != Batch.ignoreIndex }
        let predicted = l.argmax(dim: 1).intScalars
        let correct = scored.filter { predicted[$0] == labels[$0] }.count
        return Evaluation(loss: Double(Loss.crossEntropy(l, b.labels.reshaped([-1])).item), accuracy: Double(correct) / Double(scored.count),
                          count: scored.count)
    }
}

/// The general ``Trainer``: a model built in code, a task with named-tensor batches, hooks, best metrics.
final class GeneralTrainerTests: XCTestCase {
    func tagger(seed: UInt64 = 1) -> Sequential {
        var g = RandomGenerator(seed: seed)
        return Sequential(Embedding(8, 4, generator: &g), Linear(4, 2, generator: &g))
    }

    func testACustomTaskTrainsAModelBuiltInCode() throws {
        let model = tagger()
        let threads = ThreadPool.threadCount
        let trainer = Trainer(model: model, task: ParityTagging(), options: TrainerOptions(steps: 80, evalEvery: 40) { AdamW($0, learningRate: 0.05) })
        XCTAssertNil(trainer.optimizer, "constructing builds nothing but the trainer")
        let before = trainer.evaluate(.validation)
        var reports: [StepReport] = []
        trainer.onStep = { reports.append($0) }
        let summary = try trainer.run()
        XCTAssertEqual(ThreadPool.threadCount, threads)
        XCTAssertEqual(summary.steps, 80)
        XCTAssertEqual(summary.modelPath, "", "no output directory: no files")
        XCTAssertEqual(reports.map(\.step), Array(1...80))
        XCTAssertEqual(reports[0].counts["tokens"], ParityTagging.batch(seed: 0).counts["tokens"])
        XCTAssertEqual(reports[0].metrics["rows"], 4)
        XCTAssertLessThan(reports.last!.loss, reports.first!.loss)
        let after = try XCTUnwrap(summary.validation)
        XCTAssertLessThan(after.loss, before.loss)
        XCTAssertEqual(after.accuracy ?? 0, 1, accuracy: 1e-9, "parity of 8 token ids is learnable exactly")
        XCTAssertTrue(model.isTraining)
    }

    /// After-backward hooks see the step's gradients before the optimiser step; after-step hooks
    /// see its result. Zeroing a gradient after backward keeps that weight fixed.
    func testHooksRunInOrderAndAZeroedGradientKeepsItsWeight() throws {
        let model = tagger()
        let linear = model.layers[1] as! Linear
        let biasBefore = try XCTUnwrap(linear.bias).value.scalars
        let weightBefore = linear.weight.value.scalars
        let trainer = Trainer(model: model, task: ParityTagging(), options: TrainerOptions(steps: 5) { SGD($0, learningRate: 0.5) })
        var events: [String] = []
        trainer.add(.afterBackward) { t in
            XCTAssertNotNil(linear.bias!.grad, "gradients are complete after backward")
            XCTAssertEqual(t.optimizer?.stepCount, t.step, "before the optimiser step")
            events.append("backward \(t.step)")
            linear.bias!.grad = Tensor.zeros(linear.bias!.value.shape)
        }
        trainer.add(.afterBackward) { t in events.append("backward-2 \(t.step)") }
        trainer.add(.afterStep) { t in
            XCTAssertEqual(t.optimizer?.stepCount, t.step, "after the optimiser step")
            events.append("step \(t.step)")
        }
        trainer.onStep = { events.append("report \($0.step)") }
        try trainer.run()
        XCTAssertEqual(events.prefix(8), ["backward 0", "backward-2 0", "step 1", "report 1", "backward 1", "backward-2 1", "step 2", "report 2"])
        XCTAssertEqual(events.count, 20)
        XCTAssertEqual(linear.bias!.value.scalars, biasBefore, "a zeroed gradient leaves its weight where it was")
        XCTAssertNotEqual(linear.weight.value.scalars, weightBefore)
    }

    /// A custom best metric picks the checkpoint written to `best.safetensors`; the run leaves the
    /// final weights in the model (nothing is reloaded unless `restoreBest` asks).
    func testACustomBestMetricChoosesTheBestWeights() throws {
        let directory = try temporaryDirectory()
        let model = tagger()
        var options = TrainerOptions(steps: 30, evalEvery: 10, output: directory) { AdamW($0, learningRate: 0.05) }
        // The highest loss: the first evaluation (step 10) wins, as training lowers the loss.
        options.bestMetric = BestMetric(name: "highest loss") { $0.loss }
        let trainer = Trainer(model: model, task: ParityTagging(), options: options)
        var atStep10: [String: Tensor] = [:]
        trainer.add(.afterStep) { t in if t.step == 10 { atStep10 = t.model.stateDict() } }
        let summary = try trainer.run()
        XCTAssertEqual(summary.bestStep, 10)
        let best = try SafeTensors.read(contentsOf: directory.appendingPathComponent("best.safetensors")).tensors
        assertIdentical(best, atStep10)
        let final = try SafeTensors.read(contentsOf: directory.appendingPathComponent("model.safetensors")).tensors
        assertIdentical(final, model.stateDict())
        XCTAssertNotEqual(final["1.weight"]!.scalars, best["1.weight"]!.scalars)

        // The default (lowest loss) keeps the last evaluation here.
        let other = try temporaryDirectory()
        let lowest = Trainer(model: tagger(), task: ParityTagging(),
                             options: TrainerOptions(steps: 30, evalEvery: 10, output: other) { AdamW($0, learningRate: 0.05) })
        XCTAssertEqual(try lowest.run().bestStep, 30)
    }

    /// Checkpoints of trainable tensors only (a frozen layer is not written) resume bit-exactly.
    func testTrainableOnlyCheckpointsResumeBitExactly() throws {
        func run(_ directory: URL, stopAfter: Int?, resume: Bool) throws -> Sequential {
            let model = tagger()
            model.layers[0].freeze()
            var options = TrainerOptions(steps: 8, accumulation: 2, evalEvery: 4, output: directory, checkpointEvery: 2,
                                         checkpointContents: .trainableParameters) { AdamW($0, learningRate: 0.05) }
            options.identity = [("lathe.task", "parity")]
            try Trainer(model: model, task: ParityTagging(), options: options).run(resume: resume, stopAfter: stopAfter)
            return model
        }
        let straight = try run(try temporaryDirectory("straight"), stopAfter: nil, resume: false)
        let directory = try temporaryDirectory("resumed")
        _ = try run(directory, stopAfter: 3, resume: false)
        let checkpoint = try SafeTensors.read(contentsOf: directory.appendingPathComponent("checkpoint.safetensors"))
        XCTAssertEqual(checkpoint.metadata["lathe.step"], "2")
        XCTAssertEqual(Set(checkpoint.tensors.keys.filter { !$0.hasPrefix("optimizer.") }), ["param.1.weight", "param.1.bias"])
        let resumed = try run(directory, stopAfter: nil, resume: true)
        assertIdentical(straight.stateDict(), resumed.stateDict())
    }
}
