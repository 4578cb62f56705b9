import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// `lathe train`, `lathe eval` and `lathe inspect` end to end: exit statuses, messages, files.
final class TrainCommandTests: XCTestCase {
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

    func testKillNineThenResumeThroughTheCLI() throws {
        let recipeURL = directory.appendingPathComponent("kill.yaml")
        // A constant schedule, so that runs with different totals share their first steps.
        try tinyRecipe("killed", steps: 400, schedule: "constant").write(to: recipeURL, atomically: false, encoding: .utf8)
        let checkpoint = directory.appendingPathComponent("killed/checkpoint.safetensors")
        let process = try startLathe(["train", recipeURL.path])
        // Wait for a checkpoint, then kill the process hard mid-run.
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: checkpoint.path) && process.isRunning && Date() < deadline { usleep(20_000) }
        usleep(150_000)
        XCTAssertTrue(process.isRunning, "training finished before it could be killed")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .uncaughtSignal)
        // The checkpoint on disk is whole (written atomically) and the run resumes from it.
        let saved = try SafeTensors.read(contentsOf: checkpoint)
        let savedStep = Int(saved.metadata["lathe.step"] ?? "") ?? -1
        XCTAssertGreaterThan(savedStep, 0)
        XCTAssertLessThan(savedStep, 400)
        let resumed = try runLathe(["train", recipeURL.path, "--resume", "--set", "training.steps=\(savedStep + 4)"])
        XCTAssertEqual(resumed.status, 0, resumed.err)
        // The same run without interruption gives the same weights.
        let straight = try runLathe(["train", recipeURL.path, "--set", "training.steps=\(savedStep + 4)", "--set",
                                     "output=\(directory.appendingPathComponent("straight").path)"])
        XCTAssertEqual(straight.status, 0, straight.err)
        assertIdentical(try weights("killed/model.safetensors"), try weights("straight/model.safetensors"))
    }

    func testBadCheckpointAndBadRecipeAreClearErrors() throws {
        let recipe = try Recipe.parse(tinyRecipe("corrupt", steps: 4))
        try Trainer(recipe: recipe).run()
        let url = directory.appendingPathComponent("corrupt/checkpoint.safetensors")
        // A clear message and a non-zero exit, no crash.
        let recipeURL = directory.appendingPathComponent("c.yaml")
        try tinyRecipe("corrupt", steps: 4).write(to: recipeURL, atomically: false, encoding: .utf8)
        try Data([1, 2, 3]).write(to: url)
        let run = try runLathe(["train", recipeURL.path, "--resume"])
        XCTAssertEqual(run.status, 1)
        XCTAssertTrue(run.err.contains("cannot resume from"), run.err)
        let bad = directory.appendingPathComponent("bad.yaml")
        try (tinyRecipe("x") + "\nschedul: {name: cosine}\n").write(to: bad, atomically: false, encoding: .utf8)
        let badRun = try runLathe(["train", bad.path])
        XCTAssertEqual(badRun.status, 1, badRun.err)
        XCTAssertTrue(badRun.err.contains("schedul: unknown key"), badRun.err)
    }

    func recipe(_ model: String, _ output: String) -> String {
        TestRecipes.digits(model: model, output: directory.appendingPathComponent(output))
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

    func rawFile(_ name: String, header: String) throws -> URL {
        let h = Array(header.utf8)
        let prefix = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(h.count) >> (8 * UInt64($0))) }
        let u = directory.appendingPathComponent(name)
        try Data(prefix + h).write(to: u)
        return u
    }

    /// Runs the built `lathe` executable (next to the test bundle) on good and bad files.
    func testInspectCommand() throws {
        func run(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
            let r = try runLathe(arguments)
            return (r.status, r.out, r.err)
        }
        let fixture = fixturesDirectory.appendingPathComponent("io/torch_written.safetensors").path
        let table = try run(["inspect", fixture])
        XCTAssertEqual(table.status, 0, table.err)
        XCTAssertTrue(table.out.contains("layer.0.brain"), table.out)
        XCTAssertTrue(table.out.contains("F64 (loads as float32)"), table.out)
        XCTAssertTrue(table.out.contains("11 tensors, 31 parameters"), table.out)
        XCTAssertTrue(table.out.contains("source: Tools/reference/make_io_fixtures.py"), table.out)

        let json = try run(["inspect", "--json", fixture])
        XCTAssertEqual(json.status, 0, json.err)
        let object = try JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [String: Any]
        XCTAssertEqual((object?["tensor_count"] as? NSNumber)?.intValue, 11)

        let bad = try rawFile("bad.safetensors", header: "garbage")
        let failed = try run(["inspect", bad.path])
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertTrue(failed.err.contains("bad.safetensors: the safetensors header is invalid"), failed.err)
        XCTAssertEqual(failed.out, "")
    }

    /// `lathe inspect` tells GGUF files by their magic and prints their metadata and tensors.
    func testInspectGGUF() throws {
        let fixture = fixturesDirectory.appendingPathComponent("gguf/all_types.gguf").path
        let table = try runLathe(["inspect", fixture])
        XCTAssertEqual(table.status, 0, table.err)
        XCTAssertTrue(table.out.hasPrefix("\(fixture): GGUF v3"), table.out)
        XCTAssertTrue(table.out.contains("tokenizer.ggml.tokens"), table.out)
        XCTAssertTrue(table.out.contains("16 tensors, 4,589 parameters"), table.out)

        let json = try runLathe(["inspect", "--json", fixture])
        XCTAssertEqual(json.status, 0, json.err)
        let object = try JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [String: Any]
        XCTAssertEqual(object?["format"] as? String, "gguf")
        XCTAssertEqual((object?["tensor_count"] as? NSNumber)?.intValue, 16)

        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: fixture)))
        bytes[4] = 9
        let bad = directory.appendingPathComponent("bad.gguf")
        try Data(bytes).write(to: bad)
        let failed = try runLathe(["inspect", bad.path])
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertTrue(failed.err.contains("bad.gguf: GGUF version 9 cannot be read"), failed.err)
        XCTAssertEqual(failed.out, "")
    }
}
