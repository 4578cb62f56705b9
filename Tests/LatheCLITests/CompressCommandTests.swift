import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// `lathe quantize`, `prune`, `compress`, `report` and `distill` end to end: arguments, exit
/// statuses, files and the lines users read (the pipeline itself: LatheTrainTests).
final class CompressCommandTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = try temporaryDirectory(name)
    }

    /// Trains the digits MLP for a few steps through `lathe train`; returns the recipe and weights paths.
    func trainMLP() throws -> (recipe: String, weights: String) {
        let recipe = directory.appendingPathComponent("mlp.yaml")
        try """
        model: {name: digits-mlp}
        data: {name: digits, split: [0.8, 0.1, 0.1]}
        optimizer: {name: adamw, lr: 0.003}
        training: {steps: 30, batch_size: 32, eval_every: 10}
        seed: 3
        threads: 2
        output: \(directory.appendingPathComponent("run").path)
        """.write(to: recipe, atomically: false, encoding: .utf8)
        let run = try runLathe(["train", recipe.path])
        XCTAssertEqual(run.status, 0, run.err)
        let weights = directory.appendingPathComponent("run/model.safetensors").path
        XCTAssertTrue(FileManager.default.fileExists(atPath: weights))
        return (recipe.path, weights)
    }

    func bytes(_ path: String) throws -> Int {
        try (FileManager.default.attributesOfItem(atPath: path)[.size] as! NSNumber).intValue
    }

    func testQuantizeAndPrune() throws {
        let (recipe, weights) = try trainMLP()
        let q = directory.appendingPathComponent("q.safetensors").path
        let run = try runLathe(["quantize", recipe, "--model", weights, "--scheme", "int4", "--group-size", "32", "--output", q])
        XCTAssertEqual(run.status, 0, run.err)
        XCTAssertLessThan(try bytes(q), try bytes(weights))
        XCTAssertTrue(run.out.contains("quantized layers: 0, 2, 4"), run.out)
        XCTAssertTrue(run.out.contains("(same as before saving)"), run.out)
        XCTAssertTrue(run.out.contains("file: fp32 \(try bytes(weights)) bytes"), run.out)

        let p = directory.appendingPathComponent("p.safetensors").path
        let prune = try runLathe(["prune", recipe, "--model", weights, "--method", "structured", "--ratio", "0.5", "--finetune-steps", "2", "--output", p])
        XCTAssertEqual(prune.status, 0, prune.err)
        XCTAssertTrue(prune.out.contains("lathe eval cannot load it"), prune.out)
        let mlp = Models.digitsMLP()
        try loadPrunedStateDict(SafeTensors.read(contentsOf: URL(fileURLWithPath: p)).tensors, into: mlp)
        XCTAssertTrue(prune.out.contains("after 2 fine-tune steps: \(mlp.parameterCount()) parameters"), prune.out)

        // Bad arguments are clear errors, and nothing is written.
        let x = directory.appendingPathComponent("x").path
        let bad = try runLathe(["quantize", recipe, "--model", weights, "--scheme", "int3", "--output", x])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("'int3'") && bad.err.contains("int8-dynamic"), bad.err)
        let badMethod = try runLathe(["prune", recipe, "--model", weights, "--method", "random", "--output", x])
        XCTAssertNotEqual(badMethod.status, 0)
        XCTAssertTrue(badMethod.err.contains("'random'") && badMethod.err.contains("2:4"), badMethod.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: x))
    }

    func testCompressReportAndDistill() throws {
        let recipe = directory.appendingPathComponent("cnn.yaml")
        let output = directory.appendingPathComponent("run")
        try """
        model: {name: digits-cnn}
        data: {name: digits, split: [0.7, 0.1, 0.2]}
        optimizer: {name: adamw, lr: 0.003}
        training: {steps: 20, batch_size: 32, eval_every: 10}
        seed: 1
        threads: 2
        output: \(output.path)
        compress:
          calibration_batches: 2
          stages:
            - {name: int8, method: quantize, scheme: int8}
            - {name: small, method: distill, student: {channels: [4, 8], hidden: 16}, steps: 3}
        """.write(to: recipe, atomically: false, encoding: .utf8)
        let run = try runLathe(["compress", recipe.path, "--only", "int8"])
        XCTAssertEqual(run.status, 0, run.err + run.out)
        XCTAssertTrue(run.out.contains("| int8 |") && !run.out.contains("| small |"), run.out)
        XCTAssertTrue(FileManager.default.fileExists(atPath: output.appendingPathComponent("pareto.svg").path))
        let wrongStage = try runLathe(["compress", recipe.path, "--only", "int9"])
        XCTAssertEqual(wrongStage.status, 1)
        XCTAssertTrue(wrongStage.err.contains("has no stage 'int9' (stages: int8, small)"), wrongStage.err)

        let variants = output.appendingPathComponent("variants")
        let student = directory.appendingPathComponent("student.safetensors")
        let distill = try runLathe(["distill", recipe.path, "--teacher", variants.appendingPathComponent("baseline.safetensors").path,
                                    "--student", "model.hidden=16", "--steps", "3", "--augment-shift", "1", "--output", student.path])
        XCTAssertEqual(distill.status, 0, distill.err)
        XCTAssertTrue(distill.out.contains("with KD"), distill.out)
        XCTAssertEqual(try SafeTensors.read(contentsOf: student).tensors["fc1.weight"]?.shape, [16, 256])

        let md = directory.appendingPathComponent("r/report.md")
        let rep = try runLathe(["report", recipe.path, "base=" + variants.appendingPathComponent("baseline.safetensors").path,
                                student.path, "--output", md.path])
        XCTAssertEqual(rep.status, 0, rep.err)
        let text = try String(contentsOf: md, encoding: .utf8)
        XCTAssertTrue(text.contains("| base |") && text.contains("| student |"), text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory.appendingPathComponent("r/report.svg").path))

        // A wrong stage key names the stage and the key.
        try "training: {steps: 1}\ncompress:\n  stages:\n    - {name: int8, method: quantize, sparsity: 0.5}\n"
            .write(to: recipe, atomically: false, encoding: .utf8)
        let bad = try runLathe(["compress", recipe.path])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("compress.stages[0].sparsity: not a key of quantize stages"), bad.err)
    }
}
