import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// Calibrated int4 on the tiny random models of the fixtures (Llama with grouped-query
/// attention, Gemma 3 with sandwich norms stored as `weight - 1`).
final class CalibratedQuantizationTests: XCTestCase {
    func tiny(_ name: String) throws -> DecoderModel {
        try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/\(name)"))
    }

    func calibrationRows(_ model: DecoderModel, rows: Int, length: Int, seed: UInt64) -> [[Int]] {
        var g = RandomGenerator(seed: seed)
        let u = Tensor.uniform([rows, length], generator: &g).scalars
        return (0..<rows).map { r in (0..<length).map { min(model.vocabularySize - 1, Int(u[r * length + $0] * Float(model.vocabularySize))) } }
    }

    func testAWQFoldingLeavesTheFloatModelUnchanged() throws {
        for name in ["llama-tiny", "gemma3-tiny"] {
            let model = try tiny(name)
            let c = model.config
            let ids = calibrationRows(model, rows: 1, length: 12, seed: 1)[0]
            let before = model.logits(ids).scalars
            var g = RandomGenerator(seed: 2)
            for i in 0..<c.layers {
                func random(_ n: Int) -> [Float] { Tensor.uniform([n], low: 0.25, high: 4, generator: &g).scalars }
                let o = DecoderModel.tiedOverKeyValueHeads(random(c.heads * c.headDim), heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim)
                let fold = model.foldInputScales(layer: i, [random(c.hiddenSize), o, random(c.hiddenSize), random(c.intermediateSize)])
                XCTAssertEqual(fold.norms.count, 2)
                XCTAssertEqual(fold.valueRows.count, c.kvHeads * c.headDim)
            }
            let after = model.logits(ids).scalars
            let scale = before.map(abs).max()!
            XCTAssertGreaterThan(zip(before, after).map { abs($0 - $1) }.max()!, 0, "\(name): the weights did change")
            XCTAssertLessThan(zip(before, after).map { abs($0 - $1) }.max()!, 1e-5 * max(1, scale), "\(name): the folded model computes the same logits")
            XCTAssertNotEqual(c.normOffset == 0, name == "gemma3-tiny", "Gemma's folder norms are weight + 1")
        }
    }

    func testCalibratedQuantizationBeatsRoundToNearestOnItsCalibration() throws {
        for name in ["llama-tiny", "gemma3-tiny"] {
            for method in CalibratedQuantization.Method.allCases {
                let model = try tiny(name)
                let rows = calibrationRows(model, rows: 6, length: 32, seed: 3)
                let reference = try tiny(name).logits(rows[0]).scalars
                var lines: [String] = []
                let result = try model.quantizeWithCalibration(rows: rows, options: .init(method: method, symmetric: name == "llama-tiny")) { lines.append($0) }
                XCTAssertEqual(lines.count, model.config.layers)
                XCTAssertEqual(result.projections.count, 7 * model.config.layers)
                XCTAssertEqual(result.tokens, 6 * 32)
                XCTAssertEqual(result.changedTensors.count, method == .awq ? 2 * model.config.layers : 0)
                let error = result.projections.reduce(0) { $0 + $1.error }, rtn = result.projections.reduce(0) { $0 + $1.roundToNearestError }
                if method == .gptq {
                    XCTAssertLessThan(error, 0.9 * rtn, "\(name) \(method)")
                } else {
                    XCTAssertLessThan(error, 1.05 * rtn, "\(name) \(method)")
                }
                // The model now holds the quantized weights.
                let q = try XCTUnwrap(result.projections.first { $0.name == "model.layers.0.mlp.down_proj.weight" })
                let held = try XCTUnwrap(model.stateDict()["model.layers.0.mlp.down_proj.weight"]).scalars
                XCTAssertEqual(held, q.weights.dequantized())
                // ... and stays close to the float model.
                let logits = model.logits(rows[0]).scalars
                let diff = zip(logits, reference).map { abs($0 - $1) }.max()!, size = reference.map(abs).max()!
                XCTAssertLessThan(diff, 0.5 * size, "\(name) \(method)")
                XCTAssertGreaterThan(diff, 0, "\(name) \(method)")
            }
        }
    }

    func testCalibrationNeedsEnoughTextAndAFloatModel() throws {
        XCTAssertThrowsError(try CalibratedQuantization.rows(Array(0..<100), rows: 4, length: 32, bos: nil)) { e in
            XCTAssertTrue("\(e)".contains("100 tokens; 4 rows of 32 need 128"), "\(e)")
        }
        let rows = try CalibratedQuantization.rows(Array(0..<100), rows: 3, length: 32, bos: 7)
        XCTAssertEqual(rows.map(\.first), [7, 7, 7])
        XCTAssertEqual(rows[1][1], 33)
        let model = try tiny("llama-tiny")
        XCTAssertThrowsError(try model.quantizeWithCalibration(rows: [[1, 2, 3, 1000]], options: .init(method: .gptq, symmetric: true)))
    }
}

/// Calibrated GGUF files, from the tiny Llama written as an F32 GGUF file with a tokenizer.
extension GGUFExportTests {
    func testCalibratedQ4FilesHoldTheCalibratedBlocks() throws {
        let folder = try makeLlamaFolder()
        let source = temporary.appendingPathComponent("llama-f32.gguf")
        try GGUFExport.write(huggingFaceFolder: folder, to: source, rules: GGUFTypeRules(fileType: .f32))
        let text = String(repeating: "The quick brown fox jumps over the lazy dog; 12 cats sat on 3 mats. ", count: 40)
        for (fileType, method) in [(GGUFFileType.q4_0, CalibratedQuantization.Method.gptq), (.q4_1, .awq)] {
            let url = temporary.appendingPathComponent("llama-\(method.rawValue).gguf")
            let done = try CalibratedQuantization.convert(gguf: source, to: url, rules: GGUFTypeRules(fileType: fileType),
                                                          options: .init(method: method, symmetric: false), calibrationText: text, rows: 4, length: 32)
            let file = try GGUFFile(contentsOf: url)
            XCTAssertEqual(file.warnings, [])
            XCTAssertEqual(try file.int("general.file_type"), Int(fileType.id))
            XCTAssertEqual(done.result.projections.count, 14)
            // Every projection is written as the calibrated blocks, which ggml reads as its values.
            for p in done.result.projections {
                let name = try XCTUnwrap(GGUFExport.ggufName(huggingFace: p.name))
                XCTAssertEqual(file.tensorInfo(named: name)?.type, fileType.defaultType, name)
                XCTAssertEqual(p.weights.symmetric, fileType == .q4_0)
                XCTAssertEqual(Array(try file.tensorData(named: name)), p.weights.ggufBlocks(), name)
                let values = try file.dequantized(named: name), want = p.weights.dequantized()
                XCTAssertLessThan(zip(values, want).map { abs($0 - $1) }.max()!, 1e-6, name)
            }
            // AWQ's folded norms are written as they are.
            XCTAssertEqual(done.result.changedTensors.count, method == .awq ? 4 : 0)
            for (hf, values) in done.result.changedTensors {
                XCTAssertEqual(try file.dequantized(named: try XCTUnwrap(GGUFExport.ggufName(huggingFace: hf))), values, hf)
            }
            // The file loads and runs with its quantized layers.
            let model = try DecoderModel.load(gguf: file)
            XCTAssertTrue(model.logits([1, 17, 40, 5]).scalars.allSatisfy(\.isFinite))
        }
        XCTAssertThrowsError(try CalibratedQuantization.convert(gguf: source, to: temporary.appendingPathComponent("x.gguf"),
                                                                rules: GGUFTypeRules(fileType: .q4_0), options: .init(method: .gptq, symmetric: true),
                                                                calibrationText: "too short", rows: 4, length: 32)) {
            XCTAssertTrue("\($0)".contains("the calibration text has"), "\($0)")
        }
        XCTAssertThrowsError(try CalibratedQuantization.convert(gguf: source, to: temporary.appendingPathComponent("x.gguf"),
                                                                rules: GGUFTypeRules(fileType: .q8_0), options: .init(method: .gptq, symmetric: true),
                                                                calibrationText: text, rows: 4, length: 32)) {
            XCTAssertTrue("\($0)".contains("q4_0 or q4_1"), "\($0)")
        }
    }

    func testReplacedTensorsAreCheckedAndWritten() throws {
        let source = try GGUFFile(contentsOf: gpt2)
        let out = temporary.appendingPathComponent("replaced.gguf")
        let matrix = try XCTUnwrap(source.tensors.first { $0.dimensions.count == 2 && $0.name.hasPrefix("blk.0") && $0.dimensions[0] % 32 == 0 })
        let norm = try XCTUnwrap(source.tensors.first { $0.dimensions.count == 1 })
        let rows = matrix.elementCount / matrix.dimensions[0]
        let groups = Int4Groups(roundingToNearest: (0..<matrix.elementCount).map { Float($0 % 13) - 6 }, rows: rows, cols: matrix.dimensions[0], symmetric: true)
        let newNorm = (0..<norm.elementCount).map { Float($0) / 7 }
        let written = try source.requantize(to: out, rules: GGUFTypeRules(fileType: .q8_0),
                                            replacing: [matrix.name: .blocks(.q4_0, groups.ggufBlocks()), norm.name: .values(newNorm)])
        let file = try GGUFFile(contentsOf: out)
        XCTAssertEqual(file.tensorInfo(named: matrix.name)?.type, .q4_0, "the replacement's type, not the rules' Q8_0")
        XCTAssertEqual(Array(try file.tensorData(named: matrix.name)), groups.ggufBlocks())
        XCTAssertEqual(try file.dequantized(named: norm.name), newNorm)
        XCTAssertEqual(written.first { $0.name == matrix.name }?.copied, false)
        XCTAssertThrowsError(try source.requantize(to: out, rules: GGUFTypeRules(fileType: .q8_0), replacing: ["nope.weight": .values([1])])) {
            XCTAssertTrue("\($0)".contains("'nope.weight', which the file does not have"), "\($0)")
        }
        XCTAssertThrowsError(try source.requantize(to: out, rules: GGUFTypeRules(fileType: .q8_0), replacing: [matrix.name: .blocks(.q4_0, [1, 2, 3])])) {
            XCTAssertTrue("\($0)".contains("has 3 bytes"), "\($0)")
        }
        XCTAssertThrowsError(try source.requantize(to: out, rules: GGUFTypeRules(fileType: .q8_0), replacing: [norm.name: .values([1, 2])])) {
            XCTAssertTrue("\($0)".contains("has 2 values"), "\($0)")
        }
    }
}
