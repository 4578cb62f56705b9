import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// Weights move between Lathe and PyTorch unchanged: PyTorch-trained weights give PyTorch's
/// predictions in Lathe (fixture from `Tools/reference/make_interop_fixture.py`), Lathe's saved
/// models have PyTorch's state_dict keys, and `lathe eval --predictions` names the samples it
/// evaluated. (Loading Lathe-trained weights into PyTorch itself is checked by hand with
/// `Tools/reference/check_interop.py`; the tests never run Python.)
final class InteropTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-interop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func testPyTorchTrainedCNNGivesPyTorchsPredictions() throws {
        let folder = fixturesDirectory.appendingPathComponent("interop")
        let data = try Data(contentsOf: folder.appendingPathComponent("expected.json"))
        let expected = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        func ints(_ key: String) -> [Int] { (expected[key] as! [NSNumber]).map(\.intValue) }
        let indices = ints("indices"), labels = ints("labels"), predictions = ints("predictions")
        let logits = (expected["logits"] as! [[NSNumber]]).flatMap { $0.map(\.floatValue) }

        let model = DigitsCNN()
        try model.loadStateDict(SafeTensors.read(contentsOf: folder.appendingPathComponent("digits_cnn_torch.safetensors")).tensors,
                                strict: true)
        model.eval()
        let digits = try Digits.load()
        let samples = digits.subset(indices: indices)
        XCTAssertEqual(samples.labels.intScalars, labels, "the fixture's labels are the bundled digits' labels")
        let p = noGrad { ClassificationTask.predict(model, samples, flatten: false, split: .test) }
        XCTAssertEqual(p.indices, indices)
        XCTAssertEqual(p.predicted, predictions, "predictions differ from PyTorch's")
        assertClose(p.logits, Tensor(logits, shape: [indices.count, 10]), rtol: 0, atol: 1e-4, "logits vs PyTorch")
        XCTAssertEqual(p.correct, (expected["correct"] as! NSNumber).intValue)
        XCTAssertEqual(p.accuracy, (expected["accuracy"] as! NSNumber).doubleValue)
        // The same through the task's evaluation (the code `lathe eval` runs).
        let e = noGrad { ClassificationTask.evaluate(model, samples, flatten: false) }
        XCTAssertEqual(e.accuracy, (expected["accuracy"] as! NSNumber).doubleValue)
    }

    func recipe(_ model: String, _ output: String) -> String {
        """
        model: {name: \(model)}
        data: {name: digits, split: [0.7, 0.1, 0.2], split_seed: 5}
        optimizer: {name: adamw, lr: 0.003}
        training: {steps: 3, batch_size: 16}
        seed: 1
        threads: 1
        output: \(directory.appendingPathComponent(output).path)
        """
    }

    func testSavedModelsHaveThePyTorchStateDictKeys() throws {
        for (name, fixture) in [("digits-cnn", "cnn"), ("digits-mlp", "mlp")] {
            try Trainer(recipe: Recipe.parse(recipe(name, name))).run()
            let saved = try SafeTensors.readHeader(contentsOf: directory.appendingPathComponent("\(name)/model.safetensors"))
            let torch = try SafeTensors.readHeader(contentsOf: fixturesDirectory.appendingPathComponent("models/\(fixture)/init.safetensors"))
            XCTAssertEqual(Set(saved.names), Set(torch.names), name)
            XCTAssertEqual(saved.names.count, torch.names.count, name)
            for entry in torch.entries {
                XCTAssertEqual(saved[entry.name]?.fileDType, entry.fileDType, "\(name) \(entry.name) dtype")
                XCTAssertEqual(saved[entry.name]?.shape, entry.shape, "\(name) \(entry.name) shape")
            }
            XCTAssertEqual(saved.metadata["format"], "pt")
        }
    }

    func testEvalWritesPredictionsWithTheSplitIndices() throws {
        let url = directory.appendingPathComponent("cnn.yaml")
        try recipe("digits-cnn", "cnn").write(to: url, atomically: false, encoding: .utf8)
        let trainer = try Trainer(recipe: Recipe.load(contentsOf: url))
        try trainer.run()
        let weights = directory.appendingPathComponent("cnn/model.safetensors").path
        let out = directory.appendingPathComponent("p.json")
        let run = try runLathe(["eval", url.path, "--model", weights, "--predictions", out.path])
        XCTAssertEqual(run.status, 0, run.err)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as! [String: Any]
        func ints(_ key: String) -> [Int] { (json[key] as! [NSNumber]).map(\.intValue) }

        let all = try Digits.load()
        let split = try all.splitIndices(fractions: [0.7, 0.1, 0.2], seed: 5)
        XCTAssertEqual(ints("indices"), split[2], "the test split's rows of the digits file")
        XCTAssertEqual(ints("labels"), all.subset(indices: split[2]).labels.intScalars)
        XCTAssertEqual(json["split"] as? String, "test")
        XCTAssertEqual(json["model_name"] as? String, "digits-cnn")
        // Predictions and logits are the model's, and their accuracy is what eval prints.
        try trainer.model.loadStateDict(SafeTensors.read(contentsOf: URL(fileURLWithPath: weights)).tensors)
        let p = try trainer.predictions(.test)
        XCTAssertEqual(ints("predictions"), p.predicted)
        let logits = (json["logits"] as! [[NSNumber]]).flatMap { $0.map(\.floatValue) }
        XCTAssertEqual(logits, p.logits.scalars, "logits round-trip exactly")
        let e = trainer.evaluate(.test)
        XCTAssertEqual((json["accuracy"] as! NSNumber).doubleValue, e.accuracy!)
        XCTAssertTrue(run.out.contains(String(format: "accuracy %.2f%%", 100 * e.accuracy!)), run.out)
        // The training split too, and no logits on request.
        let train = try runLathe(["eval", url.path, "--model", weights, "--split", "train", "--predictions", out.path, "--no-logits"])
        XCTAssertEqual(train.status, 0, train.err)
        let tj = try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as! [String: Any]
        XCTAssertEqual((tj["indices"] as! [NSNumber]).map(\.intValue), split[0])
        XCTAssertNil(tj["logits"])
    }
}
