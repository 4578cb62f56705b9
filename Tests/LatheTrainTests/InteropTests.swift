import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// Weights move between Lathe and PyTorch unchanged: PyTorch-trained weights give PyTorch's
/// predictions in Lathe (fixture from `Tools/reference/make_interop_fixture.py`), Lathe's saved
/// models have PyTorch's state_dict keys (`lathe eval --predictions`: LatheCLITests). (Loading Lathe-trained weights into PyTorch itself is checked by hand with
/// `Tools/reference/check_interop.py`; the tests never run Python.)
final class InteropTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = try temporaryDirectory(name)
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
        TestRecipes.digits(model: model, output: directory.appendingPathComponent(output))
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
}
