import Foundation
import LatheIO
import LatheTensor
import XCTest
import _LatheTestSupport

/// Round trips, PyTorch interop (fixtures from Tools/reference/make_io_fixtures.py) and
/// corrupt files.
final class SafeTensorsTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-io-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    func bytes(_ t: Tensor) -> [UInt8] { t.withUnsafeRawBytes { Array($0) } }

    /// One tensor of every dtype, plus scalars, empty tensors and a view.
    func sampleTensors() -> [String: Tensor] {
        [
            "f32": Tensor([1.5, -2.25, .pi, 0, -0.0, .infinity, -.infinity, Float(bitPattern: 0x0001_1000)], shape: [2, 4]),
            "f32.nan": Tensor([Float(bitPattern: 0x7FC0_0001), Float(bitPattern: 0xFFFF_FFFF)], shape: [2]),
            "f16": Tensor([0.5, -1, 65504, 1e-4, 3], shape: [5]).to(.float16),
            "bf16": Tensor([1, -3.140625, 1e30, 0.0078125], shape: [2, 1, 2]).to(.bfloat16),
            "i64": Tensor([0, -1, Int(Int64.max), Int(Int64.min)], dtype: .int64),
            "i32": Tensor([7, -7, Int(Int32.max), Int(Int32.min)], shape: [4, 1], dtype: .int32),
            "i8": Tensor([-128, 127, 0], dtype: .int8),
            "u8": Tensor([0, 255, 17], dtype: .uint8),
            "bool": Tensor([true, false, true]),
            "scalar.f32": Tensor(Float(42)),
            "scalar.i64": Tensor([9], shape: [], dtype: .int64),
            "scalar.bool": Tensor([true], shape: []),
            "empty": Tensor([Float](), shape: [0]),
            "empty.i8": Tensor([Int](), shape: [3, 0], dtype: .int8),
            "view.T": Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]).T,
        ]
    }

    // MARK: - Round trips

    func testRoundTripEveryDType() throws {
        let tensors = sampleTensors()
        XCTAssertEqual(Set(tensors.values.map(\.dtype)), Set(DType.allCases), "the sample covers every dtype")
        let metadata = ["format": "pt", "note": "ünïcode \"quoted\" \\ back\nslash\t/ \u{01}", "empty": ""]
        try SafeTensors.write(tensors, metadata: metadata, to: url("a.safetensors"))
        let file = try SafeTensors.read(contentsOf: url("a.safetensors"))
        XCTAssertEqual(file.metadata, metadata)
        XCTAssertEqual(Set(file.names), Set(tensors.keys))
        XCTAssertEqual(file.names.count, tensors.count)
        XCTAssertEqual(file.convertedFromFloat64, [])
        for (name, t) in tensors {
            let back = try XCTUnwrap(file[name], name)
            XCTAssertEqual(back.dtype, t.dtype, name)
            XCTAssertEqual(back.shape, t.shape, name)
            XCTAssertEqual(bytes(back), bytes(t), name)
        }
        XCTAssertEqual(file["view.T"]?.scalars, [1, 4, 2, 5, 3, 6])
        XCTAssertEqual(file["scalar.f32"]?.shape, [])
        XCTAssertEqual(file["i64"]?.intScalars, [0, -1, Int(Int64.max), Int(Int64.min)])
        assertClose(try XCTUnwrap(file["f16"]), Tensor([0.5, -1, 65504, 1e-4, 3]), rtol: 1e-3)
        // Names come in data order: the offsets increase.
        let offsets = file.names.compactMap { file.header[$0]?.dataOffsets.lowerBound }
        XCTAssertEqual(offsets, offsets.sorted())
    }

    func testReloadIsBitIdentical() throws {
        try SafeTensors.write(sampleTensors(), metadata: ["k": "v"], to: url("a.safetensors"))
        let first = try SafeTensors.read(contentsOf: url("a.safetensors"))
        try SafeTensors.write(first.tensors, metadata: first.metadata, to: url("b.safetensors"))
        XCTAssertEqual(try Data(contentsOf: url("a.safetensors")), try Data(contentsOf: url("b.safetensors")))
        XCTAssertEqual(bytes(try XCTUnwrap(first["f32.nan"])), [0x01, 0x00, 0xC0, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF],
                       "NaN payloads survive")
    }

    func testEmptyFileAndNoMetadata() throws {
        try SafeTensors.write([:], to: url("none.safetensors"))
        let raw = try Data(contentsOf: url("none.safetensors"))
        XCTAssertEqual(Array(raw), [8, 0, 0, 0, 0, 0, 0, 0] + Array("{}      ".utf8))
        let file = try SafeTensors.read(contentsOf: url("none.safetensors"))
        XCTAssertTrue(file.tensors.isEmpty)
        XCTAssertTrue(file.metadata.isEmpty)

        try SafeTensors.write(["x": Tensor([1, 2])], to: url("x.safetensors"))
        let header = try String(decoding: Data(contentsOf: url("x.safetensors")).dropFirst(8), as: UTF8.self)
        XCTAssertFalse(header.contains("__metadata__"), "no metadata key when metadata is empty")
    }

    func testHeaderLayout() throws {
        try SafeTensors.write(["b": Tensor([Float(1), 2]), "a": Tensor([Float(3)]), "c": Tensor([1], dtype: .int64)],
                              metadata: ["m": "1"], to: url("l.safetensors"))
        let raw = Array(try Data(contentsOf: url("l.safetensors")))
        let n = Int(raw[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        XCTAssertEqual(n % 8, 0, "header padded to a multiple of 8")
        let header = String(decoding: raw[8..<8 + n], as: UTF8.self)
        XCTAssertEqual(header.trimmingCharacters(in: .whitespaces),
                       #"{"__metadata__":{"m":"1"},"c":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"#
                       + #""a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"#
                       + #""b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#)
        XCTAssertEqual(raw.count, 8 + n + 20)
    }

    /// Escapes as Python's safetensors (serde_json) does; the expected bytes are what
    /// `safetensors.torch.save` produced for the same tensor and metadata.
    func testStringEscapingMatchesReference() throws {
        try SafeTensors.write(["\u{1F}k\u{2028}": Tensor([Float(0)])],
                              metadata: ["a": "\u{01}\u{7F}\u{08}\u{0C}\r\t/\\é😀"], to: url("esc.safetensors"))
        let raw = Array(try Data(contentsOf: url("esc.safetensors")))
        let expected = Array(#"{"__metadata__":{"a":"\u0001\#u{7F}\b\f\r\t/\\é😀"},"\u001fk\#u{2028}":"#.utf8)
            + Array(#"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} "#.utf8)
        XCTAssertEqual(Array(raw[8..<raw.count - 4]), expected)
        let file = try SafeTensors.read(contentsOf: url("esc.safetensors"))
        XCTAssertEqual(file.metadata["a"], "\u{01}\u{7F}\u{08}\u{0C}\r\t/\\é😀")
        XCTAssertEqual(file.names, ["\u{1F}k\u{2028}"])
    }

    func testWriteReplacesAtomicallyAndLeavesNoTemporaryFiles() throws {
        let target = url("model.safetensors")
        try Data("old contents".utf8).write(to: target)
        try SafeTensors.write(["w": Tensor([1, 2, 3])], to: target)
        XCTAssertEqual(try SafeTensors.read(contentsOf: target)["w"]?.scalars, [1, 2, 3])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["model.safetensors"])
    }

    func testWriteErrors() throws {
        assertError(try SafeTensors.write(["__metadata__": Tensor([1])], to: url("m.safetensors")),
                    contains: ["m.safetensors", "__metadata__", "reserved"]) {
            if case .invalidInput = $0 { true } else { false }
        }
        let missingDir = directory.appendingPathComponent("no/such/dir/x.safetensors")
        assertError(try SafeTensors.write(["a": Tensor([1])], to: missingDir),
                    contains: ["x.safetensors", "temporary file", "No such file"]) {
            if case .writeFailed = $0 { true } else { false }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: url("m.safetensors").path))
    }

    // MARK: - PyTorch interop

    struct Expected {
        let dtype: String, shape: [Int], values: [Double], hex: String
    }

    func loadExpected(_ file: String) throws -> (tensors: [String: Expected], metadata: [String: String]) {
        let data = try Data(contentsOf: fixturesDirectory.appendingPathComponent("io/torch_written.json"))
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let section = try XCTUnwrap(root[file] as? [String: Any])
        let metadata = try XCTUnwrap(section["metadata"] as? [String: String])
        let tensors = try XCTUnwrap(section["tensors"] as? [String: [String: Any]])
        return (try tensors.mapValues { d in
            Expected(dtype: try XCTUnwrap(d["dtype"] as? String),
                     shape: try XCTUnwrap(d["shape"] as? [NSNumber]).map(\.intValue),
                     values: try XCTUnwrap(d["values"] as? [NSNumber]).map(\.doubleValue),
                     hex: try XCTUnwrap(d["hex"] as? String))
        }, metadata)
    }

    func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    func testReadsTorchWrittenFile() throws {
        let (expected, metadata) = try loadExpected("torch_written")
        let file = try SafeTensors.read(contentsOf: fixturesDirectory.appendingPathComponent("io/torch_written.safetensors"))
        XCTAssertEqual(file.metadata, metadata)
        XCTAssertEqual(Set(file.tensors.keys), Set(expected.keys))
        XCTAssertEqual(file.convertedFromFloat64, ["double"])
        let dtypes: [String: DType] = ["float32": .float32, "float16": .float16, "bfloat16": .bfloat16, "int64": .int64,
                                       "int32": .int32, "int8": .int8, "uint8": .uint8, "bool": .bool, "float64": .float32]
        for (name, e) in expected {
            let t = try XCTUnwrap(file[name], name)
            XCTAssertEqual(t.dtype, dtypes[e.dtype], name)
            XCTAssertEqual(t.shape, e.shape, name)
            XCTAssertEqual(t.scalars, e.values.map { Float($0) }, name)
            if e.dtype != "float64" { XCTAssertEqual(hex(bytes(t)), e.hex, name) }
        }
        XCTAssertEqual(file["index"]?.intScalars, [0, -7, 1 << 40])
        XCTAssertEqual(file["mask"]?.intScalars, [1, 0, 0, 1])
        XCTAssertEqual(file["double"]?.scalars, [Float(0.1), -2.5])
    }

    func testReadHeaderOfTorchFile() throws {
        let path = fixturesDirectory.appendingPathComponent("io/torch_written.safetensors")
        let header = try SafeTensors.readHeader(contentsOf: path)
        let size = try XCTUnwrap((FileManager.default.attributesOfItem(atPath: path.path)[.size] as? NSNumber)?.intValue)
        XCTAssertEqual(header.fileSize, size)
        XCTAssertEqual(header.dataStart + header.dataByteCount, size)
        XCTAssertEqual(header.headerSize % 8, 0)
        XCTAssertEqual(header.entries.count, 11)
        XCTAssertEqual(header.names.first, "index", "I64 comes first in the reference layout")
        let weight = try XCTUnwrap(header["weight"])
        XCTAssertEqual(weight.fileDType, "F32")
        XCTAssertEqual(weight.dtype, .float32)
        XCTAssertEqual(weight.shape, [2, 3])
        XCTAssertEqual(weight.byteCount, 24)
        let double = try XCTUnwrap(header["double"])
        XCTAssertEqual(double.fileDType, "F64")
        XCTAssertEqual(double.dtype, .float32)
        XCTAssertTrue(double.isConvertedOnLoad)
        XCTAssertEqual(double.dataOffsets, 24..<40)
        XCTAssertEqual(header["scalar"]?.shape, [])
        XCTAssertEqual(header["empty"]?.byteCount, 0)
        XCTAssertEqual(header["layer.0.brain"]?.fileDType, "BF16")
        XCTAssertEqual(header.parameterCount, 6 + 4 + 4 + 3 + 2 + 3 + 2 + 4 + 1 + 0 + 2)
    }

    /// Lathe writes the same bytes as Python's safetensors for the same tensors.
    func testWriteMatchesTorchWrittenBytes() throws {
        let (expected, metadata) = try loadExpected("torch_layout")
        var tensors: [String: Tensor] = [:]
        for (name, e) in expected {
            let floats = e.values.map { Float($0) }
            let ints = e.values.map { Int($0) }
            switch e.dtype {
            case "float32": tensors[name] = Tensor(floats, shape: e.shape)
            case "float16": tensors[name] = Tensor(floats, shape: e.shape).to(.float16)
            case "bfloat16": tensors[name] = Tensor(floats, shape: e.shape).to(.bfloat16)
            case "int64": tensors[name] = Tensor(ints, shape: e.shape, dtype: .int64)
            case "int32": tensors[name] = Tensor(ints, shape: e.shape, dtype: .int32)
            case "int8": tensors[name] = Tensor(ints, shape: e.shape, dtype: .int8)
            case "uint8": tensors[name] = Tensor(ints, shape: e.shape, dtype: .uint8)
            case "bool": tensors[name] = Tensor(ints, shape: e.shape, dtype: .bool)
            default: XCTFail("unexpected dtype \(e.dtype) in fixture")
            }
        }
        try SafeTensors.write(tensors, metadata: metadata, to: url("lathe.safetensors"))
        let ours = try Data(contentsOf: url("lathe.safetensors"))
        let theirs = try Data(contentsOf: fixturesDirectory.appendingPathComponent("io/torch_layout.safetensors"))
        if ours != theirs {
            XCTFail("Lathe wrote\n\(String(decoding: ours.prefix(700), as: UTF8.self))\nPython wrote\n"
                    + String(decoding: theirs.prefix(700), as: UTF8.self))
        }
    }

    // MARK: - Corrupt files

    /// Writes a file from a header string and data bytes; `length` overrides the length field.
    func rawFile(_ name: String, header: String, data: [UInt8] = [], length: UInt64? = nil) throws -> URL {
        let h = Array(header.utf8)
        let n = length ?? UInt64(h.count)
        let prefix = (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) }
        let u = url(name)
        try Data(prefix + h + data).write(to: u)
        return u
    }

    func assertError<T>(_ body: @autoclosure () throws -> T, contains facts: [String],
                        file: StaticString = #filePath, line: UInt = #line,
                        _ matches: (SafeTensorsError) -> Bool) {
        do {
            _ = try body()
            XCTFail("no error thrown", file: file, line: line)
        } catch let error as SafeTensorsError {
            XCTAssertTrue(matches(error), "unexpected error case: \(error)", file: file, line: line)
            let message = error.description
            for fact in facts where !message.contains(fact) {
                XCTFail("message \"\(message)\" lacks \"\(fact)\"", file: file, line: line)
            }
        } catch {
            XCTFail("not a SafeTensorsError: \(error)", file: file, line: line)
        }
    }

    /// Checks both `read` and `readHeader` throw the error.
    func assertBoth(_ u: URL, contains facts: [String], file: StaticString = #filePath, line: UInt = #line,
                    _ matches: (SafeTensorsError) -> Bool) {
        assertError(try SafeTensors.read(contentsOf: u), contains: facts, file: file, line: line, matches)
        assertError(try SafeTensors.readHeader(contentsOf: u), contains: facts, file: file, line: line, matches)
    }

    func testMissingFile() {
        assertBoth(url("nope.safetensors"), contains: ["nope.safetensors", "no such file"]) {
            if case .fileNotFound = $0 { true } else { false }
        }
        assertBoth(directory, contains: ["directory"]) { if case .unreadable = $0 { true } else { false } }
    }

    func testTooShortFile() throws {
        let u = url("short.safetensors")
        try Data([1, 2, 3]).write(to: u)
        assertBoth(u, contains: ["short.safetensors", "3 bytes long", "8-byte header length"]) {
            if case .tooShort = $0 { true } else { false }
        }
        try Data().write(to: u)
        assertBoth(u, contains: ["0 bytes long"]) { if case .tooShort = $0 { true } else { false } }
    }

    func testTruncatedHeader() throws {
        try SafeTensors.write(sampleTensors(), to: url("full.safetensors"))
        let full = try Data(contentsOf: url("full.safetensors"))
        let u = url("cut.safetensors")
        try full.prefix(100).write(to: u)
        let n = full.prefix(8).reversed().reduce(0) { $0 << 8 | Int($1) }
        assertBoth(u, contains: ["cut.safetensors", "truncated", "header length is \(n) bytes", "only 92 bytes"]) {
            if case .headerLongerThanFile = $0 { true } else { false }
        }
    }

    func testAbsurdHeaderLength() throws {
        let u = try rawFile("huge.safetensors", header: "{}", length: 1 << 40)
        assertBoth(u, contains: ["huge.safetensors", "\(1 << 40)", "limit"]) {
            if case .headerTooLarge = $0 { true } else { false }
        }
    }

    func testTruncatedData() throws {
        try SafeTensors.write(["a": Tensor([Float](repeating: 1, count: 10)), "b": Tensor([1, 2], dtype: .int64)],
                              to: url("full.safetensors"))
        let full = try Data(contentsOf: url("full.safetensors"))
        let u = url("cut.safetensors")
        try full.dropLast(7).write(to: u)
        assertBoth(u, contains: ["cut.safetensors", "the file is truncated: expected 56 bytes of data, found 49"]) {
            $0 == .truncated(path: u.path, expectedDataBytes: 56, foundDataBytes: 49)
        }
    }

    func testGarbageHeader() throws {
        let notJSON = try rawFile("g1.safetensors", header: "this is not json")
        assertBoth(notJSON, contains: ["g1.safetensors", "not valid JSON", "byte 0"]) {
            if case .invalidHeader = $0 { true } else { false }
        }
        let notUTF8 = url("g2.safetensors")
        try Data([4, 0, 0, 0, 0, 0, 0, 0, 0x7B, 0xFF, 0xFE, 0x7D]).write(to: notUTF8)
        assertBoth(notUTF8, contains: ["g2.safetensors", "not valid UTF-8"]) {
            if case .invalidHeader = $0 { true } else { false }
        }
        let array = try rawFile("g3.safetensors", header: "[1, 2]")
        assertBoth(array, contains: ["an array, not a JSON object"]) { if case .invalidHeader = $0 { true } else { false } }
        let trailing = try rawFile("g4.safetensors", header: "{} x")
        assertBoth(trailing, contains: ["unexpected text after the JSON value"]) {
            if case .invalidHeader = $0 { true } else { false }
        }
        let deep = try rawFile("g5.safetensors", header: String(repeating: "[", count: 100_000))
        assertBoth(deep, contains: ["nesting deeper"]) { if case .invalidHeader = $0 { true } else { false } }
        let duplicate = try rawFile("g6.safetensors", header: #"{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"a":{}}"#)
        assertBoth(duplicate, contains: ["duplicate key \"a\""]) { if case .invalidHeader = $0 { true } else { false } }
        let unterminated = try rawFile("g7.safetensors", header: #"{"a"#)
        assertBoth(unterminated, contains: ["unterminated string"]) { if case .invalidHeader = $0 { true } else { false } }
    }

    func testBadMetadata() throws {
        let u = try rawFile("m.safetensors", header: #"{"__metadata__":{"epoch":3}}"#)
        assertBoth(u, contains: ["__metadata__", "'epoch'", "a number", "must be strings"]) {
            if case .invalidMetadata = $0 { true } else { false }
        }
        let list = try rawFile("l.safetensors", header: #"{"__metadata__":["a"]}"#)
        assertBoth(list, contains: ["__metadata__", "an array"]) { if case .invalidMetadata = $0 { true } else { false } }
    }

    /// `"__metadata__": null` (MLX's `save_safetensors` writes it) is no metadata, as in Hugging Face's reader.
    func testNullMetadataIsNone() throws {
        let url = try rawFile("null.safetensors", header: #"{"__metadata__":null,"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#, data: [7, 9])
        let file = try SafeTensors.read(contentsOf: url)
        XCTAssertEqual(file.metadata, [:])
        XCTAssertEqual(file.tensors["a"]?.shape, [2])
        XCTAssertEqual(try MappedSafeTensors(contentsOf: url).tensorNames, ["a"])
    }

    func testUnsupportedDType() throws {
        let u = try rawFile("f8.safetensors",
                            header: #"{"ok":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
                                + #""q":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[4,6]}}"#,
                            data: [0, 0, 128, 63, 1, 2])
        assertError(try SafeTensors.read(contentsOf: u), contains: ["f8.safetensors", "'q'", "F8_E4M3", "cannot load"]) {
            $0 == .unsupportedDType(path: u.path, tensor: "q", dtype: "F8_E4M3")
        }
        // The header alone is fine: inspect lists such tensors.
        let header = try SafeTensors.readHeader(contentsOf: u)
        XCTAssertNil(header["q"]?.dtype)
        XCTAssertEqual(header["q"]?.byteCount, 2)
        XCTAssertTrue(header.summary().contains("F8_E4M3 (not loadable)"))

        let unknown = try rawFile("x.safetensors", header: #"{"w":{"dtype":"X99","shape":[1],"data_offsets":[0,1]}}"#, data: [0])
        assertBoth(unknown, contains: ["'w'", "X99"]) { $0 == .unsupportedDType(path: unknown.path, tensor: "w", dtype: "X99") }
    }

    func testOffsetsMismatch() throws {
        let u = try rawFile("o.safetensors", header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}"#,
                            data: Array(repeating: 0, count: 12))
        assertBoth(u, contains: ["o.safetensors", "'w'", "span 12 bytes", "[2] of F32", "needs 8 bytes"]) {
            if case .invalidEntry = $0 { true } else { false }
        }
    }

    func testBadEntries() throws {
        let cases: [(String, [String])] = [
            (#"{"w":{"shape":[1],"data_offsets":[0,4]}}"#, ["'w'", "no \"dtype\""]),
            (#"{"w":{"dtype":"F32","data_offsets":[0,4]}}"#, ["no \"shape\""]),
            (#"{"w":{"dtype":"F32","shape":[1]}}"#, ["no \"data_offsets\""]),
            (#"{"w":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}"#, ["\"dtype\" is a number"]),
            (#"{"w":{"dtype":"F32","shape":"1","data_offsets":[0,4]}}"#, ["\"shape\" is a string"]),
            (#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, ["the number -1", "non-negative integers"]),
            (#"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, ["the number 1.5"]),
            (#"{"w":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}}"#, ["99999999999999999999"]),
            (#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, ["too many elements"]),
            (#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4]}}"#, ["two non-negative integers"]),
            (#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, ["ends before it begins"]),
            (#"{"w":[1,2]}"#, ["'w'", "an array, not an object"]),
        ]
        for (k, (header, facts)) in cases.enumerated() {
            let u = try rawFile("e\(k).safetensors", header: header, data: [0, 0, 0, 0])
            assertBoth(u, contains: ["e\(k).safetensors"] + facts) { if case .invalidEntry = $0 { true } else { false } }
        }
    }

    /// Found by Tools/fuzz/safetensors_fuzz.swift: an empty tensor whose other sizes multiply
    /// past Int.max passed the header check (its element count is 0), then trapped in Tensor's
    /// element count or strides when read.
    func testEmptyShapesWhoseOtherSizesOverflow() throws {
        for (k, shape) in ["[0,4611686018427387904,4]", "[4611686018427387904,4,0]", "[4611686018427387904,0,4]"].enumerated() {
            for dtype in ["F32", "F64", "BF16"] {
                let u = try rawFile("z\(k)\(dtype).safetensors", header: #"{"w":{"dtype":""# + dtype + #"","shape":"# + shape
                                    + #","data_offsets":[0,0]}}"#)
                assertBoth(u, contains: ["z\(k)\(dtype).safetensors", "'w'", "is empty, but its other sizes multiply past 2^63"]) {
                    if case .invalidEntry = $0 { true } else { false }
                }
                assertError(try MappedSafeTensors(contentsOf: u), contains: ["too many elements"]) {
                    if case .invalidEntry = $0 { true } else { false }
                }
            }
        }
        // Large but representable sizes around a 0 are an empty tensor.
        let u = try rawFile("big-empty.safetensors", header: #"{"w":{"dtype":"F64","shape":[4611686018427387904,0,1],"#
                            + #""data_offsets":[0,0]},"x":{"dtype":"F16","shape":[0,4611686018427387904],"data_offsets":[0,0]}}"#)
        let file = try SafeTensors.read(contentsOf: u)
        XCTAssertEqual(file["w"]?.shape, [1 << 62, 0, 1])
        XCTAssertEqual(file["w"]?.count, 0)
        XCTAssertEqual(try MappedSafeTensors(contentsOf: u).float32Tensor(named: "x").shape, [0, 1 << 62])
    }

    /// Found by Tools/fuzz/safetensors_fuzz.swift: JSON keys differ by bytes, Swift strings by
    /// canonical equivalence, so "\u00e9" and "e\u0301" were two tensors in the header but one
    /// in the dictionary `read` returns (and the mapping answered both names with one tensor).
    func testCanonicallyEquivalentNamesAreAnError() throws {
        let names = try rawFile("n.safetensors", header: #"{"\u00e9":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"#
                                + #""e\u0301":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#, data: [1, 2])
        assertBoth(names, contains: ["n.safetensors", "tensor names", "U+00E9", "U+0065 U+0301", "same Unicode text"]) {
            if case .invalidHeader = $0 { true } else { false }
        }
        assertError(try MappedSafeTensors(contentsOf: names), contains: ["same Unicode text"]) {
            if case .invalidHeader = $0 { true } else { false }
        }
        let keys = try rawFile("k.safetensors", header: #"{"__metadata__":{"K":"1","\u212a":"2"}}"#)
        assertBoth(keys, contains: ["k.safetensors", "__metadata__", "keys 'K' (U+004B)", "(U+212A)", "same Unicode text"]) {
            if case .invalidMetadata = $0 { true } else { false }
        }
        // Different text is fine, however close.
        let distinct = try rawFile("d.safetensors", header: #"{"\u00e9":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"#
                                   + #""e":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#, data: [1, 2])
        XCTAssertEqual(try SafeTensors.read(contentsOf: distinct).tensors.count, 2)
    }

    func testOverlapsHolesAndTrailingBytes() throws {
        let overlap = try rawFile("ov.safetensors", header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
                                    + #""b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: Array(repeating: 0, count: 8))
        assertBoth(overlap, contains: ["ov.safetensors", "'b'", "overlaps tensor 'a'"]) {
            if case .badLayout = $0 { true } else { false }
        }
        let hole = try rawFile("hole.safetensors", header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
                                 + #""b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#, data: Array(repeating: 0, count: 12))
        assertBoth(hole, contains: ["hole of 4 bytes at data offset 4", "between tensor 'a' and tensor 'b'"]) {
            if case .badLayout = $0 { true } else { false }
        }
        let start = try rawFile("start.safetensors", header: #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}"#,
                                data: [0, 0, 0])
        assertBoth(start, contains: ["hole of 2 bytes at data offset 0", "before the first tensor 'a'"]) {
            if case .badLayout = $0 { true } else { false }
        }
        let trailing = try rawFile("tr.safetensors", header: #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
                                   data: [0, 0, 0])
        assertBoth(trailing, contains: ["2 bytes of data follow the last tensor 'a'"]) {
            if case .badLayout = $0 { true } else { false }
        }
    }

    // MARK: - inspect

    func testSummary() throws {
        try SafeTensors.write(["layer.weight": Tensor([Float](repeating: 0, count: 2048), shape: [64, 32]),
                               "layer.bias": Tensor([Float](repeating: 0, count: 64)).to(.bfloat16),
                               "step": Tensor([3], shape: [], dtype: .int64)],
                              metadata: ["format": "pt"], to: url("s.safetensors"))
        let header = try SafeTensors.readHeader(contentsOf: url("s.safetensors"))
        let text = header.summary()
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertTrue(lines[0].hasPrefix(url("s.safetensors").path), text)
        XCTAssertTrue(lines.contains { $0.hasPrefix("layer.weight") && $0.contains("F32") && $0.contains("[64, 32]")
                                       && $0.contains("8192") && $0.contains("8.0 KiB") }, text)
        XCTAssertTrue(lines.contains { $0.hasPrefix("step") && $0.contains("I64") && $0.contains("[]") }, text)
        XCTAssertTrue(text.contains("3 tensors, 2,113 parameters, 8,328 bytes (8.1 KiB) of data"), text)
        XCTAssertTrue(text.contains("metadata:\n  format: pt"), text)
        XCTAssertFalse(lines.contains { $0.hasSuffix(" ") }, "no trailing spaces")

        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(header.summaryJSON().utf8)) as? [String: Any])
        XCTAssertEqual((json["tensor_count"] as? NSNumber)?.intValue, 3)
        XCTAssertEqual((json["parameter_count"] as? NSNumber)?.intValue, 2113)
        XCTAssertEqual((json["total_bytes"] as? NSNumber)?.intValue, 8328)
        XCTAssertEqual(json["metadata"] as? [String: String], ["format": "pt"])
        let tensors = try XCTUnwrap(json["tensors"] as? [[String: Any]])
        XCTAssertEqual(tensors.map { $0["name"] as? String }, ["step", "layer.weight", "layer.bias"])
        XCTAssertEqual(tensors[2]["lathe_dtype"] as? String, "bfloat16")
        XCTAssertEqual((tensors[1]["shape"] as? [NSNumber])?.map(\.intValue), [64, 32])

        XCTAssertEqual(SafeTensorsHeader.humanBytes(0), "0 B")
        XCTAssertEqual(SafeTensorsHeader.humanBytes(1536), "1.5 KiB")
        XCTAssertEqual(SafeTensorsHeader.humanBytes(3 << 30), "3.0 GiB")
    }

}

/// Crash-safe text files (reports, predictions).
final class AtomicFileTests: XCTestCase {
    func testReplacesTheFileAndLeavesNothingElseBehind() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-atomic-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("report.md")
        try AtomicFile.write("first", to: file)
        try AtomicFile.write("second, longer", to: file)
        XCTAssertEqual(try String(contentsOf: file, encoding: .utf8), "second, longer")

        // A failing writer leaves the old file and no temporary file.
        struct Boom: Error {}
        XCTAssertThrowsError(try AtomicFile.write(to: file) { handle in
            try handle.write(contentsOf: Data("partial".utf8))
            throw Boom()
        }) { error in
            XCTAssertTrue(error is AtomicFile.WriteError && "\(error)".hasPrefix("cannot write \(file.path)"), "\(error)")
        }
        XCTAssertEqual(try String(contentsOf: file, encoding: .utf8), "second, longer")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["report.md"])

        // A directory that does not exist is an error that names the file.
        let missing = directory.appendingPathComponent("no/such/dir/x.md")
        XCTAssertThrowsError(try AtomicFile.write("x", to: missing)) { error in
            XCTAssertTrue("\(error)".contains(missing.path) && "\(error)".contains("temporary file"), "\(error)")
        }
    }
}
