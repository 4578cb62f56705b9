import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// `lathe finetune` end to end on llama-tiny: progress, logs, kill -9 and resume, --eval-only.
final class FineTuneCommandTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws { directory = try temporaryDirectory(name) }

    func adapter(_ run: String) throws -> [String: Tensor] {
        try SafeTensors.read(contentsOf: directory.appendingPathComponent("\(run)/adapter/adapter_model.safetensors")).tensors
    }

    func testKillNineThenResumeThroughTheCLI() throws {
        let recipeURL = directory.appendingPathComponent("kill.yaml")
        try FineTuneFixtures.recipe(in: directory, output: "killed", steps: 2000).write(to: recipeURL, atomically: false, encoding: .utf8)
        let checkpoint = directory.appendingPathComponent("killed/checkpoint.safetensors")
        let process = try startLathe(["finetune", recipeURL.path])
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: checkpoint.path) && process.isRunning && Date() < deadline { usleep(20_000) }
        usleep(300_000)
        XCTAssertTrue(process.isRunning, "training finished before it could be killed")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .uncaughtSignal)
        let saved = try SafeTensors.read(contentsOf: checkpoint)
        let savedStep = Int(saved.metadata["lathe.step"] ?? "") ?? -1
        XCTAssertGreaterThan(savedStep, 0)
        XCTAssertLessThan(savedStep, 2000)
        // A constant schedule, so that runs with different totals share their first steps.
        let resumed = try runLathe(["finetune", recipeURL.path, "--resume", "--set", "training.steps=\(savedStep + 3)"])
        XCTAssertEqual(resumed.status, 0, resumed.err)
        let straight = try runLathe(["finetune", recipeURL.path, "--set", "training.steps=\(savedStep + 3)",
                                     "--set", "output=\(directory.appendingPathComponent("straight").path)"])
        XCTAssertEqual(straight.status, 0, straight.err)
        assertIdentical(try adapter("killed"), try adapter("straight"))
        // Progress with tokens/s, the validation loss and perplexity, the logs.
        XCTAssertTrue(straight.out.contains("tok/s"), straight.out)
        XCTAssertTrue(straight.out.contains("validation loss"), straight.out)
        let csv = try String(contentsOf: directory.appendingPathComponent("straight/metrics.csv"), encoding: .utf8)
        XCTAssertTrue(csv.contains(",val,perplexity,") && csv.contains(",train,tokens_per_second,"), csv)
        let events = try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("straight").path)
        XCTAssertTrue(events.contains { $0.hasPrefix("events.out.tfevents.") }, "\(events)")
    }

    func testEvalOnlyReportsAccuracyWithItsInterval() throws {
        let recipeURL = directory.appendingPathComponent("tiny.yaml")
        try FineTuneFixtures.recipe(in: directory, output: "run", steps: 30).write(to: recipeURL, atomically: false, encoding: .utf8)
        let train = try runLathe(["finetune", recipeURL.path])
        XCTAssertEqual(train.status, 0, train.err)
        let tuned = try runLathe(["finetune", recipeURL.path, "--eval-only"])
        XCTAssertEqual(tuned.status, 0, tuned.err)
        let base = try runLathe(["finetune", recipeURL.path, "--eval-only", "--base"])
        XCTAssertEqual(base.status, 0, base.err)
        func accuracy(_ out: String) throws -> Double {
            let line = try XCTUnwrap(out.split(separator: "\n").first { $0.hasPrefix("exact-match accuracy: ") }, out)
            XCTAssertTrue(line.contains("of 16), 95% Wilson interval ["), String(line))
            return try XCTUnwrap(Double(line.dropFirst("exact-match accuracy: ".count).prefix { $0 != "%" }))
        }
        // The random tiny model never answers " yes"/" no"; 30 steps teach it the format at least (and some of the task).
        XCTAssertEqual(try accuracy(base.out), 0)
        XCTAssertGreaterThanOrEqual(try accuracy(tuned.out), 25, tuned.out)
        let missing = try runLathe(["finetune", recipeURL.path, "--eval-only", "--adapter", directory.appendingPathComponent("none").path])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.err.contains("no such adapter folder or file"), missing.err)
        let bad = directory.appendingPathComponent("bad.yaml")
        try (try String(contentsOf: recipeURL, encoding: .utf8) + "\nlora_rank: 3\n").write(to: bad, atomically: false, encoding: .utf8)
        let badRun = try runLathe(["finetune", bad.path])
        XCTAssertEqual(badRun.status, 1)
        XCTAssertTrue(badRun.err.contains("bad.yaml: lora_rank: unknown key"), badRun.err)
    }

    /// `adapter: full` writes `model.safetensors`; `--eval-only` loads the base, then those weights,
    /// in float32 (also through `--adapter FILE.safetensors`), and `--batch` gives the same answers.
    func testEvalOnlyOfAFullFineTune() throws {
        let recipeURL = directory.appendingPathComponent("full.yaml")
        let text = try FineTuneFixtures.recipe(in: directory, output: "full", steps: 20).split(separator: "\n").filter { !$0.hasPrefix("lora:") }
            .joined(separator: "\n").replacingOccurrences(of: "adapter: lora", with: "adapter: full").replacingOccurrences(of: "lr: 0.01", with: "lr: 0.003")
        try text.write(to: recipeURL, atomically: false, encoding: .utf8)
        let train = try runLathe(["finetune", recipeURL.path])
        XCTAssertEqual(train.status, 0, train.err)
        let weights = directory.appendingPathComponent("full/model.safetensors")
        XCTAssertTrue(FileManager.default.fileExists(atPath: weights.path))
        let answers = directory.appendingPathComponent("answers.jsonl")
        let tuned = try runLathe(["finetune", recipeURL.path, "--eval-only", "--answers", answers.path])
        XCTAssertEqual(tuned.status, 0, tuned.err)
        XCTAssertTrue(tuned.out.contains("with full fine-tune \(weights.path) (float32)"), tuned.out)
        XCTAssertTrue(tuned.out.contains("every weight evaluated in float32"), tuned.out)
        let lines = try String(contentsOf: answers, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 16)
        XCTAssertTrue(lines[0].hasPrefix(#"{"line":1,"answer":"#), String(lines[0]))
        let explicit = try runLathe(["finetune", recipeURL.path, "--eval-only", "--adapter", weights.path, "--batch", "1"])
        XCTAssertEqual(explicit.status, 0, explicit.err)
        let base = try runLathe(["finetune", recipeURL.path, "--eval-only", "--base"])
        XCTAssertEqual(base.status, 0, base.err)
        func loss(_ out: String) throws -> Double {
            let line = try XCTUnwrap(out.split(separator: "\n").first { $0.hasPrefix("loss ") }, out)
            return try XCTUnwrap(Double(line.dropFirst(5).prefix { $0 != "," }))
        }
        func results(_ out: String) -> [Substring] {
            out.split(separator: "\n").filter { $0.hasPrefix("exact-match") || $0.hasPrefix("first-word") || $0.hasPrefix("most frequent") }
        }
        XCTAssertLessThan(try loss(tuned.out), try loss(base.out) - 0.1, "the trained weights are the ones evaluated")
        XCTAssertEqual(try loss(explicit.out), try loss(tuned.out))
        XCTAssertEqual(results(explicit.out), results(tuned.out), "one at a time and batched: the same answers")
        XCTAssertEqual(results(tuned.out).count, 3, tuned.out)
        let missing = try runLathe(["finetune", recipeURL.path, "--eval-only", "--adapter", directory.appendingPathComponent("none.safetensors").path])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.err.contains("the weights of a full fine-tune"), missing.err)
    }
}
