import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// The training loop, checkpoints, resume and recipe errors (the CLI's side: LatheCLITests).
final class TrainingTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = try temporaryDirectory(name)
    }

    func tinyRecipe(_ output: String, steps: Int = 12, schedule: String = "cosine", extra: String = "") -> String {
        TestRecipes.tinyCNN(output: directory.appendingPathComponent(output), steps: steps, schedule: schedule, extra: extra)
    }

    func weights(_ path: String) throws -> [String: Tensor] {
        try SafeTensors.read(contentsOf: directory.appendingPathComponent(path)).tensors
    }

    func testResumeIsBitIdenticalToAnUninterruptedRun() throws {
        let straight = try Trainer(recipe: Recipe.parse(tinyRecipe("straight")))
        try straight.run()
        let interrupted = try Trainer(recipe: Recipe.parse(tinyRecipe("resumed")))
        let partial = try interrupted.run(stopAfter: 8)
        XCTAssertEqual(partial.steps, 8)
        let resumed = try Trainer(recipe: Recipe.parse(tinyRecipe("resumed")))  // a fresh process' worth of state
        let summary = try resumed.run(resume: true)
        XCTAssertEqual(summary.steps, 12)
        assertIdentical(try weights("straight/model.safetensors"), try weights("resumed/model.safetensors"))
    }

    func testCorruptAndTruncatedCheckpointsGiveClearErrors() throws {
        let recipe = try Recipe.parse(tinyRecipe("corrupt", steps: 4))
        try Trainer(recipe: recipe).run()
        let url = directory.appendingPathComponent("corrupt/checkpoint.safetensors")
        let bytes = try Data(contentsOf: url)
        try bytes.prefix(bytes.count - 100).write(to: url)
        XCTAssertThrowsError(try Trainer(recipe: recipe).run(resume: true)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("cannot resume from") && text.contains("truncated"), text)
        }
        try Data("not a checkpoint at all".utf8).write(to: url)
        XCTAssertThrowsError(try Trainer(recipe: recipe).run(resume: true)) { error in
            XCTAssertTrue("\(error)".contains("cannot resume from \(url.path)"), "\(error)")
        }
        try FileManager.default.removeItem(at: url)
        XCTAssertThrowsError(try Trainer(recipe: recipe).run(resume: true)) { error in
            XCTAssertEqual(error as? TrainError, .noCheckpoint(directory: directory.appendingPathComponent("corrupt").path))
        }
    }

    func testNaNLossStopsWithTheStepAndKeepsTheLastCheckpoint() throws {
        let recipe = try Recipe.parse(tinyRecipe("nan", steps: 200) + "\n", overrides: ["optimizer.lr=1e30", "training.clip_grad_norm=null"])
        XCTAssertThrowsError(try Trainer(recipe: recipe).run()) { error in
            guard case let .nonFiniteLoss(step, _, _)? = error as? TrainError else { return XCTFail("\(error)") }
            XCTAssertGreaterThan(step, 0)
            XCTAssertTrue("\(error)".contains("at step \(step)"), "\(error)")
        }
    }

    func testRecipeErrorsNameTheKeyAndFile() throws {
        let url = directory.appendingPathComponent("bad.yaml")
        try (tinyRecipe("x") + "\nschedul: {name: cosine}\n").write(to: url, atomically: false, encoding: .utf8)
        XCTAssertThrowsError(try Recipe.load(contentsOf: url)) { error in
            XCTAssertTrue("\(error)".contains("bad.yaml: schedul: unknown key"), "\(error)")
        }
        XCTAssertThrowsError(try Recipe.parse(tinyRecipe("x"), file: "r.yaml", overrides: ["optimizer.lr=fast"])) { error in
            XCTAssertEqual("\(error)", "r.yaml: optimizer.lr: expected a number, got 'fast'")
        }
        XCTAssertThrowsError(try Recipe.parse(tinyRecipe("x"), file: "r.yaml", overrides: ["training.batchsize=3"])) { error in
            XCTAssertTrue("\(error)".hasPrefix("r.yaml: training.batchsize: unknown key"), "\(error)")
        }
        let r = try Recipe.parse(tinyRecipe("x"), overrides: ["optimizer.lr=0.5", "model.layers=2"])
        XCTAssertEqual(r.optimizer.lr, 0.5)
        XCTAssertEqual(r.model.layers, 2)
    }

    func testMissingDataSetSaysWhereToGetIt() throws {
        let empty = directory.appendingPathComponent("no-fashion")
        let recipe = try Recipe.parse(tinyRecipe("f"), overrides: ["data.name=fashion-mnist", "data.path=\(empty.path)"])
        XCTAssertThrowsError(try Trainer(recipe: recipe)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(empty.path) && text.contains("dataset-fashion-mnist"), text)
        }
    }

    func testDemoRecipeIsTheOneInRecipes() throws {
        let file = fixturesDirectory.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Recipes/digits-cnn.yaml")
        XCTAssertEqual(try Recipe.load(contentsOf: file), try Recipe.parse(Recipe.demoYAML))
        for name in ["digits-mlp", "fashion-mnist-cnn", "shakespeare-char-gpt"] {
            let url = file.deletingLastPathComponent().appendingPathComponent("\(name).yaml")
            XCTAssertNoThrow(try Recipe.load(contentsOf: url), name)
        }
    }
}

/// `data.augment` in recipes.
final class AugmentationRecipeTests: XCTestCase {
    let recipe = """
    model: {name: digits-cnn}
    data: {name: digits, split: [0.8, 0.1, 0.1]}
    training: {steps: 4, batch_size: 16}
    output: /tmp/unused
    """

    func testAugmentKeysAreCheckedAndTrainingBatchesAreShifted() throws {
        let r = try Recipe.parse(recipe, file: "r.yaml", overrides: ["data.augment.shift=1", "data.augment.horizontal_flip=true"])
        XCTAssertEqual(r.data.augmentation, ImageAugmentation(shift: 1, horizontalFlip: true))
        XCTAssertThrowsError(try Recipe.parse(recipe, file: "r.yaml", overrides: ["data.augment.shfit=1"])) { error in
            XCTAssertTrue("\(error)".hasPrefix("r.yaml: data.augment.shfit: unknown key"), "\(error)")
        }
        XCTAssertThrowsError(try Recipe.parse(recipe, file: "r.yaml", overrides: ["data.augment.shift=-1"])) { error in
            XCTAssertTrue("\(error)".hasPrefix("r.yaml: data.augment.shift: must be a number of pixels from 0 to 4096"), "\(error)")
        }
        let plainTask = try XCTUnwrap(try Trainer(recipe: Recipe.parse(recipe)).task as? ClassificationTask)
        let task = try XCTUnwrap(try Trainer(recipe: r).task as? ClassificationTask)
        // A fresh task asked for batch 2 first (as a resumed run is) draws what one that went through 0 and 1 does.
        let resumed = try XCTUnwrap(try Trainer(recipe: r).task as? ClassificationTask).trainBatch(2).x.scalars
        var differs = false
        for step in 0..<3 {
            let (a, b) = (plainTask.trainBatch(step), task.trainBatch(step))
            XCTAssertEqual(a.y.intScalars, b.y.intScalars, "augmentation must not change the batch's samples")
            XCTAssertEqual(a.x.shape, b.x.shape)
            differs = differs || a.x.scalars != b.x.scalars
        }
        XCTAssertEqual(task.trainBatch(2).x.scalars, resumed)
        XCTAssertTrue(differs)
        // Evaluation is never augmented: the same model scores the same on both tasks.
        let model = DigitsCNN(seed: 1)
        model.eval()
        XCTAssertEqual(noGrad { task.evaluate(model, split: .validation) }.loss, noGrad { plainTask.evaluate(model, split: .validation) }.loss)
    }

    func testAugmentOnDataThatAreNotImagesOrTooSmallIsAClearError() throws {
        let csv = fixturesDirectory.appendingPathComponent("data/small.csv").path
        let onCSV = try Recipe.parse(recipe, overrides: ["model.name=digits-mlp", "data.name=csv", "data.path=\(csv)", "data.augment.shift=1"])
        XCTAssertThrowsError(try Trainer(recipe: onCSV)) { error in
            XCTAssertTrue("\(error)".contains("data.augment: it shifts and flips images [C, H, W], but the samples have shape"), "\(error)")
        }
        XCTAssertThrowsError(try Trainer(recipe: Recipe.parse(recipe, overrides: ["data.augment.shift=8"]))) { error in
            XCTAssertTrue("\(error)".contains("a shift of 8 pixels would empty 8x8 images (use at most 7)"), "\(error)")
        }
        XCTAssertThrowsError(try Recipe.parse(recipe, file: "r.yaml", overrides: ["data.name=shakespeare", "data.augment.shift=1"])) { error in
            XCTAssertTrue("\(error)".hasPrefix("r.yaml: data.augment: applies to images"), "\(error)")
        }
        let stage = "compress: {stages: [{name: s, method: distill, steps: 1, augment: {shift: 1}}]}"
        XCTAssertThrowsError(try Recipe.parse("data: {name: shakespeare}\ntraining: {steps: 1}\n" + stage, file: "r.yaml")) { error in
            XCTAssertTrue("\(error)".hasPrefix("r.yaml: compress.stages[0].augment: applies to images"), "\(error)")
        }
    }
}
