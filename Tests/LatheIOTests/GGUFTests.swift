import Foundation
import LatheIO
import LatheTensor
import XCTest
import _LatheTestSupport

/// GGUF files: the gguf-py fixtures (Tools/reference/make_gguf_fixtures.py) read back exactly, and
/// every malformed-file case of docs/llm/gguf-and-llamacpp.md §5.2 that applies to a file reader
/// rejected with a `GGUFError` that names the file and the problem.
///
/// Dequantised values are compared bit for bit with gguf-py's `dequantize`: Lathe does the same
/// float32 operations in the same order (ggml's `dequantize_row_*`), so no tolerance is needed.
final class GGUFTests: XCTestCase {
    static let directory = fixturesDirectory.appendingPathComponent("gguf")

    func fixtureURL(_ name: String) -> URL { Self.directory.appendingPathComponent(name) }
    func fixtureBytes(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: fixtureURL(name))) }

    // MARK: - Fixtures against gguf-py

    func loadExpected() throws -> [String: [String: Any]] {
        let data = try Data(contentsOf: fixtureURL("expected.json"))
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try XCTUnwrap(root["files"] as? [String: [String: Any]])
    }

    /// A value of expected.json (integers as decimal strings, floats as bit patterns in hex).
    func expectedValue(_ type: String, _ json: Any) throws -> GGUFValue {
        if type.hasPrefix("arr[") {
            return .array(try expectedArray(String(type.dropFirst(4).dropLast()), try XCTUnwrap(json as? [Any])))
        }
        let text = json as? String ?? ""
        func int<T: FixedWidthInteger>(_: T.Type) throws -> T { try XCTUnwrap(T(text), "\(type) \(text)") }
        func bits<T: FixedWidthInteger>(_: T.Type) throws -> T { try XCTUnwrap(T(text.dropFirst(2), radix: 16), text) }
        switch type {
        case "u8": return .uint8(try int(UInt8.self))
        case "i8": return .int8(try int(Int8.self))
        case "u16": return .uint16(try int(UInt16.self))
        case "i16": return .int16(try int(Int16.self))
        case "u32": return .uint32(try int(UInt32.self))
        case "i32": return .int32(try int(Int32.self))
        case "u64": return .uint64(try int(UInt64.self))
        case "i64": return .int64(try int(Int64.self))
        case "f32": return .float32(Float(bitPattern: try bits(UInt32.self)))
        case "f64": return .float64(Double(bitPattern: try bits(UInt64.self)))
        case "bool": return .bool(try XCTUnwrap(json as? Bool))
        case "str": return .string(try XCTUnwrap(json as? String))
        default: throw FixtureError.malformed("type \(type)")
        }
    }

    func expectedArray(_ elementType: String, _ items: [Any]) throws -> GGUFArray {
        if elementType.hasPrefix("arr[") {
            let inner = String(elementType.dropFirst(4).dropLast())
            return .array(try items.map { try expectedArray(inner, try XCTUnwrap($0 as? [Any])) })
        }
        let values = try items.map { try expectedValue(elementType, $0) }
        switch elementType {
        case "u8": return .uint8(values.map { if case .uint8(let v) = $0 { v } else { 0 } })
        case "i8": return .int8(values.map { if case .int8(let v) = $0 { v } else { 0 } })
        case "u16": return .uint16(values.map { if case .uint16(let v) = $0 { v } else { 0 } })
        case "i16": return .int16(values.map { if case .int16(let v) = $0 { v } else { 0 } })
        case "u32": return .uint32(values.map { if case .uint32(let v) = $0 { v } else { 0 } })
        case "i32": return .int32(values.map { if case .int32(let v) = $0 { v } else { 0 } })
        case "u64": return .uint64(values.map { if case .uint64(let v) = $0 { v } else { 0 } })
        case "i64": return .int64(values.map { if case .int64(let v) = $0 { v } else { 0 } })
        case "f32": return .float32(values.map { if case .float32(let v) = $0 { v } else { 0 } })
        case "f64": return .float64(values.map { if case .float64(let v) = $0 { v } else { 0 } })
        case "bool": return .bool(values.map { $0.boolValue ?? false })
        case "str": return .string(values.map { $0.stringValue ?? "" })
        default: throw FixtureError.malformed("element type \(elementType)")
        }
    }

    /// Checks one file against its expected.json entry: header, metadata (order, types, values),
    /// tensor descriptions and dequantised bits (through `dequantized(named:)` and `tensor(named:)`).
    func checkFixture(_ file: GGUFFile, _ e: [String: Any], name: String) throws {
        XCTAssertEqual(Int(file.version), e["version"] as? Int, name)
        XCTAssertEqual(file.alignment, e["alignment"] as? Int, name)
        XCTAssertEqual(file.dataOffset, e["data_offset"] as? Int, name)
        XCTAssertEqual(file.fileSize, e["file_size"] as? Int, name)
        XCTAssertEqual(file.warnings, [], name)

        let meta = try XCTUnwrap(e["metadata"] as? [[String: Any]])
        XCTAssertEqual(file.keys, meta.map { $0["key"] as? String ?? "" }, "keys in file order")
        for (kv, m) in zip(file.metadata, meta) {
            let type = try XCTUnwrap(m["type"] as? String)
            let want = try expectedValue(type, m["value"] as Any)
            XCTAssertEqual(kv.value.typeName, type, kv.key)
            XCTAssertEqual(kv.value, want, kv.key)
        }

        let tensors = try XCTUnwrap(e["tensors"] as? [[String: Any]])
        XCTAssertEqual(file.tensorNames, tensors.map { $0["name"] as? String ?? "" }, "tensors in file order")
        for t in tensors {
            let tname = try XCTUnwrap(t["name"] as? String)
            let info = try XCTUnwrap(file.tensorInfo(named: tname), tname)
            XCTAssertEqual(info.type.name, t["type"] as? String, tname)
            XCTAssertEqual(Int(info.type.rawValue), t["type_id"] as? Int, tname)
            XCTAssertEqual(info.dimensions, t["ne"] as? [Int], tname)
            XCTAssertEqual(info.shape, t["shape"] as? [Int], tname)
            XCTAssertEqual(info.offset, t["offset"] as? Int, tname)
            XCTAssertEqual(info.byteCount, t["n_bytes"] as? Int, tname)
            XCTAssertEqual(info.elementCount, info.shape.reduce(1, *), tname)
            XCTAssertEqual(try file.tensorData(named: tname).count, info.byteCount, tname)
            guard let bits = (t["bits"] as? [NSNumber])?.map(\.uint32Value) else {
                XCTAssertFalse(info.type.isDequantizable, tname)
                assertError(try file.tensor(named: tname), contains: [name, "'\(tname)'", info.type.name, "cannot convert"]) {
                    $0 == .unsupportedType(path: file.path, tensor: tname, type: info.type)
                }
                assertError(try file.dequantized(named: tname), contains: [info.type.name]) {
                    if case .unsupportedType = $0 { true } else { false }
                }
                continue
            }
            let values = try file.dequantized(named: tname)
            XCTAssertEqual(values.count, bits.count, tname)
            let mismatches = zip(values, bits).enumerated().filter { $0.element.0.bitPattern != $0.element.1 }
            if let (k, (got, want)) = mismatches.first {
                XCTFail("\(name) \(tname) (\(info.type.name)): \(mismatches.count) of \(bits.count) values differ from gguf-py; "
                        + "first at flat index \(k): \(got) (0x\(String(got.bitPattern, radix: 16))) vs \(Float(bitPattern: want)) "
                        + "(0x\(String(want, radix: 16)))")
            }
            let tensor = try file.tensor(named: tname)
            XCTAssertEqual(tensor.shape, info.shape, tname)
            XCTAssertEqual(tensor.dtype, .float32, tname)
            XCTAssertEqual(tensor.scalars.map(\.bitPattern), bits, tname)
        }
    }

    func testReadsGGUFPyFixturesExactly() throws {
        let expected = try loadExpected()
        XCTAssertEqual(Set(expected.keys), ["all_types.gguf", "align64.gguf"])
        for (name, e) in expected.sorted(by: { $0.key < $1.key }) {
            let mapped = try GGUFFile(contentsOf: fixtureURL(name))
            XCTAssertEqual(mapped.path, fixtureURL(name).path)
            try checkFixture(mapped, e, name: name)
            // The same bytes from memory give the same file.
            let copy = try GGUFFile(bytes: try fixtureBytes(name), path: name)
            try checkFixture(copy, e, name: name)
        }
    }

    func testEveryDequantizableTypeIsCovered() throws {
        let file = try GGUFFile(contentsOf: fixtureURL("all_types.gguf"))
        XCTAssertEqual(Set(file.tensors.map(\.type).filter(\.isDequantizable)), Set(GGMLType.dequantizable))
        XCTAssertEqual(GGMLType.dequantizable.map(\.name),
                       ["F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "BF16"])
        // Spot checks that do not depend on gguf-py: the f16 specials and the all-zero Q4_0 block.
        let f16 = try file.dequantized(named: "f16")
        XCTAssertEqual(Array(f16[0..<6].map(\.bitPattern)),
                       [Float(5.9604645e-08), -5.9604645e-08, 65504, -0.0, .infinity, -.infinity].map(\.bitPattern))
        XCTAssertEqual(f16[6].bitPattern, 0x7FC0_0000)
        XCTAssertEqual(f16[7], 0x1p-24)
        XCTAssertEqual(f16[8], 0x3FFp-24)
        let q4 = try file.tensor(named: "blk.0.q4_0.weight")
        XCTAssertEqual(Array(q4.scalars[64..<96]), [Float](repeating: 0, count: 32), "all-zero block (d = 0)")
        XCTAssertEqual(try file.tensor(named: "blk.1.q5_k.weight").shape, [2, 1, 256])
        XCTAssertEqual(try file.tensor(named: "f32.4d").shape, [2, 3, 4, 5])
        XCTAssertEqual(file.tensorInfo(named: "f32.4d")?.dimensions, [5, 4, 3, 2])
    }

    func testHalfToFloatIsExactForEveryBitPattern() throws {
        // F16 tensors of all 65,536 bit patterns against the platform's Float16 where it has one.
        #if !(os(macOS) && arch(x86_64))
        var b = GGUFBuilder()
        b.tensor("all", dims: [65536], type: 1, offset: 0)
        b.data = (0..<65536).flatMap { le(UInt16($0)) }
        let file = try GGUFFile(bytes: b.bytes(), path: "f16.gguf")
        let values = try file.dequantized(named: "all")
        for h in 0..<65536 {
            let want = Float(Float16(bitPattern: UInt16(h)))
            if want.isNaN {
                XCTAssertTrue(values[h].isNaN, "0x\(String(h, radix: 16))")
                XCTAssertEqual((values[h].bitPattern & 0x007F_FFFF) >> 13, UInt32(h & 0x3FF), "payload of 0x\(String(h, radix: 16)) kept")
            } else {
                XCTAssertEqual(values[h].bitPattern, want.bitPattern, "0x\(String(h, radix: 16))")
            }
        }
        #endif
    }

    func testTypeTable() {
        // Block sizes and bytes as gguf-py's GGML_QUANT_SIZES (0.19).
        let sizes: [GGMLType: (Int, Int)] = [
            .f32: (1, 4), .f16: (1, 2), .q4_0: (32, 18), .q4_1: (32, 20), .q5_0: (32, 22), .q5_1: (32, 24),
            .q8_0: (32, 34), .q8_1: (32, 36), .q2_K: (256, 84), .q3_K: (256, 110), .q4_K: (256, 144), .q5_K: (256, 176),
            .q6_K: (256, 210), .q8_K: (256, 292), .iq2_xxs: (256, 66), .iq2_xs: (256, 74), .iq3_xxs: (256, 98),
            .iq1_s: (256, 50), .iq4_nl: (32, 18), .iq3_s: (256, 110), .iq2_s: (256, 82), .iq4_xs: (256, 136),
            .i8: (1, 1), .i16: (1, 2), .i32: (1, 4), .i64: (1, 8), .f64: (1, 8), .iq1_m: (256, 56), .bf16: (1, 2),
            .tq1_0: (256, 54), .tq2_0: (256, 66), .mxfp4: (32, 17), .nvfp4: (64, 36), .q1_0: (128, 18), .q2_0: (64, 18),
        ]
        XCTAssertEqual(sizes.count, GGMLType.allCases.count)
        for t in GGMLType.allCases {
            XCTAssertEqual(t.blockSize, sizes[t]?.0, t.name)
            XCTAssertEqual(t.bytesPerBlock, sizes[t]?.1, t.name)
        }
        XCTAssertEqual(GGMLType.q4_K.byteCount(elementCount: 512), 288)
        XCTAssertNil(GGMLType.q4_K.byteCount(elementCount: 100))
        XCTAssertNil(GGMLType.f32.byteCount(elementCount: Int.max))
        XCTAssertEqual(GGMLType(rawValue: 12), .q4_K)
        XCTAssertNil(GGMLType(rawValue: 4))
    }

    // MARK: - Metadata accessors

    func testTypedAccessors() throws {
        let f = try GGUFFile(contentsOf: fixtureURL("all_types.gguf"))
        XCTAssertEqual(try f.string("general.architecture"), "llama")
        XCTAssertEqual(try f.string("test.string_unicode"), "h\u{e9}llo, \u{4e16}\u{754c} \u{1F30D}\n\t\"quoted\" \\")
        XCTAssertEqual(try f.string("test.string_empty"), "")
        XCTAssertNil(try f.string("no.such.key"))
        XCTAssertNil(try f.int("no.such.key"))
        XCTAssertEqual(try f.int("test.u8"), 200)
        XCTAssertEqual(try f.int("test.i8"), -100)
        XCTAssertEqual(try f.int("test.u16"), 60000)
        XCTAssertEqual(try f.int("test.i16"), -30000)
        XCTAssertEqual(try f.int("test.u32"), 4_000_000_000)
        XCTAssertEqual(try f.int("test.i32"), -2_000_000_000)
        XCTAssertEqual(try f.int("test.u64_small"), 12_345_678_901_234)
        XCTAssertEqual(try f.int("test.i64"), -(1 << 62) - 3)
        XCTAssertEqual(try f.float("test.f32"), 3.14159)
        XCTAssertEqual(try f.float("test.f32_neg_zero")?.sign, .minus)
        XCTAssertEqual(try f.double("test.f64"), 2.718281828459045)
        XCTAssertEqual(try f.double("test.f32"), Double(Float(3.14159)))
        XCTAssertEqual(try f.float("test.f64"), Float(2.718281828459045))
        XCTAssertEqual(try f.double("test.f64_tiny"), .leastNonzeroMagnitude)
        XCTAssertEqual(try f.bool("test.bool_true"), true)
        XCTAssertEqual(try f.bool("test.bool_false"), false)
        XCTAssertEqual(try f.strings("tokenizer.ggml.tokens")?.count, 40)
        XCTAssertEqual(try f.strings("tokenizer.ggml.tokens")?.last, "\u{65e5}\u{672c}")
        XCTAssertEqual(try f.ints("tokenizer.ggml.token_type")?.prefix(4), [3, 3, 3, 1])
        XCTAssertEqual(try f.floats("tokenizer.ggml.scores")?[2], -0.5)
        XCTAssertEqual(try f.ints("test.arr_u8"), [0, 1, 255])
        XCTAssertEqual(try f.ints("test.arr_i64"), [Int.min, Int.max])
        XCTAssertEqual(try f.floats("test.arr_f64"), [0.1, -Float.infinity])
        XCTAssertEqual(try f.array("test.arr_bool"), .bool([true, false, true]))
        let nested = try XCTUnwrap(try f.array("test.arr_nested3"))
        XCTAssertEqual(nested, .array([.array([.float32([1.5])]), .array([.float32([2.5, 3.5]), .float32([4.5])])]))
        XCTAssertEqual(nested.typeName, "arr[arr[arr[f32]]]")
        XCTAssertEqual(nested[1], .array(.array([.float32([2.5, 3.5]), .float32([4.5])])))
        XCTAssertEqual(f.value("test.u8"), .uint8(200))
        XCTAssertEqual(f.value("test.u8")?.type, .uint8)

        // Wrong types and values that do not fit are errors that name the key.
        assertError(try f.int("test.string"), contains: ["all_types.gguf", "'test.string'", "str", "expected an integer"]) {
            $0 == .wrongValueType(path: f.path, key: "test.string", expected: "an integer", found: "str")
        }
        assertError(try f.int("test.u64"), contains: ["'test.u64'", "9223372036854775813", "too large"]) {
            if case .invalidMetadata = $0 { true } else { false }
        }
        assertError(try f.string("test.u32"), contains: ["'test.u32'", "type u32", "expected str"]) {
            if case .wrongValueType = $0 { true } else { false }
        }
        assertError(try f.float("test.i32"), contains: ["expected f32 or f64"]) { if case .wrongValueType = $0 { true } else { false } }
        assertError(try f.bool("test.u8"), contains: ["expected bool"]) { if case .wrongValueType = $0 { true } else { false } }
        assertError(try f.strings("tokenizer.ggml.scores"), contains: ["arr[f32]", "expected arr[str]"]) {
            if case .wrongValueType = $0 { true } else { false }
        }
        assertError(try f.floats("tokenizer.ggml.token_type"), contains: ["arr[i32]"]) { if case .wrongValueType = $0 { true } else { false } }
        assertError(try f.ints("test.arr_u64"), contains: ["arr[u64]"]) { if case .wrongValueType = $0 { true } else { false } }
        assertError(try f.array("test.u8"), contains: ["expected an array"]) { if case .wrongValueType = $0 { true } else { false } }
        assertError(try f.tensor(named: "nope"), contains: ["all_types.gguf", "no tensor named 'nope'"]) {
            $0 == .tensorNotFound(path: f.path, name: "nope")
        }
        assertError(try f.tensorData(named: "nope"), contains: ["'nope'"]) { if case .tensorNotFound = $0 { true } else { false } }
    }

    // MARK: - Summary

    func testSummary() throws {
        let f = try GGUFFile(contentsOf: fixtureURL("all_types.gguf"))
        let text = f.summary()
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertEqual(lines[0], "\(f.path): GGUF v3, 7.6 KiB, alignment 32, data section at byte 4,000")
        XCTAssertTrue(lines.contains { $0.hasPrefix("  tokenizer.ggml.tokens") && $0.contains("arr[str]")
            && $0.contains(#"["<|endoftext|>", "<|im_start|>""#) && $0.hasSuffix(#""tok4", ... (40 elements)]"#) }, text)
        XCTAssertTrue(lines.contains { $0.hasPrefix("  test.arr_nested3") && $0.hasSuffix("[[[1.5]], [[2.5, 3.5], [4.5]]]") }, text)
        XCTAssertTrue(lines.contains { $0.hasPrefix("  tokenizer.chat_template") && $0.hasSuffix("... (392 characters)") }, text)
        XCTAssertTrue(lines.contains { $0.hasPrefix("  test.string_unicode") && $0.hasSuffix(#""h\#u{e9}llo, \#u{4e16}\#u{754c} \#u{1F30D}\n\t\"quoted\" \\""#) }, text)
        XCTAssertTrue(lines.contains { $0.hasPrefix("blk.1.q5_k.weight") && $0.contains("Q5_K") && $0.contains("[2, 1, 256]")
            && $0.contains("352") }, text)
        XCTAssertTrue(lines.contains { $0.hasPrefix("iq4_nl.unsupported") && $0.contains("IQ4_NL (not loadable)") }, text)
        XCTAssertTrue(text.contains("16 tensors, 4,589 parameters, 3,612 bytes (3.5 KiB) of data"), text)
        XCTAssertTrue(text.contains("types: F32 x 2, F16 x 1, Q4_0 x 1"), text)
        XCTAssertTrue(text.contains("1 tensor has a type Lathe cannot convert to float32: IQ4_NL"), text)
        XCTAssertFalse(lines.contains { $0.hasSuffix(" ") }, "no trailing spaces")

        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(f.summaryJSON().utf8)) as? [String: Any])
        XCTAssertEqual(json["format"] as? String, "gguf")
        XCTAssertEqual(json["tensor_count"] as? Int, 16)
        XCTAssertEqual(json["parameter_count"] as? Int, 4589)
        XCTAssertEqual(json["data_offset"] as? Int, 4000)
        let meta = try XCTUnwrap(json["metadata"] as? [[String: Any]])
        XCTAssertEqual(meta.map { $0["key"] as? String ?? "" }, f.keys)
        let tokens = try XCTUnwrap(meta.first { $0["key"] as? String == "tokenizer.ggml.tokens" })
        XCTAssertEqual(tokens["count"] as? Int, 40)
        XCTAssertEqual(tokens["truncated"] as? Bool, true)
        XCTAssertEqual((tokens["value"] as? [String])?.count, 8)
        let template = try XCTUnwrap(meta.first { $0["key"] as? String == "tokenizer.chat_template" })
        XCTAssertEqual((template["value"] as? String)?.count, 392, "strings are whole in JSON")
        let tensors = try XCTUnwrap(json["tensors"] as? [[String: Any]])
        XCTAssertEqual(tensors.first?["shape"] as? [Int], [2, 3, 4, 5])
        XCTAssertEqual(tensors.first?["ne"] as? [Int], [5, 4, 3, 2])
        XCTAssertEqual(tensors.last?["loadable"] as? Bool, false)
    }

    // MARK: - Malformed files (docs/llm/gguf-and-llamacpp.md §5.2)

    func assertError<T>(_ body: @autoclosure () throws -> T, contains facts: [String],
                        file: StaticString = #filePath, line: UInt = #line,
                        _ matches: (GGUFError) -> Bool = { _ in true }) {
        do {
            _ = try body()
            XCTFail("no error thrown", file: file, line: line)
        } catch let error as GGUFError {
            XCTAssertTrue(matches(error), "unexpected error case: \(error)", file: file, line: line)
            let message = error.description
            for fact in facts where !message.contains(fact) {
                XCTFail("message \"\(message)\" lacks \"\(fact)\"", file: file, line: line)
            }
        } catch {
            XCTFail("not a GGUFError: \(error)", file: file, line: line)
        }
    }

    /// Parses `bytes` as a file called `name` and expects an error naming it and every fact.
    func assertRejects(_ bytes: [UInt8], _ name: String, contains facts: [String], file: StaticString = #filePath,
                       line: UInt = #line, _ matches: (GGUFError) -> Bool = { _ in true }) {
        assertError(try GGUFFile(bytes: bytes, path: name), contains: [name] + facts, file: file, line: line, matches)
    }

    func testMissingUnreadableAndEmptyFiles() throws {
        let dir = try temporaryDirectory()
        let missing = dir.appendingPathComponent("nope.gguf")
        assertError(try GGUFFile(contentsOf: missing), contains: ["nope.gguf", "no such file"]) {
            $0 == .fileNotFound(path: missing.path)
        }
        assertError(try GGUFFile(contentsOf: dir), contains: ["is a directory"]) { if case .unreadable = $0 { true } else { false } }
        let empty = dir.appendingPathComponent("empty.gguf")
        try Data().write(to: empty)
        assertError(try GGUFFile(contentsOf: empty), contains: ["empty.gguf", "not a GGUF file", "0 bytes long"]) {
            if case .notGGUF = $0 { true } else { false }
        }
        XCTAssertFalse(GGUFFile.hasMagic(atPath: empty.path))
        XCTAssertFalse(GGUFFile.hasMagic(atPath: missing.path))
        XCTAssertTrue(GGUFFile.hasMagic(atPath: fixtureURL("align64.gguf").path))
    }

    /// §5.2.1: every prefix of a valid file shorter than its last tensor's end is rejected (the
    /// header, metadata, tensor descriptions, padding and data), and longer ones are read.
    func testTruncationAtEveryOffset() throws {
        for name in ["all_types.gguf", "align64.gguf"] {
            let bytes = try fixtureBytes(name)
            let full = try GGUFFile(bytes: bytes, path: name)
            let needed = full.dataOffset + full.tensors.map { $0.offset + $0.byteCount }.max()!
            var kinds: [String: Int] = [:]
            for n in 0..<bytes.count {
                do {
                    let f = try GGUFFile(bytes: bytes[0..<n], path: "cut\(n).gguf")
                    XCTAssertGreaterThanOrEqual(n, needed, "a prefix of \(n) bytes was accepted")
                    XCTAssertEqual(f.tensors.count, full.tensors.count)
                } catch {
                    XCTAssertLessThan(n, needed, "prefix \(n): \(error)")
                    XCTAssertTrue(error.description.hasPrefix("cut\(n).gguf: "), error.description)
                    kinds[Mirror(reflecting: error).children.first?.label ?? "?", default: 0] += 1
                    if case .truncated(_, let what, let offset, let want, let size) = error {
                        XCTAssertEqual(size, n)
                        XCTAssertGreaterThan(offset + want, n, "\(what) at \(offset) needs \(want) of \(n)")
                    }
                }
            }
            // Counts checked against the bytes left catch the shortest cuts before any field is read.
            XCTAssertEqual(Set(kinds.keys), ["notGGUF", "invalidHeader", "truncated", "badLayout"], "\(name): \(kinds)")
        }
        let bytes = try fixtureBytes("all_types.gguf")
        assertRejects(Array(bytes[0..<100]), "cut.gguf", contains: ["16 tensors", "76 bytes after the header", "is the file truncated?"])
        let template = offset(ofString: "tokenizer.chat_template", in: bytes) + 8 + 23 + 4
        assertRejects(Array(bytes[0..<template + 50]), "cut.gguf", contains: [
            "the value of 'tokenizer.chat_template' (a string of 392 bytes) needs 392 bytes at offset \(template + 8)",
            "but the file is \(template + 50) bytes long"]) { if case .truncated = $0 { true } else { false } }
        assertRejects(Array(bytes[0..<7000]), "cut.gguf", contains: ["tensor 'blk.1.q6_k.weight'", "ends past the end", "holds 3000 bytes",
                                                                      "is the file truncated?"])
    }

    /// §5.2.2: magic, versions and counts.
    func testHeader() throws {
        let good = try fixtureBytes("align64.gguf")
        var b = good
        b[0] = UInt8(ascii: "X")
        assertRejects(b, "magic.gguf", contains: ["not a GGUF file", "starts with \"XGUF\""]) { if case .notGGUF = $0 { true } else { false } }
        assertRejects([0x89, 0x50, 0x4E, 0x47, 0, 0], "png.gguf", contains: ["bytes 0x89 0x50 0x4e 0x47"])
        assertRejects(Array("GGU".utf8), "short.gguf", contains: ["3 bytes long"])
        for (version, fact) in [(UInt32(0), "version 0 is not"), (1, "v1"), (4, "reads GGUF versions 2 and 3"),
                                (0x0300_0000, "big-endian"), (0xFFFF_0000, "big-endian"), (0xFFFF_FFFF, "2 and 3")] {
            b = good
            b.replaceSubrange(4..<8, with: le(version))
            assertRejects(b, "v\(version).gguf", contains: ["GGUF version \(version)", fact]) {
                if case .unsupportedVersion = $0 { true } else { false }
            }
        }
        b = good
        b.replaceSubrange(4..<8, with: le(UInt32(2)))
        XCTAssertEqual(try GGUFFile(bytes: b, path: "v2.gguf").version, 2, "v2 has the v3 layout")

        for count: UInt64 in [1 << 63, .max, 1 << 40, UInt64((good.count - 24) / 14 + 1)] {
            b = good
            b.replaceSubrange(8..<16, with: le(count))
            assertRejects(b, "nt.gguf", contains: ["\(count) tensors", "can describe at most"]) {
                if case .invalidHeader = $0 { true } else { false }
            }
            b = good
            b.replaceSubrange(16..<24, with: le(count))
            assertRejects(b, "nkv.gguf", contains: ["\(count) metadata keys", "can hold at most"]) {
                if case .invalidHeader = $0 { true } else { false }
            }
        }
        // Each count alone fits, together they do not.
        b = good
        let rest = UInt64(good.count - 24)
        b.replaceSubrange(8..<16, with: le(rest / 25))
        b.replaceSubrange(16..<24, with: le(rest / 14))
        assertRejects(b, "both.gguf", contains: ["cannot fit"]) { if case .invalidHeader = $0 { true } else { false } }
        // A count a little too large runs into the next field or the end.
        b = good
        b.replaceSubrange(16..<24, with: le(UInt64(4)))
        assertRejects(b, "kv4.gguf", contains: []) { _ in true }
    }

    /// §5.2.3: strings, keys and names.
    func testStringsKeysAndNames() throws {
        let good = try fixtureBytes("align64.gguf")
        let keyAt = offset(ofString: "general.name", in: good)
        for length: UInt64 in [.max, 1 << 62, 65_536] {
            var b = good
            b.replaceSubrange(keyAt..<keyAt + 8, with: le(length))
            assertRejects(b, "klen.gguf", contains: ["metadata entry 2", "key is \(length) bytes long", "at most 65535"]) {
                if case .invalidMetadata = $0 { true } else { false }
            }
        }
        var b = good
        b.replaceSubrange(keyAt..<keyAt + 8, with: le(UInt64(60_000)))
        assertRejects(b, "klen2.gguf", contains: ["the key of metadata entry 2 (a string of 60000 bytes)", "truncated"]) {
            if case .truncated = $0 { true } else { false }
        }
        let valueAt = offset(ofString: "aligned to 64", in: good)
        for (length, fact) in [(UInt64.max, "over the limit of 1073741824 bytes"), ((1 << 30) + 1, "over the limit"),
                               (1 << 30, "a string of 1073741824 bytes"), (UInt64(good.count), "truncated")] {
            b = good
            b.replaceSubrange(valueAt..<valueAt + 8, with: le(length))
            assertRejects(b, "vlen.gguf", contains: [fact])
        }

        var g = GGUFBuilder()
        g.kv("", type: 4, le(UInt32(1)))
        assertRejects(g.bytes(), "empty.gguf", contains: ["metadata entry 0", "the key is empty"])
        g = GGUFBuilder()
        g.kv("a.b", type: 4, le(UInt32(1)))
        g.kv("a.c", type: 4, le(UInt32(1)))
        g.kv("a.b", type: 8, str("x"))
        assertRejects(g.bytes(), "dup.gguf", contains: ["metadata 'a.b'", "appears twice (entries 0 and 2)"]) {
            if case .invalidMetadata = $0 { true } else { false }
        }
        g = GGUFBuilder()
        g.kvRaw(le(UInt64(5)) + [0x6B, 0x65, 0xC3, 0xA9, 0x79], type: 4, le(UInt32(1)))  // "kéy"
        assertRejects(g.bytes(), "ascii.gguf", contains: ["byte 0xc3 at position 2 (after \"ke\")", "printable ASCII"])
        g = GGUFBuilder()
        g.kvRaw(le(UInt64(3)) + [0x6B, 0x0A, 0x79], type: 4, le(UInt32(1)))
        assertRejects(g.bytes(), "ctl.gguf", contains: ["byte 0xa at position 1"])
        g = GGUFBuilder()
        g.kv("s", type: 8, le(UInt64(3)) + [0x61, 0xFF, 0x62])
        assertRejects(g.bytes(), "utf8.gguf", contains: ["metadata 's'", "not valid UTF-8"])
        g = GGUFBuilder()
        g.kv("s", type: 9, le(Int32(8)) + le(UInt64(2)) + str("ok") + le(UInt64(2)) + [0xC3, 0x28])
        assertRejects(g.bytes(), "utf8arr.gguf", contains: ["metadata 's'", "not valid UTF-8"])

        // Tensor names: 63 bytes is the most, 64 too long, empty, bad UTF-8, duplicates.
        for (n, ok) in [(63, true), (64, false)] {
            g = GGUFBuilder()
            g.tensor(String(repeating: "n", count: n), dims: [4], type: 0, offset: 0)
            g.data = [UInt8](repeating: 0, count: 16)
            if ok {
                XCTAssertEqual(try GGUFFile(bytes: g.bytes(), path: "63.gguf").tensors.first?.name.count, 63)
            } else {
                assertRejects(g.bytes(), "64.gguf", contains: ["tensor 0", "name is 64 bytes long", "at most 63"]) {
                    if case .invalidTensorInfo = $0 { true } else { false }
                }
            }
        }
        g = GGUFBuilder()
        g.tensor("", dims: [4], type: 0, offset: 0)
        assertRejects(g.bytes(), "noname.gguf", contains: ["tensor 0", "name is empty"])
        g = GGUFBuilder()
        g.tensorRaw(le(UInt64(2)) + [0xC0, 0x80], dims: [4], type: 0, offset: 0)
        assertRejects(g.bytes(), "badname.gguf", contains: ["not valid UTF-8"])
        let dup = try fixtureBytes("all_types.gguf")
        b = dup
        let second = offset(ofString: "blk.0.q4_1.weight", in: b)
        b.replaceSubrange(second + 8..<second + 25, with: Array("blk.0.q4_0.weight".utf8))
        assertRejects(b, "dupname.gguf", contains: ["tensor 'blk.0.q4_0.weight'", "appears twice (tensors 4 and 5)"]) {
            if case .invalidTensorInfo = $0 { true } else { false }
        }
        b = dup
        b.replaceSubrange(second..<second + 8, with: le(UInt64.max))
        assertRejects(b, "namelen.gguf", contains: ["tensor 5", "18446744073709551615 bytes long"])
    }

    /// §5.2.4: value types, arrays, nesting.
    func testValueTypesAndArrays() throws {
        let good = try fixtureBytes("all_types.gguf")
        let typeAt = offset(ofString: "test.u8", in: good) + 8 + 7
        for type: Int32 in [13, -1, .max] {
            var b = good
            b.replaceSubrange(typeAt..<typeAt + 4, with: le(type))
            assertRejects(b, "vt.gguf", contains: ["metadata 'test.u8'", "value type \(type) is not a GGUF value type"]) {
                if case .invalidMetadata = $0 { true } else { false }
            }
        }
        // Array element type and count.
        let arrayAt = offset(ofString: "test.arr_u32", in: good) + 8 + 12 + 4
        var b = good
        b.replaceSubrange(arrayAt..<arrayAt + 4, with: le(Int32(13)))
        assertRejects(b, "et.gguf", contains: ["'test.arr_u32'", "element type 13"])
        for (count, fact) in [(UInt64(1) << 62, "over the limit of 1073741824"), (.max, "18446744073709551615 elements"),
                              (UInt64(1) << 30, "1073741824 elements of type u32")] {
            b = good
            b.replaceSubrange(arrayAt + 4..<arrayAt + 12, with: le(count))
            assertRejects(b, "count.gguf", contains: ["'test.arr_u32'", fact])
        }
        // A string array whose element lengths run past the end.
        let tokensAt = offset(ofString: "tokenizer.ggml.tokens", in: good) + 8 + 21 + 4 + 4 + 8
        b = good
        b.replaceSubrange(tokensAt..<tokensAt + 8, with: le(UInt64.max - 3))
        assertRejects(b, "tok.gguf", contains: ["'tokenizer.ggml.tokens'", "over the limit"])
        b = good
        b.replaceSubrange(tokensAt..<tokensAt + 8, with: le(UInt64(good.count)))
        assertRejects(b, "tok2.gguf", contains: ["element 0 of array 'tokenizer.ggml.tokens' (a string of \(good.count) bytes)"]) {
            if case .truncated = $0 { true } else { false }
        }

        // Nesting: 16 levels are read, 17 and 10,000 are refused without deep recursion.
        func nested(_ depth: Int) -> [UInt8] {
            var payload = le(Int32(4)) + le(UInt64(1)) + le(UInt32(7))
            for _ in 1..<depth { payload = le(Int32(9)) + le(UInt64(1)) + payload }
            return payload
        }
        var g = GGUFBuilder()
        g.kv("deep", type: 9, nested(16))
        var value = try XCTUnwrap(try GGUFFile(bytes: g.bytes(), path: "n16.gguf").array("deep"))
        for _ in 1..<16 { value = try XCTUnwrap(value[0].arrayValue) }
        XCTAssertEqual(value, .uint32([7]))
        for depth in [17, 10_000] {
            g = GGUFBuilder()
            g.kv("deep", type: 9, nested(depth))
            assertRejects(g.bytes(), "n\(depth).gguf", contains: ["metadata 'deep'", "nest more than 16 deep"])
        }
        // Empty arrays (gguf-py cannot write them; the format allows them).
        g = GGUFBuilder()
        g.kv("e", type: 9, le(Int32(8)) + le(UInt64(0)))
        g.kv("ee", type: 9, le(Int32(9)) + le(UInt64(1)) + le(Int32(0)) + le(UInt64(0)))
        let empty = try GGUFFile(bytes: g.bytes(), path: "empty.gguf")
        XCTAssertEqual(try empty.strings("e"), [])
        XCTAssertEqual(try empty.array("ee"), .array([.uint8([])]))
        XCTAssertEqual(try empty.array("ee")?.typeName, "arr[arr[u8]]")
        // Bools must be 0 or 1.
        g = GGUFBuilder()
        g.kv("b", type: 7, [2])
        assertRejects(g.bytes(), "bool.gguf", contains: ["metadata 'b'", "stored as byte 2"])
        g = GGUFBuilder()
        g.kv("b", type: 9, le(Int32(7)) + le(UInt64(3)) + [1, 0, 9])
        assertRejects(g.bytes(), "bools.gguf", contains: ["bool element 2 is stored as byte 9"])
    }

    /// §5.2.5: general.alignment.
    func testAlignment() throws {
        func file(_ type: Int32, _ payload: [UInt8]) -> [UInt8] {
            var g = GGUFBuilder()
            g.kv("general.alignment", type: type, payload)
            g.tensor("t", dims: [8], type: 0, offset: 0)
            g.data = [UInt8](repeating: 0, count: 32)
            return g.bytes()
        }
        XCTAssertEqual(try GGUFFile(bytes: file(4, le(UInt32(16))), path: "a16.gguf").alignment, 16)
        XCTAssertEqual(try GGUFFile(bytes: file(4, le(UInt32(1))), path: "a1.gguf").alignment, 1)
        for (type, payload, typeName) in [(Int32(5), le(Int32(32)), "i32"), (10, le(UInt64(32)), "u64"), (8, str("32"), "str")] {
            assertRejects(file(type, payload), "at.gguf", contains: ["metadata 'general.alignment'", "type \(typeName)", "must be a u32"])
        }
        for a: UInt32 in [0, 3, 48, .max] {
            assertRejects(file(4, le(a)), "a\(a).gguf", contains: ["'general.alignment'", "it is \(a)", "power of two"])
        }
        // 2^31 is a power of two; the data section would start past the end of this small file.
        assertRejects(file(4, le(UInt32(1) << 31)), "a31.gguf", contains: ["the padding before the data section"]) {
            if case .truncated = $0 { true } else { false }
        }
    }

    /// §5.2.6-7: dimensions and types.
    func testDimensionsAndTypes() throws {
        let good = try fixtureBytes("all_types.gguf")
        let name = "blk.0.q8_0.weight"
        let info = offset(ofString: name, in: good) + 8 + name.utf8.count  // n_dims, ne[0], ne[1], type, offset
        func patched(_ at: Int, _ bytes: [UInt8]) -> [UInt8] {
            var b = good
            b.replaceSubrange(info + at..<info + at + bytes.count, with: bytes)
            return b
        }
        for n: UInt32 in [5, .max] {
            assertRejects(patched(0, le(n)), "nd.gguf", contains: ["tensor '\(name)'", "\(n) dimensions", "at most 4"]) {
                if case .invalidTensorInfo = $0 { true } else { false }
            }
        }
        assertRejects(patched(4, le(UInt64.max)), "neg.gguf", contains: ["dimension 0 is 18446744073709551615 (-1 as the signed"])
        assertRejects(patched(12, le(UInt64(1) << 63)), "neg2.gguf", contains: ["dimension 1 is 9223372036854775808"])
        assertRejects(patched(4, le(UInt64(0))), "zero.gguf", contains: ["dimension 0 is 0"])
        assertRejects(patched(12, le(UInt64(0))), "zero1.gguf", contains: ["dimension 1 is 0"])
        // ne = [2^42 * 32, 2^42 + 1]: the element count overflows 64 bits.
        assertRejects(patched(4, le(UInt64(1) << 47) + le((UInt64(1) << 42) + 1)), "ovf.gguf",
                      contains: ["dimensions [140737488355328, 4398046511105] hold more than"])
        // Elements fit, bytes do not: 31 * 2^58 elements of Q8_0 (34 bytes per 32) take 31 * 2^53 * 34 > Int.max bytes.
        assertRejects(patched(4, le(UInt64(1) << 58) + le(UInt64(31))), "bytes.gguf", contains: ["take more than"])
        // A huge tensor whose size fits is refused because its bytes are not in the file.
        assertRejects(patched(4, le(UInt64(1) << 40) + le(UInt64(1))), "huge.gguf", contains: ["ends past the end of the file"]) {
            if case .badLayout = $0 { true } else { false }
        }
        // n_dims 0 is a one-element tensor: fine for F32, not for Q8_0 (32 per row).
        var g = GGUFBuilder()
        g.tensor("scalar", dims: [], type: 0, offset: 0)
        g.data = le(Float(2.5).bitPattern)
        let scalar = try GGUFFile(bytes: g.bytes(), path: "scalar.gguf")
        XCTAssertEqual(scalar.tensorInfo(named: "scalar")?.elementCount, 1)
        XCTAssertEqual(try scalar.tensor(named: "scalar").shape, [])
        XCTAssertEqual(try scalar.tensor(named: "scalar").scalars, [2.5])
        g = GGUFBuilder()
        g.tensor("q", dims: [], type: 8, offset: 0)
        g.data = [UInt8](repeating: 0, count: 34)
        assertRejects(g.bytes(), "nd0.gguf", contains: ["tensor 'q'", "dimension 0 is 1, not a multiple of 32"])
        for (type, fact) in [(Int32(43), "type id 43 is not a GGML type"), (-1, "type id -1"), (4, "type id 4 (Q4_2) was removed"),
                             (31, "(Q4_0_4_4) was removed"), (36, "(IQ4_NL_4_4) was removed"), (.max, "type id 2147483647")] {
            assertRejects(patched(20, le(type)), "t\(type).gguf", contains: ["tensor '\(name)'", fact]) {
                if case .invalidTensorInfo = $0 { true } else { false }
            }
        }
        assertRejects(patched(4, le(UInt64(48))), "blk.gguf", contains: ["Q8_0 stores blocks of 32", "dimension 0 is 48"])
        assertRejects(patched(20, le(Int32(12))), "kq.gguf", contains: ["Q4_K stores blocks of 256", "dimension 0 is 64"])
        // Another type whose bytes fit in the same place is accepted (IQ4_NL [64, 4] takes 144 of Q8_0's 272 bytes);
        // the next tensor is then not where llama.cpp's packing puts it.
        let retyped = try GGUFFile(bytes: patched(20, le(Int32(20))), path: "iq.gguf")
        XCTAssertEqual(retyped.tensorInfo(named: name)?.byteCount, 144)
        XCTAssertEqual(retyped.warnings.count, 1)
    }

    /// §5.2.8-9: offsets and layout.
    func testOffsetsAndLayout() throws {
        let good = try fixtureBytes("all_types.gguf")
        func offsetField(_ name: String) -> Int {
            let at = offset(ofString: name, in: good) + 8 + name.utf8.count
            let nDims = Int(good[at]) | Int(good[at + 1]) << 8
            return at + 4 + 8 * nDims + 4
        }
        func patched(_ name: String, _ offset: UInt64) -> [UInt8] {
            var b = good
            let at = offsetField(name)
            b.replaceSubrange(at..<at + 8, with: le(offset))
            return b
        }
        let file = try GGUFFile(bytes: good, path: "good.gguf")
        let last = try XCTUnwrap(file.tensors.last), first = try XCTUnwrap(file.tensors.first)
        assertRejects(patched(last.name, UInt64(last.offset + 16)), "al.gguf",
                      contains: ["tensor '\(last.name)'", "data offset \(last.offset + 16) is not a multiple of the alignment 32"])
        assertRejects(patched(first.name, UInt64(file.tensors[1].offset)), "ov.gguf", contains: ["overlaps tensor"]) {
            if case .badLayout = $0 { true } else { false }
        }
        let dataSize = UInt64(good.count - file.dataOffset)
        assertRejects(patched(last.name, dataSize), "end.gguf", contains: ["tensor '\(last.name)'", "ends past the end of the file"])
        assertRejects(patched(last.name, UInt64.max - 31), "wrap.gguf", contains: ["at data offset 18446744073709551584", "ends past the end"])
        assertRejects(patched(last.name, UInt64(Int.max) + 1), "wrap2.gguf", contains: ["ends past the end"])
        assertRejects(patched(last.name, (dataSize + 31) / 32 * 32), "past.gguf", contains: ["ends past the end"])

        // Out of file order but in bounds and not overlapping: accepted with a warning.
        var g = GGUFBuilder()
        g.tensor("second", dims: [8], type: 0, offset: 32)
        g.tensor("first", dims: [8], type: 0, offset: 0)
        g.data = (0..<64).map { UInt8($0) }
        let swapped = try GGUFFile(bytes: g.bytes(), path: "swap.gguf")
        XCTAssertEqual(swapped.warnings, ["tensor 'second' is at data offset 32 where llama.cpp expects 0 (tensors packed in file "
                                          + "order, each padded to 32 bytes); llama.cpp will refuse this file"])
        XCTAssertEqual(try swapped.tensorData(named: "first").first, 0)
        XCTAssertEqual(try swapped.tensorData(named: "second").first, 32)
        XCTAssertTrue(swapped.summary().contains("warning: tensor 'second'"))
        // A gap between tensors: accepted with a warning too.
        g = GGUFBuilder()
        g.tensor("a", dims: [8], type: 0, offset: 0)
        g.tensor("b", dims: [8], type: 0, offset: 64)
        g.data = [UInt8](repeating: 0, count: 96)
        XCTAssertEqual(try GGUFFile(bytes: g.bytes(), path: "gap.gguf").warnings.first?.hasPrefix("tensor 'b' is at data offset 64 "
                                                                                                  + "where llama.cpp expects 32"), true)

        // No tensors: the file may end right after the metadata (no padding).
        g = GGUFBuilder()
        g.kv("k", type: 0, [1])
        var bytes = g.bytes()
        bytes.removeLast(bytes.count - (24 + 8 + 1 + 4 + 1))
        let metaOnly = try GGUFFile(bytes: bytes, path: "meta.gguf")
        XCTAssertEqual(metaOnly.tensors.count, 0)
        XCTAssertEqual(metaOnly.dataOffset, bytes.count)
        XCTAssertEqual(try metaOnly.int("k"), 1)
    }

    /// §5.2.12: non-finite scales dequantise to non-finite values without trapping.
    func testPoisonedScales() throws {
        var g = GGUFBuilder()
        g.tensor("q8", dims: [32, 2], type: 8, offset: 0)
        g.tensor("q4k", dims: [256], type: 12, offset: 96)
        g.data = le(UInt16(0x7E00)) + [UInt8](repeating: 1, count: 32) + le(UInt16(0x7C00)) + [UInt8](repeating: 0xFF, count: 32)
        g.data += [UInt8](repeating: 0, count: 96 - g.data.count)
        g.data += le(UInt16(0x7C00)) + le(UInt16(0xFC00)) + [UInt8](repeating: 0x3F, count: 140)
        let f = try GGUFFile(bytes: g.bytes(), path: "poison.gguf")
        let q8 = try f.dequantized(named: "q8")
        XCTAssertTrue(q8[0..<32].allSatisfy(\.isNaN))
        XCTAssertTrue(q8[32..<64].allSatisfy { $0 == -.infinity })
        XCTAssertTrue(try f.tensor(named: "q4k").scalars.allSatisfy { !$0.isFinite })
    }

    // MARK: - The real model (Tools/fetch-models fetches it)

    /// SmolLM2-135M-Instruct Q4_1 (docs/LLM.md): the header as llama.cpp reports it, and
    /// token_embd in PyTorch order. Tools/reference/check_gguf_model.py compares its values with
    /// gguf-py by hand.
    func testSmolLM2() throws {
        let path = try fetchedModel("SmolLM2-135M-Instruct.Q4_1.gguf").path
        let f = try GGUFFile(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(try f.string("general.architecture"), "llama")
        XCTAssertEqual(try f.int("llama.block_count"), 30)
        XCTAssertEqual(try f.int("llama.embedding_length"), 576)
        XCTAssertEqual(try f.strings("tokenizer.ggml.tokens")?.count, 49152)
        XCTAssertEqual(f.tensors.count, 272)
        XCTAssertEqual(f.warnings, [])
        let embd = try XCTUnwrap(f.tensorInfo(named: "token_embd.weight"))
        XCTAssertEqual(embd.type, .q8_0)
        XCTAssertEqual(embd.dimensions, [576, 49152])
        let t = try f.tensor(named: "token_embd.weight")
        XCTAssertEqual(t.shape, [49152, 576])
        // Row 1 of the PyTorch-order tensor is the second run of 576 values in the file.
        let flat = try f.dequantized(named: "token_embd.weight")
        XCTAssertEqual(t.sliced(dim: 0, start: 1, end: 2).scalars, Array(flat[576..<1152]))
        XCTAssertEqual(try f.tensor(named: "blk.0.ffn_down.weight").shape, [576, 1536])
    }

    // MARK: - Helpers

    /// Offset of the length-prefixed string `s` (its u64 length) in `bytes`.
    func offset(ofString s: String, in bytes: [UInt8]) -> Int {
        let pattern = le(UInt64(s.utf8.count)) + Array(s.utf8)
        for i in 0...(bytes.count - pattern.count) where bytes[i..<i + pattern.count].elementsEqual(pattern) { return i }
        XCTFail("\(s) not found")
        return 0
    }
}

func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
func str(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count)) + Array(s.utf8) }

/// Writes GGUF v3 bytes field by field, valid or not: the malformed-file tests build from it.
struct GGUFBuilder {
    var version: UInt32 = 3
    var alignment = 32
    var kvs: [[UInt8]] = []
    var infos: [[UInt8]] = []
    var data: [UInt8] = []

    mutating func kv(_ key: String, type: Int32, _ payload: [UInt8]) { kvRaw(str(key), type: type, payload) }
    mutating func kvRaw(_ key: [UInt8], type: Int32, _ payload: [UInt8]) { kvs.append(key + le(type) + payload) }
    mutating func tensor(_ name: String, dims: [UInt64], type: Int32, offset: UInt64) {
        tensorRaw(str(name), dims: dims, type: type, offset: offset)
    }
    mutating func tensorRaw(_ name: [UInt8], dims: [UInt64], type: Int32, offset: UInt64) {
        infos.append(name + le(UInt32(dims.count)) + dims.flatMap(le) + le(type) + le(offset))
    }

    /// Header, metadata, tensor descriptions, zero padding to `alignment`, data.
    func bytes() -> [UInt8] {
        var out = Array("GGUF".utf8) + le(version) + le(UInt64(infos.count)) + le(UInt64(kvs.count))
        out += kvs.flatMap { $0 } + infos.flatMap { $0 }
        out += [UInt8](repeating: 0, count: (alignment - out.count % alignment) % alignment)
        return out + data
    }
}
