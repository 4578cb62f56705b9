import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// The compression pipeline as a library: stage outcomes, the whole `compress:` run, the report
/// and the Pareto front, typed stage names (`lathe compress`'s printing: LatheCLITests).
final class CompressPipelineTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = try temporaryDirectory(name)
    }

    /// The digits MLP trained for a few steps, and a run of stages from its weights.
    func trainedMLP() throws -> CompressionRun {
        let source = RecipeSource(text: """
            model: {name: digits-mlp}
            data: {name: digits, split: [0.8, 0.1, 0.1]}
            optimizer: {name: adamw, lr: 0.003}
            schedule: {name: cosine, warmup_steps: 2}
            training: {steps: 30, batch_size: 32, eval_every: 10}
            seed: 3
            threads: 2
            output: \(directory.appendingPathComponent("run").path)
            """, file: "mlp.yaml")
        let recipe = try source.recipe()
        let trainer = try Trainer(recipe: recipe)
        try trainer.run()
        return CompressionRun(source: source, recipe: recipe, task: trainer.task, baseline: trainer.model.stateDict(), directory: directory,
                              calibrationBatches: 2)
    }

    func testQuantizeAndPruneOutcomes() throws {
        let run = try trainedMLP()
        for scheme in [QuantizeScheme.int8Dynamic, .int4] {
            var stage = CompressSpec.Stage(name: "q", method: .quantize)
            (stage.scheme, stage.groupSize) = (scheme, 32)
            let o = try run.quantizeModel(stage)
            XCTAssertEqual(o.layers, ["0", "2", "4"], "\(scheme)")
            XCTAssertGreaterThan(o.fp32.accuracy!, 0.3, "a few steps already beat chance")
            XCTAssertLessThan(abs(o.fp32.accuracy! - o.quantized.accuracy!), 0.05, "\(scheme)")
            XCTAssertNil(o.qat)
            // The file holds what was evaluated.
            let url = directory.appendingPathComponent("q-\(scheme.rawValue).safetensors")
            try QuantizedModelFile.save(o.trainer.model, to: url, metadata: run.metadata(o.description))
            let fresh = try run.trainer()
            try QuantizedModelFile.load(into: fresh.model, from: url)
            XCTAssertEqual(fresh.evaluate(.test), o.quantized)
        }

        var magnitude = CompressSpec.Stage(name: "p", method: .prune)
        (magnitude.prune, magnitude.sparsity, magnitude.steps) = (.magnitude, 0.5, 2)
        let m = try run.pruneModel(magnitude)
        XCTAssertNotNil(m.tuned)
        XCTAssertNil(m.structured)
        let counts = weightCounts(m.trainer.model)
        let zeros = m.trainer.model.stateDict()["0.weight"]!.scalars.filter { $0 == 0 }.count
        XCTAssertEqual(Double(zeros) / Double(64 * 128), 0.5, accuracy: 0.01, "masks kept through fine-tuning")
        XCTAssertLessThan(Double(counts.nonZero), 0.6 * Double(counts.total))

        var structured = CompressSpec.Stage(name: "s", method: .prune)
        (structured.prune, structured.ratio, structured.steps) = (.structured, 0.5, 2)
        let s = try run.pruneModel(structured)
        let result = try XCTUnwrap(s.structured)
        XCTAssertLessThan(Double(result.parametersAfter), 0.7 * Double(result.parametersBefore))
        XCTAssertEqual(s.metadata[VariantMetadata.structured], "1")
        let mlp = Models.digitsMLP()
        try loadPrunedStateDict(s.trainer.model.stateDict(), into: mlp)
        XCTAssertEqual(mlp.parameterCount(), result.parametersAfter)
    }

    func testWholePipelineReportAndStudents() throws {
        let output = directory.appendingPathComponent("run")
        let source = RecipeSource(text: """
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
            """, file: "cnn.yaml")
        let recipe = try source.recipe()
        var lines: [String] = []
        let result = try CompressPipeline.run(source: source, recipe: recipe) { lines.append($0) }
        let rows = Dictionary(uniqueKeysWithValues: result.rows.map { ($0.name, $0) })
        XCTAssertEqual(result.rows.map(\.name), ["baseline", "int8", "int4", "qat", "half", "sparse", "small", "small-no-kd"])
        XCTAssertEqual(result.stages.map(\.stage.method), [.quantize, .quantize, .qat, .prune, .prune, .distill])
        let base = try XCTUnwrap(rows["baseline"])
        XCTAssertEqual(base.evaluation, result.baseline)
        XCTAssertGreaterThan(Double(base.fileBytes) / Double(rows["int8"]!.fileBytes), 3.5, "int8 file against fp32")
        XCTAssertLessThan(rows["half"]!.parameters, base.parameters / 2, "structured pruning removes parameters")
        XCTAssertLessThan(Double(rows["sparse"]!.nonZero), 0.25 * Double(rows["sparse"]!.parameters), "80% sparsity keeps the masks")
        XCTAssertLessThan(rows["small"]!.parameters * 4, base.parameters, "the student has under a quarter of the parameters")
        for r in result.rows { XCTAssertGreaterThan(r.latency1, 0, r.name); XCTAssertGreaterThan(r.latency64, 0, r.name) }
        let distillation = try XCTUnwrap(result.stages.last?.output.distillation)
        XCTAssertEqual(distillation.kd.count, 2)
        XCTAssertEqual(distillation.plain.count, 2)
        XCTAssertEqual(distillation.studentParameters, rows["small"]!.parameters)
        XCTAssertTrue(lines.contains { $0.hasPrefix("stage small (distill)") }, "\(lines)")

        let report = try String(contentsOf: result.report, encoding: .utf8)
        XCTAssertEqual(report, reportMarkdown(result.rows, title: "digits-cnn on digits: compression variants", split: "test",
                                              threads: ThreadPool.threadCount, notes: result.stages.flatMap(\.output.notes), svgName: "pareto.svg"))
        XCTAssertTrue(rows["small"]!.description.contains("images shifted by up to 1 px and flipped"), rows["small"]!.description)
        let svg = try String(contentsOf: result.chart, encoding: .utf8)
        XCTAssertEqual(svg.components(separatedBy: "<circle").count - 1, 8)

        // A variant file loads into the recipe's model again (a student: its model keys are in its metadata).
        let variants = output.appendingPathComponent("variants")
        let again = try measureVariants([VariantFile(name: "student", url: variants.appendingPathComponent("small.safetensors"))],
                                        recipe: recipe, source: source, task: try Trainer(recipe: recipe).task)
        XCTAssertEqual(again.first?.parameters, rows["small"]!.parameters)
        XCTAssertEqual(again.first?.evaluation, rows["small"]!.evaluation)

        // Stage selection.
        XCTAssertEqual(try CompressPipeline.select(recipe.compress!.stages, only: ["qat", "int8"], file: "f").map(\.name), ["int8", "qat"])
        XCTAssertThrowsError(try CompressPipeline.select(recipe.compress!.stages, only: ["int9"], file: "f")) { error in
            XCTAssertEqual("\(error)", "--only: f has no stage 'int9' (stages: int8, int4, qat, half, sparse, small)")
        }
    }

    func testParetoFrontAndReportColumns() {
        func row(_ name: String, bytes: Int, accuracy: Double, latency: Double) -> VariantRow {
            VariantRow(name: name, description: "", parameters: 10, nonZero: 5, fileBytes: bytes,
                       evaluation: Evaluation(loss: 0.1, accuracy: accuracy, count: 100), latency1: latency, latency64: 2 * latency)
        }
        let rows = [row("base", bytes: 4000, accuracy: 0.95, latency: 2), row("int8", bytes: 1000, accuracy: 0.94, latency: 1),
                    row("bad", bytes: 2000, accuracy: 0.90, latency: 1), row("int4", bytes: 500, accuracy: 0.80, latency: 4)]
        XCTAssertEqual(paretoFront(rows).map(\.name), ["int4", "int8", "base"])
        let md = reportMarkdown(rows, title: "t", split: "test", threads: 2, notes: ["a note"], svgName: nil)
        XCTAssertTrue(md.contains("| int8 | 10 | 5 | 1000 | 4.00x | 94.00% | -1.00 | 1.000 | 2.000 | 2.00x | 2.00x |"), md)
        XCTAssertTrue(md.contains("- a note"), md)
        XCTAssertFalse(md.contains("!["), "no chart named, no image link")
    }

    /// Stage methods and their choices are typed: a typo is an error naming the key and the choices.
    func testStageNamesAreChecked() {
        func parseError(_ stage: String) -> String {
            do {
                _ = try Recipe.parse("training: {steps: 1}\ncompress: {stages: [\(stage)]}", file: "r.yaml")
                return "no error"
            } catch { return "\(error)" }
        }
        XCTAssertEqual(parseError("{name: a, method: quantise}"),
                       "r.yaml: compress.stages[0].method: 'quantise' is not one of quantize, qat, prune, distill")
        XCTAssertEqual(parseError("{name: a, method: prune, prune: golbal}"),
                       "r.yaml: compress.stages[0].prune: 'golbal' is not one of magnitude, global, structured, 2:4")
        XCTAssertTrue(parseError("{name: a, method: quantize, sparsity: 0.5}").hasPrefix("r.yaml: compress.stages[0].sparsity: not a key of quantize stages"))
        XCTAssertTrue(parseError("{name: s, method: distill, steps: 1, augment: {shfit: 1}}").hasPrefix("r.yaml: compress.stages[0].augment.shfit: unknown key"))
        XCTAssertEqual(try Recipe.parse("training: {steps: 1}\ncompress: {stages: [{name: a, method: quantize, scheme: int8-weight}]}").compress?.stages.first?.scheme, .int8Weight)
    }
}
