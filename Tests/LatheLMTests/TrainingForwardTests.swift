import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// The differentiable decoder forward (`trainingLogits`) against the inference path and the
/// fixtures' transformers logits, packing with segment ids, and the causal-LM loss.
final class TrainingForwardTests: XCTestCase {
    func load(_ name: String) throws -> DecoderModel {
        try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/\(name)"))
    }

    func prompt(_ name: String) throws -> (ids: [Int], logits: [Float]) {
        let json = try JSONParser.parse([UInt8](Data(contentsOf: fixturesDirectory.appendingPathComponent("llm/\(name)/expected.json"))))
        let ids = json["prompt"]?.arrayValue?.compactMap(\.intValue) ?? []
        let decode = json["decode"]?.arrayValue?.compactMap(\.intValue) ?? []
        let rows = json["prompt_logits"]?.arrayValue?.flatMap { $0.arrayValue?.compactMap { $0.doubleValue.map(Float.init) } ?? [] } ?? []
        return (ids + decode, rows)
    }

    func maxAbs(_ a: [Float], _ b: [Float]) -> Float {
        XCTAssertEqual(a.count, b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
    }

    /// Two rows (the fixture's sequence and the same reversed) against the cached inference
    /// path row by row (1e-5) and transformers' prompt logits (1e-4).
    func testMatchesInferenceOnEveryFamily() throws {
        for name in ["llama-tiny", "llama3-tiny", "qwen2-tiny", "qwen3-tiny", "mistral-tiny", "gemma2-tiny", "gemma3-tiny"] {
            let model = try load(name)
            let (ids, expected) = try prompt(name)
            XCTAssertEqual(ids.count, 11)
            let rows = [ids, ids.reversed()]
            let logits = try model.trainingLogits(Tensor(rows.flatMap { $0 }, shape: [2, ids.count]))
            XCTAssertEqual(logits.shape, [2, ids.count, model.vocabularySize])
            XCTAssertTrue(logits.requiresGrad, "the graph is recorded (the loaded parameters take gradients)")
            for (r, row) in rows.enumerated() {
                let inference = model.logits(row).scalars
                let training = logits.sliced(dim: 0, start: r, end: r + 1).scalars
                XCTAssertLessThan(maxAbs(training, inference), 1e-5, "\(name) row \(r)")
            }
            let v = model.vocabularySize
            let first = Array(logits.scalars.prefix(7 * v))
            XCTAssertLessThan(maxAbs(first, expected), 1e-4, "\(name) against transformers")
        }
    }

    /// Two sequences packed into one row with segment ids give each sequence's own logits.
    func testPackedSegmentsDoNotAttendToEachOther() throws {
        for name in ["llama-tiny", "gemma3-tiny"] {
            let model = try load(name)
            let (ids, _) = try prompt(name)
            let a = Array(ids.prefix(6)), b = Array(ids.suffix(5))
            let packed = try model.trainingLogits(Tensor(a + b, shape: [1, 11]), segmentIDs: Tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1], shape: [1, 11]))
            let v = model.vocabularySize
            XCTAssertLessThan(maxAbs(Array(packed.scalars.prefix(6 * v)), model.logits(a).scalars), 1e-5, name)
            XCTAssertLessThan(maxAbs(Array(packed.scalars.suffix(5 * v)), model.logits(b).scalars), 1e-5, name)
            // Without segments the second sequence sees the first: different logits.
            let unpacked = try model.trainingLogits(Tensor(a + b, shape: [1, 11]))
            XCTAssertGreaterThan(maxAbs(Array(unpacked.scalars.suffix(5 * v)), model.logits(b).scalars), 1e-3, name)
        }
    }

    /// The loss is transformers' (shifted, -100 ignored): recomputed from the logits by hand.
    func testLossShiftsAndIgnores() throws {
        let model = try load("llama-tiny")
        let (ids, _) = try prompt("llama-tiny")
        let labels = [-100, -100] + Array(ids.dropFirst(2).dropLast(2)) + [-100, -100]
        let x = Tensor(ids, shape: [1, ids.count])
        let loss = try model.loss(x, labels: Tensor(labels, shape: [1, ids.count])).item
        let logits = try model.trainingLogits(x).reshaped([ids.count, model.vocabularySize]).logSoftmax(dim: -1).scalars
        var sum: Double = 0, n = 0
        for t in 0..<(ids.count - 1) where labels[t + 1] != -100 {
            sum -= Double(logits[t * model.vocabularySize + labels[t + 1]]); n += 1
        }
        XCTAssertEqual(n, 7)
        XCTAssertEqual(Double(loss), sum / Double(n), accuracy: 1e-5)
    }

    func testBadInputIsAClearError() throws {
        let model = try load("llama-tiny")
        func message(_ body: () throws -> Tensor) -> String {
            do { _ = try body(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertTrue(message { try model.trainingLogits(Tensor([1, 2, 3], shape: [3])) }.contains("ids must be [B, T]"))
        XCTAssertTrue(message { try model.trainingLogits(Tensor([1, 96], shape: [1, 2])) }.contains("token id 96 is outside the vocabulary"))
        XCTAssertTrue(message { try model.trainingLogits(Tensor([1, 2], shape: [1, 2]), segmentIDs: Tensor([0], shape: [1, 1])) }.contains("segment ids"))
        let x = Tensor([1, 2, 3], shape: [1, 3])
        XCTAssertTrue(message { try model.loss(x, labels: Tensor([5, -100, -100], shape: [1, 3])) }.contains("nothing to predict"))
        XCTAssertTrue(message { try model.loss(x, labels: Tensor([5, 200, 1], shape: [1, 3])) }.contains("label 200"))
    }

    /// The rotary op in both layouts against finite differences.
    func testRotaryGradients() throws {
        for layout in [RopeLayout.halves, .pairs] {
            let rotary = Rotary(headDim: 4, base: 100, layout: layout)
            let (c, s) = rotary.tables(positions: nil, rows: 1, length: 3)
            var g = RandomGenerator(seed: 3)
            let x = Tensor.normal([1, 2, 3, 4], generator: &g)
            assertGradientsMatchFiniteDifferences([x], "\(layout)") { rotary.applied(to: $0[0], cos: c, sin: s) }
            // And the values of the in-place rotation used by inference.
            var flat = x.permuted([0, 2, 1, 3]).contiguous().scalars
            flat.withUnsafeMutableBufferPointer { rotary.apply($0.baseAddress!, rows: 3, heads: 2, start: 0) }
            let ours = rotary.applied(to: x, cos: c, sin: s).permuted([0, 2, 1, 3]).contiguous().scalars
            XCTAssertLessThan(maxAbs(ours, flat), 1e-6, "\(layout)")
        }
    }
}
