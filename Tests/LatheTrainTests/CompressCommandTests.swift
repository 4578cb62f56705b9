import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// `lathe quantize` and `lathe prune` on a briefly trained digits MLP.
final class CompressCommandTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-compress-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Trains the digits MLP for a few steps and returns the recipe and weights paths.
    func trainMLP() throws -> (recipe: String, weights: String) {
        let recipe = directory.appendingPathComponent("mlp.yaml")
        try """
        model: {name: digits-mlp}
        data: {name: digits, split: [0.8, 0.1, 0.1]}
        optimizer: {name: adamw, lr: 0.003}
        schedule: {name: cosine, warmup_steps: 2}
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

    /// The numbers of the first line matching `pattern` (a regular expression with capture groups).
    func numbers(_ text: String, _ pattern: String, file: StaticString = #filePath, line: UInt = #line) -> [Double] {
        let re = try! NSRegularExpression(pattern: pattern)
        guard let m = re.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) else {
            XCTFail("no line matches \(pattern) in:\n\(text)", file: file, line: line)
            return []
        }
        return (1..<m.numberOfRanges).map { Double(text[Range(m.range(at: $0), in: text)!])! }
    }

    func testQuantizeAndPrune() throws {
        let (recipe, weights) = try trainMLP()
        let fp32Bytes = try bytes(weights)

        for scheme in ["int8-dynamic", "int4"] {
            let out = directory.appendingPathComponent("q-\(scheme).safetensors").path
            let run = try runLathe(["quantize", recipe, "--model", weights, "--scheme", scheme, "--output", out])
            XCTAssertEqual(run.status, 0, run.err)
            XCTAssertTrue(FileManager.default.fileExists(atPath: out), run.out)
            XCTAssertLessThan(try bytes(out), fp32Bytes, run.out)
            let acc = numbers(run.out, #"accuracy \(test, (\d+) samples\): fp32 ([\d.]+)%, quantized ([\d.]+)%, drop (-?[\d.]+) points"#)
            XCTAssertEqual(acc.count, 4)
            if acc.count == 4 {
                XCTAssertGreaterThan(acc[1], 30, "a few steps already beat chance: \(run.out)")
                XCTAssertEqual(acc[3], acc[1] - acc[2], accuracy: 0.011)
            }
            let size = numbers(run.out, #"file: fp32 (\d+) bytes .*, quantized (\d+) bytes .*, ([\d.]+)x smaller"#)
            XCTAssertEqual(size.first.map(Int.init), fp32Bytes)
            XCTAssertTrue(run.out.contains("(same as before saving)"), run.out)
        }

        for (method, extra) in [("magnitude", ["--sparsity", "0.5"]), ("structured", ["--ratio", "0.5"])] {
            let out = directory.appendingPathComponent("p-\(method).safetensors").path
            let run = try runLathe(["prune", recipe, "--model", weights, "--method", method, "--finetune-steps", "2", "--output", out] + extra)
            XCTAssertEqual(run.status, 0, run.err)
            XCTAssertTrue(FileManager.default.fileExists(atPath: out), run.out)
            let before = numbers(run.out, #"before: (\d+) parameters, (\d+) non-zero; test accuracy ([\d.]+)%"#)
            let after = numbers(run.out, #"after 2 fine-tune steps: (\d+) parameters, (\d+) non-zero; test accuracy ([\d.]+)%"#)
            XCTAssertEqual(before.count, 3)
            XCTAssertEqual(after.count, 3)
            guard before.count == 3, after.count == 3 else { continue }
            if method == "magnitude" {
                XCTAssertEqual(after[0], before[0], "unstructured pruning keeps the shapes")
                XCTAssertLessThan(after[1], before[1] * 0.6)
                let saved = try SafeTensors.read(contentsOf: URL(fileURLWithPath: out)).tensors
                let w = saved["0.weight"]!.detached().withUnsafeBufferPointer { $0.filter { $0 == 0 }.count }
                XCTAssertEqual(Double(w) / Double(saved["0.weight"]!.count), 0.5, accuracy: 0.01, "masks kept through fine-tuning")
            } else {
                XCTAssertLessThan(after[0], before[0] * 0.7, "structured pruning shrinks the model")
                XCTAssertTrue(run.out.contains("lathe eval cannot load it"), run.out)
                XCTAssertLessThan(try bytes(out), fp32Bytes)
                // The note's recipe: a fresh MLP takes the smaller shapes.
                let mlp = Models.digitsMLP()
                try loadPrunedStateDict(SafeTensors.read(contentsOf: URL(fileURLWithPath: out)).tensors, into: mlp)
                XCTAssertEqual(Double(mlp.parameterCount()), after[0])
            }
        }

        // Bad arguments are clear errors.
        let bad = try runLathe(["quantize", recipe, "--model", weights, "--scheme", "int3", "--output", directory.appendingPathComponent("x").path])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("--scheme must be one of int8, int8-dynamic, int4, int8-weight, not 'int3'"), bad.err)
        let badMethod = try runLathe(["prune", recipe, "--model", weights, "--method", "random", "--output", directory.appendingPathComponent("x").path])
        XCTAssertNotEqual(badMethod.status, 0)
        XCTAssertTrue(badMethod.err.contains("--method must be one of magnitude, global, structured, 2:4, not 'random'"), badMethod.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.appendingPathComponent("x").path))
    }

    /// The whole `compress:` pipeline on a briefly trained digits CNN, then `lathe report` and `lathe distill`.
    func testCompressPipelineReportAndDistill() throws {
        let recipe = directory.appendingPathComponent("cnn.yaml")
        let output = directory.appendingPathComponent("run")
        try """
        model: {name: digits-cnn}
        data: {name: digits, split: [0.7, 0.1, 0.2]}
        optimizer: {name: adamw, lr: 0.003}
        training: {steps: 40, batch_size: 32, eval_every: 20}
        seed: 1
        threads: 2
        output: \(output.path)
        compress:
          calibration_batches: 2
          stages:
            - {name: int8, method: quantize, scheme: int8, observer: mse}
            - {name: int4, method: quantize, scheme: int4, group_size: 32}
            - {name: qat, method: qat, steps: 3, lr: 0.0001, ranges: learned}
            - {name: half, method: prune, prune: structured, ratio: 0.5, steps: 2}
            - {name: sparse, method: prune, prune: global, sparsity: 0.8, gradual: true, steps: 6}
            - {name: small, method: distill, student: {channels: [4, 8], hidden: 16}, steps: 3, seeds: 2,
               augment: {shift: 1, horizontal_flip: true}}
        """.write(to: recipe, atomically: false, encoding: .utf8)
        let run = try runLathe(["compress", recipe.path])
        XCTAssertEqual(run.status, 0, run.err + run.out)
        let report = try String(contentsOf: output.appendingPathComponent("report.md"), encoding: .utf8)
        let rows = report.split(separator: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("| variant") }
        XCTAssertEqual(rows.map { $0.split(separator: "|")[0].trimmingCharacters(in: .whitespaces) },
                       ["baseline", "int8", "int4", "qat", "half", "sparse", "small", "small-no-kd"], report)
        // Columns: variant, parameters, non-zero, file bytes, smaller, accuracy, ...
        func cells(_ name: String) -> [String] {
            rows.first { $0.hasPrefix("| \(name) |") }.map { $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) } } ?? []
        }
        let base = cells("baseline"), int8 = cells("int8"), half = cells("half"), sparse = cells("sparse"), small = cells("small")
        XCTAssertEqual(base.count, 11, report)
        guard base.count == 11, int8.count == 11, half.count == 11, sparse.count == 11, small.count == 11 else { return }
        XCTAssertGreaterThan(Double(int8[4].dropLast())!, 3.5, "int8 file against fp32: \(report)")
        XCTAssertLessThan(Int(half[1])!, Int(base[1])! / 2, "structured pruning removes parameters")
        XCTAssertLessThan(Double(Int(sparse[2])!), 0.25 * Double(Int(sparse[1])!), "80% sparsity keeps the masks")
        XCTAssertLessThan(Int(small[1])! * 4, Int(base[1])!, "the student has under a quarter of the parameters")
        XCTAssertTrue(report.contains("mean test accuracy over 2 seeds"), report)
        XCTAssertTrue(report.contains("images shifted by up to 1 px and flipped"), report)
        let svg = try String(contentsOf: output.appendingPathComponent("pareto.svg"), encoding: .utf8)
        XCTAssertTrue(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
        XCTAssertEqual(svg.components(separatedBy: "<circle").count - 1, 8)

        // lathe report on two of the files, one of them a student (its model keys are in its metadata).
        let md = directory.appendingPathComponent("r/report.md")
        let variants = output.appendingPathComponent("variants")
        let rep = try runLathe(["report", recipe.path, "base=" + variants.appendingPathComponent("baseline.safetensors").path,
                                variants.appendingPathComponent("small.safetensors").path, "--output", md.path])
        XCTAssertEqual(rep.status, 0, rep.err)
        let text = try String(contentsOf: md, encoding: .utf8)
        XCTAssertTrue(text.contains("| base |") && text.contains("| small |"), text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory.appendingPathComponent("r/report.svg").path))

        let student = directory.appendingPathComponent("student.safetensors")
        let distill = try runLathe(["distill", recipe.path, "--teacher", variants.appendingPathComponent("baseline.safetensors").path,
                                    "--student", "model.hidden=16", "--steps", "3", "--augment-shift", "1", "--output", student.path])
        XCTAssertEqual(distill.status, 0, distill.err)
        XCTAssertTrue(distill.out.contains("with KD"), distill.out)
        let saved = try SafeTensors.read(contentsOf: student)
        XCTAssertEqual(saved.tensors["fc1.weight"]?.shape, [16, 256])
        XCTAssertTrue(saved.metadata["lathe.variant"]?.contains("images shifted by up to 1 px") == true, "\(saved.metadata)")

        // A wrong stage key names the stage and the key.
        try """
        training: {steps: 1}
        compress:
          stages:
            - {name: int8, method: quantize, sparsity: 0.5}
        """.write(to: recipe, atomically: false, encoding: .utf8)
        let bad = try runLathe(["compress", recipe.path])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("compress.stages[0].sparsity: not a key of quantize stages"), bad.err)
        XCTAssertThrowsError(try Recipe.parse("training: {steps: 1}\ncompress: {stages: [{name: s, method: distill, steps: 1, augment: {shfit: 1}}]}",
                                              file: "r.yaml")) { error in
            XCTAssertTrue("\(error)".hasPrefix("r.yaml: compress.stages[0].augment.shfit: unknown key"), "\(error)")
        }
    }
}
