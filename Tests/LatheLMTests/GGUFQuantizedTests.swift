import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// GGUF Q8_0, Q4_0, Q4_1, Q5_0 and K-quant matrices held as group-wise weights: lossless, so
/// their dequantisation equals ggml's value for value (a zero weight in a block with a negative
/// scale is -0 in ggml's `q * d` and +0 in Lathe's `fmaf(q, s, c)`: equal values, other bits).
/// Q4_K and Q5_K, whose ggml dequantisation rounds twice (`d sc u - dmin m`) where Lathe's
/// `fmaf` rounds once, agree to an ulp of the block's largest term.
final class GGUFQuantizedTests: XCTestCase {
    func check(_ file: GGUFFile, _ names: [String], file path: StaticString = #filePath, line: UInt = #line) throws {
        for name in names {
            let info = try XCTUnwrap(file.tensorInfo(named: name), name)
            let reference = try file.dequantized(named: name)
            let weights = try XCTUnwrap(try file.withTensorData(named: name) { GGUFGroupwise.weights(info, bytes: $0) }, "\(name) \(info.type)")
            XCTAssertEqual(weights.rows * weights.cols, reference.count)
            let got = weights.dequantized()
            let tolerance = [.q4_K, .q5_K].contains(info.type) ? reference.map(abs).max()! * 0x1p-22 : 0
            let bad = zip(got, reference).enumerated().filter { abs($0.element.0 - $0.element.1) > tolerance }
            XCTAssertTrue(bad.isEmpty, "\(name) \(info.type): \(bad.count) values differ, first at \(bad.first.map { "\($0.offset): \($0.element.0) vs \($0.element.1)" } ?? "")",
                          file: path, line: line)
            XCTAssertTrue(weights.supportsInt8Activations, name)
        }
    }

    func testFixtureBlocksAreLossless() throws {
        let file = try GGUFFile(contentsOf: fixturesDirectory.appendingPathComponent("gguf/all_types.gguf"))
        try check(file, ["blk.0.q4_0.weight", "blk.0.q4_1.weight", "blk.0.q5_0.weight", "blk.0.q8_0.weight", "blk.1.q4_k.weight",
                         "blk.1.q6_k.weight"])
        for name in ["blk.0.q5_1.weight", "blk.1.q3_k.weight", "blk.1.q5_k.weight" /* 3-D */, "f16"] {
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
        let k = gemma.tensors.filter { $0.type == .q4_K || $0.type == .q6_K }.map(\.name)
        XCTAssertEqual(k.count, 36)
        try check(gemma, Array(k.prefix(2)) + Array(k.suffix(2)))
    }

    /// Q5_K's codes, scales and mins (the fixture's Q5_K tensor is 3-D, so not a layer).
    func testQ5KGroupsGiveItsValues() throws {
        let file = try GGUFFile(contentsOf: fixturesDirectory.appendingPathComponent("gguf/all_types.gguf"))
        let reference = try file.dequantized(named: "blk.1.q5_k.weight")
        var codes = [UInt8](repeating: 0, count: 512), scales = [Float](repeating: 0, count: 16), mins = scales
        try file.withTensorData(named: "blk.1.q5_k.weight") { bytes in
            decodeKQuantGroups(.q5_K, bytes.baseAddress!, blocks: 2, codes: &codes, scales: &scales, mins: &mins)
        }
        XCTAssertEqual(codes.max(), 31)
        let got = (0..<512).map { mins[$0 / 32].addingProduct(Float(codes[$0]), scales[$0 / 32]) }
        let tolerance = reference.map(abs).max()! * 0x1p-22
        for i in 0..<512 { XCTAssertLessThanOrEqual(abs(got[i] - reference[i]), tolerance, "\(i)") }
    }
}
