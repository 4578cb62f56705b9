import Foundation
import LatheIO
import XCTest
import _LatheTestSupport

/// GGML block encoders: byte-identical to gguf-py's `gguf.quants.quantize` and to ggml's own
/// encoder (`ggml_quantize_chunk`, what llama-quantize calls) on the awkward rows of
/// Tests/Fixtures/gguf/quantize.json (Tools/reference/make_gguf_quant_fixtures.py), and the C
/// kernels byte-identical to their naive Swift twin on random data.
final class GGUFQuantizeTests: XCTestCase {
    struct Fixture {
        var rows: [(name: String, values: [Float])]
        var expected: [String: [String: [UInt8]]]
        var oracle: [String: String]
        /// (type, row) -> gguf-py's bytes where they differ from ggml's.
        var ggufPy: [String: [UInt8]]
    }

    static func hexBytes(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count / 2)
        var it = s.utf8.makeIterator()
        func nibble(_ c: UInt8) -> UInt8 { c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10 }
        while let a = it.next(), let b = it.next() { out.append(nibble(a) << 4 | nibble(b)) }
        return out
    }

    func loadFixture() throws -> Fixture {
        let url = fixturesDirectory.appendingPathComponent("gguf/quantize.json")
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let rows = try XCTUnwrap(root["rows"] as? [[String: Any]]).map { r -> (String, [Float]) in
            let bytes = Self.hexBytes(r["values"] as! String)
            let floats = stride(from: 0, to: bytes.count, by: 4).map {
                Float(bitPattern: UInt32(bytes[$0]) | UInt32(bytes[$0 + 1]) << 8 | UInt32(bytes[$0 + 2]) << 16 | UInt32(bytes[$0 + 3]) << 24)
            }
            return (r["name"] as! String, floats)
        }
        let expected = try XCTUnwrap(root["expected"] as? [String: [String: String]]).mapValues { $0.mapValues(Self.hexBytes) }
        var py: [String: [UInt8]] = [:]
        for d in (root["disagreements"] as? [[String: String]]) ?? [] {
            py["\(d["type"]!) \(d["row"]!)"] = Self.hexBytes(d["gguf_py"]!)
        }
        return Fixture(rows: rows, expected: expected, oracle: root["oracle"] as? [String: String] ?? [:], ggufPy: py)
    }

    func type(named name: String) throws -> GGMLType {
        try XCTUnwrap(GGMLType.allCases.first { $0.name == name }, name)
    }

    /// Every type and row of the fixture: the C kernel and the Swift twin write the expected bytes.
    func testFixtureBlocksByteIdentical() throws {
        let f = try loadFixture()
        XCTAssertGreaterThanOrEqual(f.rows.count, 15)
        // The legacy types and F16/BF16 always; the K-quants when the fixture was made with ggml.
        for name in ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"] { XCTAssertNotNil(f.expected[name], name) }
        for (typeName, perRow) in f.expected.sorted(by: { $0.key < $1.key }) {
            let t = try type(named: typeName)
            for (rowName, values) in f.rows {
                let want = try XCTUnwrap(perRow[rowName], "\(typeName) \(rowName)")
                let c = t.quantized(values)
                XCTAssertEqual(c.count, want.count, "\(typeName) \(rowName)")
                if let i = firstDifference(c, want) {
                    XCTFail("\(typeName) \(rowName): C kernel differs from \(f.oracle[typeName] ?? "?") at byte \(i) of \(want.count)")
                }
                let swift = try XCTUnwrap(GGMLQuantizeReference.quantize(t, values))
                if let i = firstDifference(swift, want) {
                    XCTFail("\(typeName) \(rowName): Swift twin differs from \(f.oracle[typeName] ?? "?") at byte \(i)")
                }
            }
        }
        XCTAssertNotNil(f.expected["Q4_K"], "the fixture has no K-quant cases: regenerate it with llama.cpp's libggml-base")
    }

    /// gguf-py and ggml agree on every row but the block of negative zeros, where ggml's Q4_0 and
    /// Q5_0 scale is -0 (its running max starts at +0) and gguf-py's +0 (it divides the first
    /// element, -0, by -8). Lathe follows ggml; the one differing byte is the scale's sign.
    func testGGUFPyDiffersOnlyOnNegativeZeroScale() throws {
        let f = try loadFixture()
        XCTAssertEqual(Set(f.ggufPy.keys), ["Q4_0 negative_zeros", "Q5_0 negative_zeros"])
        for (key, py) in f.ggufPy {
            let parts = key.split(separator: " ")
            let ggml = try XCTUnwrap(f.expected[String(parts[0])]?[String(parts[1])])
            let diff = zip(py, ggml).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
            XCTAssertEqual(diff, [1], key)  // the high byte of the first block's fp16 scale
            XCTAssertEqual(ggml[1], 0x80, key)
            XCTAssertEqual(py[1], 0x00, key)
        }
    }

    /// The C kernels against the Swift twin on many random rows of transformer-like and
    /// heavy-tailed values, several rows at once (the multithreaded path).
    func testKernelsMatchNaiveTwin() throws {
        var rng = SplitMix(seed: 42)
        for t in GGMLType.quantizable {
            let rowLength = t.blockSize == 256 ? 512 : 96
            let rows = t.blockSize == 256 ? 40 : 300
            var values = [Float](repeating: 0, count: rowLength * rows)
            for i in values.indices {
                let g = rng.normal()
                values[i] = (i / rowLength) % 3 == 0 ? g * 0.02 : (i / rowLength) % 3 == 1 ? g * g * g : g * Float(1 + i % 7)
            }
            let c = t.quantized(values, rowLength: rowLength)
            var swift: [UInt8] = []
            for r in 0..<rows { swift += GGMLQuantizeReference.quantize(t, Array(values[r * rowLength..<(r + 1) * rowLength]))! }
            XCTAssertEqual(c.count, swift.count, t.name)
            if let i = firstDifference(c, swift) { XCTFail("\(t.name): C and Swift differ at byte \(i)") }
            // Dequantising gives values near the input (every type Lathe writes it also reads).
            let back = c.withUnsafeBytes { t.dequantized($0, count: values.count) }
            var worst: Float = 0
            for r in 0..<rows {
                let row = values[r * rowLength..<(r + 1) * rowLength]
                let scale = row.map { abs($0) }.max()!
                for i in row.indices { worst = max(worst, abs(back[i] - values[i]) / scale) }
            }
            let bound: Float = [.q4_0: 0.13, .q4_1: 0.07, .q4_K: 0.13, .q5_0: 0.07, .q5_1: 0.04, .q5_K: 0.07][t] ?? 0.02
            XCTAssertLessThan(worst, bound, "\(t.name): largest error relative to the row's max")
        }
    }

    func testQuantizableTypes() {
        XCTAssertEqual(GGMLType.quantizable.map(\.name), ["F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "BF16"])
        XCTAssertFalse(GGMLType.q2_K.isQuantizable)
    }
}

/// The first index where `a` and `b` differ (or the shorter length if one is a prefix).
func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int? {
    if let i = a.indices.first(where: { $0 < b.count && a[$0] != b[$0] }) { return i }
    return a.count == b.count ? nil : min(a.count, b.count)
}

/// A small deterministic generator for test data.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
    mutating func normal() -> Float {
        let u = max(uniform(), 1e-7), v = uniform()
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }
}
