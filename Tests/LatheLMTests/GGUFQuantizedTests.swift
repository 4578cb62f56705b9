import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// GGUF Q8_0, Q4_0, Q4_1 and Q5_0 matrices held as group-wise weights: lossless, so their
/// dequantisation equals ggml's value for value (a zero weight in a block with a negative scale
/// is -0 in ggml's `q * d` and +0 in Lathe's `fmaf(q, s, c)`: equal values, other bits).
final class GGUFQuantizedTests: XCTestCase {
    func check(_ file: GGUFFile, _ names: [String], file path: StaticString = #filePath, line: UInt = #line) throws {
        for name in names {
            let info = try XCTUnwrap(file.tensorInfo(named: name), name)
            let reference = try file.dequantized(named: name)
            let weights = try XCTUnwrap(try file.withTensorData(named: name) { GGUFGroupwise.weights(info, bytes: $0) }, "\(name) \(info.type)")
            XCTAssertEqual(weights.rows * weights.cols, reference.count)
            let got = weights.dequantized()
            let bad = zip(got, reference).enumerated().filter { $0.element.0 != $0.element.1 }
            XCTAssertTrue(bad.isEmpty, "\(name) \(info.type): \(bad.count) values differ, first at \(bad.first.map { "\($0.offset): \($0.element.0) vs \($0.element.1)" } ?? "")",
                          file: path, line: line)
            XCTAssertTrue(weights.supportsInt8Activations, name)
        }
    }

    func testFixtureBlocksAreLossless() throws {
        let file = try GGUFFile(contentsOf: fixturesDirectory.appendingPathComponent("gguf/all_types.gguf"))
        try check(file, ["blk.0.q4_0.weight", "blk.0.q4_1.weight", "blk.0.q5_0.weight", "blk.0.q8_0.weight"])
        for name in ["blk.0.q5_1.weight", "blk.1.q4_k.weight", "f16"] {
            let info = try XCTUnwrap(file.tensorInfo(named: name))
            XCTAssertNil(try file.withTensorData(named: name) { GGUFGroupwise.weights(info, bytes: $0) }, "\(info.type) is not held this way")
        }
    }

    func testRealModelsBlocksAreLossless() throws {
        let smol = try GGUFFile(contentsOf: try fetchedModel("SmolLM2-135M-Instruct.Q4_1.gguf"))
        try check(smol, ["blk.0.attn_q.weight", "blk.29.ffn_down.weight", "token_embd.weight"])
        let gemma = try GGUFFile(contentsOf: try fetchedModel("gemma-3-270m-q4_k_m.gguf"))
        let q5 = gemma.tensors.filter { $0.type == .q5_0 }.map(\.name)
        XCTAssertFalse(q5.isEmpty)
        try check(gemma, Array(q5.prefix(3)))
    }
}
