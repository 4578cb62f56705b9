import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// `FineTuneRecipe` and `FineTuner` on llama-tiny (the CLI's side: LatheCLITests/FineTuneCommandTests).
final class FineTuneTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws { directory = try temporaryDirectory(name) }

    func recipe(_ output: String, steps: Int = 12, extra: String = "", lora: String? = nil, training: String = "") throws -> FineTuneRecipe {
        let text = try lora.map { try FineTuneFixtures.recipe(in: directory, output: output, steps: steps, extra: extra, lora: $0, training: training) }
            ?? FineTuneFixtures.recipe(in: directory, output: output, steps: steps, extra: extra, training: training)
        return try FineTuneRecipe.parse(text, file: "tiny.yaml")
    }

    func testRecipeReadsTheKeysUsersKnow() throws {
        let r = try FineTuneRecipe.parse("""
        model: m.gguf
        adapter: dora
        lora: {r: 8, alpha: 16, dropout: 0, targets: [q_proj, v_proj], layers: 2, rslora: true}
        data: {train: t.jsonl, valid_fraction: 0.2, format: messages, mask_prompt: false, packing: false, max_length: 128}
        optimizer: {lr: 1.0e-3}
        training: {epochs: 2, batch_size: 8, accumulation: 2, clip_grad_norm: null}
        eval: {max_tokens: 200, match: final-number}
        """, file: "r.yaml")
        XCTAssertEqual(r.adapter, .dora)
        XCTAssertEqual(r.evaluation.match, .finalNumber)
        XCTAssertEqual(r.evaluation.maxTokens, 200)
        XCTAssertEqual(r.lora.targets, .names(["q_proj", "v_proj"]))
        XCTAssertEqual(r.lora.layers, .last(2))
        XCTAssertEqual(r.data.format, .chat)
        XCTAssertEqual(r.data.maskPrompt, false)
        XCTAssertEqual(r.data.validFraction, 0.2)
        XCTAssertNil(r.training.clipGradNorm)
        XCTAssertEqual(r.optimizer.lr, 1e-3)
        XCTAssertEqual(r.optimizer.weightDecay, 0, "fine-tuning defaults to no weight decay on adapters")
        XCTAssertEqual(r.schedule.name, "cosine")
        let c = try XCTUnwrap(r.loraConfig(layerCount: 30))
        XCTAssertEqual(c.layers, [28, 29])
        XCTAssertTrue(c.useDoRA && c.useRSLoRA)
        XCTAssertEqual(c.scaling(for: "q_proj"), Float(16 / 8.0.squareRoot()))
    }

    func testRecipeKeyErrorsNameTheKeyAndFile() {
        let base = "model: m.gguf\ndata: {train: t.jsonl}\ntraining: {steps: 3}\n"
        let cases: [(String, String)] = [
            (base + "lora: {rank: 8}", "r.yaml: lora.rank: unknown key (known: alpha, dropout, layers, r, rslora, targets)"),
            (base + "learning_rate: 0.1", "r.yaml: learning_rate: unknown key"),
            (base + "adapter: prefix", "r.yaml: adapter: 'prefix' is not one of lora, dora, qlora, full"),
            (base.replacingOccurrences(of: "{train: t.jsonl}", with: "{train: t.jsonl, packing: yes-please}"),
             "r.yaml: data.packing: expected true or false"),
            ("model: m.gguf\ntraining: {steps: 3}\n", "r.yaml: data.train: missing"),
            (base.replacingOccurrences(of: "{train: t.jsonl}", with: "{train: t.jsonl, valid: v.jsonl, valid_fraction: 0.1}"),
             "r.yaml: data.valid_fraction: give either data.valid"),
            (base + "lora: {layers: [1, x]}", "r.yaml: lora.layers: expected a number (the last N layers) or a list"),
            (base + "lora: {targets: q_proj.*, layers: 2}", "r.yaml: lora: layers_to_transform cannot be used when target_modules is a regex"),
            (base + "adapter: full\nlora: {r: 4}", "r.yaml: lora: applies to adapter lora, dora or qlora, not full"),
            ("data: {train: t.jsonl}\ntraining: {steps: 3}\n", "r.yaml: model: missing"),
            (base + "eval: {match: regex}", "r.yaml: eval.match: must be auto, first-line or final-number, not 'regex'"),
            (base + "optimizer: {name: lion}", "r.yaml: optimizer.name: 'lion' is not one of sgd, adam, adamw"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try FineTuneRecipe.parse(text, file: "r.yaml"), expected) { error in
                XCTAssertTrue("\(error)".hasPrefix(expected), "\(error)\n  expected: \(expected)")
            }
        }
    }

    func testQLoRAOnAFloatModelIsAClearError() throws {
        var r = try recipe("q")
        r.adapter = .qlora
        XCTAssertThrowsError(try FineTuner(recipe: r)) { error in
            XCTAssertTrue("\(error)".contains("qlora trains adapters on a quantized base"), "\(error)")
            XCTAssertTrue("\(error)".contains("has no quantized layers"), "\(error)")
        }
    }

    func testAFewLoRAStepsLowerTheValidationLoss() throws {
        let tuner = try FineTuner(recipe: recipe("lora", steps: 24))
        XCTAssertEqual(tuner.format, .completion)
        XCTAssertEqual(tuner.adaptedPaths.count, 2 * 7, "all-linear: q, k, v, o, gate, up, down in each of 2 layers")
        XCTAssertEqual(tuner.trainExamples, 48)
        let before = tuner.evaluate()
        let summary = try tuner.run()
        let after = try XCTUnwrap(summary.validation)
        XCTAssertEqual(after.tokens, before.tokens)
        XCTAssertLessThan(after.loss, 0.6 * before.loss, "validation loss \(before.loss) -> \(after.loss)")
        // The PEFT folder loads back onto a fresh model and gives the trained model's loss.
        let fresh = try PretrainedModel.loadForTraining(tuner.recipe.model).decoder()
        try PEFTAdapter.load(folder: URL(fileURLWithPath: summary.outputPath), into: fresh)
        let reloaded = FineTuner.evaluate(fresh, rows: tuner.validRows, batchSize: 2, pad: 2, segments: true)
        XCTAssertEqual(reloaded.loss, after.loss, accuracy: 1e-4)
        XCTAssertLessThanOrEqual(try XCTUnwrap(summary.bestLoss), after.loss)
        XCTAssertTrue(FileManager.default.fileExists(atPath: tuner.bestPath.appendingPathComponent("adapter_config.json").path))
        // Only the adapters trained: the base weights are those of the file.
        let base = try SafeTensors.read(contentsOf: URL(fileURLWithPath: tuner.recipe.model).appendingPathComponent("model.safetensors")).tensors
        let w = try XCTUnwrap(tuner.model.stateDict()["model.layers.0.self_attn.q_proj.base_layer.weight"])
        XCTAssertEqual(w.scalars, base["model.layers.0.self_attn.q_proj.weight"]?.scalars)
    }

    func testDoRAAndFullFineTuningTrainToo() throws {
        var dora = try recipe("dora", steps: 12)
        dora.adapter = .dora
        let d = try FineTuner(recipe: dora)
        let doraBefore = d.evaluate().loss
        let doraAfter = try XCTUnwrap(try d.run().validation).loss
        XCTAssertLessThan(doraAfter, 0.8 * doraBefore)
        let config = try PEFTAdapter.readConfig(folder: d.finalPath)
        XCTAssertTrue(config.useDoRA)
        var full = try recipe("full", steps: 12)
        full.adapter = .full
        full.optimizer.lr = 3e-3
        let f = try FineTuner(recipe: full)
        XCTAssertEqual(f.trainableParameters.count, f.model.parameters.count)
        let fullBefore = f.evaluate().loss
        let summary = try f.run()
        XCTAssertLessThan(try XCTUnwrap(summary.validation).loss, 0.8 * fullBefore)
        // Full fine-tuning writes the whole state dict, under Hugging Face's names.
        let weights = try SafeTensors.read(contentsOf: f.finalPath).tensors
        XCTAssertEqual(Set(weights.keys), Set(f.model.stateDict().keys))
        XCTAssertNotNil(weights["model.layers.1.mlp.down_proj.weight"])
    }

    func testResumeIsBitIdentical() throws {
        // Dropout on, so that the generators' offsets matter too; accumulation 2.
        let straight = try FineTuner(recipe: recipe("straight", steps: 8, training: ", accumulation: 2"))
        try straight.run()
        let first = try FineTuner(recipe: recipe("resumed", steps: 8, training: ", accumulation: 2"))
        try first.run(stopAfter: 3)
        XCTAssertEqual(first.checkpointStep(), 3)
        let second = try FineTuner(recipe: recipe("resumed", steps: 8, training: ", accumulation: 2"))
        let summary = try second.run(resume: true)
        XCTAssertEqual(summary.steps, 8)
        func adapter(_ run: String) throws -> [String: Tensor] {
            try SafeTensors.read(contentsOf: directory.appendingPathComponent("\(run)/adapter/adapter_model.safetensors")).tensors
        }
        assertIdentical(try adapter("straight"), try adapter("resumed"))
        // The checkpoint holds the adapters and the optimiser state, not the frozen base.
        let checkpoint = try SafeTensors.read(contentsOf: directory.appendingPathComponent("resumed/checkpoint.safetensors"))
        XCTAssertTrue(checkpoint.tensors.keys.allSatisfy { $0.hasPrefix("optimizer.") || $0.contains(".lora_") }, "\(checkpoint.tensors.keys.sorted().prefix(4))")
        // A checkpoint of another configuration is refused, by name.
        let other = try FineTuner(recipe: recipe("resumed", steps: 8, lora: "{r: 2, alpha: 8, targets: all-linear}"))
        XCTAssertThrowsError(try other.run(resume: true)) { error in
            XCTAssertTrue("\(error)".contains("cannot resume from"), "\(error)")
        }
    }

    func testValidationFractionSplitsTheTrainingFile() throws {
        var r = try recipe("fraction")
        r.data.valid = nil
        r.data.validFraction = 0.25
        let tuner = try FineTuner(recipe: r)
        XCTAssertEqual(tuner.trainExamples, 36)
        XCTAssertEqual(tuner.validExamples, 12)
        r.data.validFraction = 0.001
        XCTAssertThrowsError(try FineTuner(recipe: r)) { error in
            XCTAssertTrue("\(error)".contains("valid_fraction 0.001 of 48 examples leaves no validation example"), "\(error)")
        }
    }
}
