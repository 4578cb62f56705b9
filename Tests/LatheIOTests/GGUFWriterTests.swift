import Foundation
import LatheIO
import XCTest
import _LatheTestSupport

/// GGUFWriter: what it writes reads back exactly (metadata of every type, arrays, nested arrays,
/// tensors of every type), gguf-py's fixture files are reproduced byte for byte, and requests
/// that would make a file llama.cpp or Lathe refuses are errors before anything is written.
final class GGUFWriterTests: XCTestCase {
    var temporary: URL!

    override func setUpWithError() throws {
        temporary = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-ggufw-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: temporary)
    }

    static let everyValue: [GGUFKeyValue] = [
        .init(key: "general.architecture", value: .string("test")),
        .init(key: "t.u8", value: .uint8(250)), .init(key: "t.i8", value: .int8(-128)),
        .init(key: "t.u16", value: .uint16(65535)), .init(key: "t.i16", value: .int16(-32768)),
        .init(key: "t.u32", value: .uint32(4_000_000_000)), .init(key: "t.i32", value: .int32(-2_000_000_000)),
        .init(key: "t.u64", value: .uint64(UInt64.max)), .init(key: "t.i64", value: .int64(Int64.min)),
        .init(key: "t.f32", value: .float32(-0.0)), .init(key: "t.f32nan", value: .float32(Float(bitPattern: 0x7FC0_1234))),
        .init(key: "t.f64", value: .float64(.leastNonzeroMagnitude)), .init(key: "t.bool", value: .bool(true)),
        .init(key: "t.false", value: .bool(false)), .init(key: "t.str", value: .string("h\u{e9}llo \u{1F30D}\n\"\\")),
        .init(key: "t.empty", value: .string("")),
        .init(key: "t.a.u8", value: .array(.uint8([0, 255]))), .init(key: "t.a.i8", value: .array(.int8([-1, 1]))),
        .init(key: "t.a.u16", value: .array(.uint16([7]))), .init(key: "t.a.i16", value: .array(.int16([-7, 8]))),
        .init(key: "t.a.u32", value: .array(.uint32([1, 2, 3]))), .init(key: "t.a.i32", value: .array(.int32([-3]))),
        .init(key: "t.a.u64", value: .array(.uint64([.max]))), .init(key: "t.a.i64", value: .array(.int64([.min, 0]))),
        .init(key: "t.a.f32", value: .array(.float32([1.5, -.infinity]))), .init(key: "t.a.f64", value: .array(.float64([.pi]))),
        .init(key: "t.a.bool", value: .array(.bool([true, false, true]))),
        .init(key: "t.a.str", value: .array(.string(["a", "", "\u{65e5}\u{672c}"]))),
        .init(key: "t.a.empty", value: .array(.float32([]))),
        .init(key: "t.a.nested", value: .array(.array([.int32([1, 2]), .string(["x"]), .array([.uint8([9])])]))),
    ]

    /// Random-ish tensors of every type the writer can fill: quantised from floats for the
    /// types Lathe encodes, raw bytes for the others (the writer does not look inside).
    func sampleTensors() -> [(GGUFTensorDescriptor, [UInt8])] {
        var out: [(GGUFTensorDescriptor, [UInt8])] = []
        var rng = SplitMix(seed: 7)
        for (i, t) in GGMLType.quantizable.enumerated() {
            let dims = t.blockSize == 256 ? [256, 3] : [64, 3, 2]
            let values = (0..<dims.reduce(1, *)).map { _ in rng.normal() }
            out.append((GGUFTensorDescriptor(name: "q.\(i).\(t.name)", dimensions: dims, type: t), t.quantized(values, rowLength: dims[0])))
        }
        let raw = GGUFTensorDescriptor(name: "raw.iq4_nl", dimensions: [32, 5], type: .iq4_nl)
        out.append((raw, (0..<(5 * 18)).map { UInt8($0 & 0xFF) }))
        out.append((GGUFTensorDescriptor(name: "one", dimensions: [1], type: .f32), [0, 0, 128, 63]))
        return out
    }

    func testRoundTripEveryValueAndTensor() throws {
        let tensors = sampleTensors()
        for alignment: UInt32? in [nil, 64, 8, 1] {
            var metadata = Self.everyValue
            if let alignment { metadata.insert(.init(key: "general.alignment", value: .uint32(alignment)), at: 1) }
            let url = temporary.appendingPathComponent("rt-\(alignment ?? 0).gguf")
            try GGUFWriter.write(to: url, metadata: metadata, tensors: tensors.map(\.0)) { i, buffer in
                buffer.copyBytes(from: tensors[i].1)
            }
            let file = try GGUFFile(contentsOf: url)
            XCTAssertEqual(file.version, 3)
            XCTAssertEqual(file.alignment, Int(alignment ?? 32))
            XCTAssertEqual(file.warnings, [], "llama.cpp's packing")
            XCTAssertEqual(file.metadata.count, metadata.count)
            for (a, b) in zip(file.metadata, metadata) {
                XCTAssertEqual(a.key, b.key)
                // NaN payloads compare by bits.
                if case .float32(let x) = a.value, case .float32(let y) = b.value {
                    XCTAssertEqual(x.bitPattern, y.bitPattern, a.key)
                } else {
                    XCTAssertEqual(a.value, b.value, a.key)
                }
            }
            XCTAssertEqual(file.tensors.count, tensors.count)
            for (info, (desc, bytes)) in zip(file.tensors, tensors) {
                XCTAssertEqual(info.name, desc.name)
                XCTAssertEqual(info.dimensions, desc.dimensions)
                XCTAssertEqual(info.type, desc.type)
                XCTAssertEqual(Array(try file.tensorData(named: info.name)), bytes, info.name)
                XCTAssertEqual((file.dataOffset + info.offset) % file.alignment, 0)
            }
            let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int)
            let layout = try GGUFWriter.layout(metadata: metadata, tensors: tensors.map(\.0))
            XCTAssertEqual(size, layout.fileSize)
            XCTAssertEqual(layout.header.count, file.dataOffset)
            XCTAssertEqual(try GGUFWriter.bytes(metadata: metadata, tensors: tensors.map(\.0)) { $1.copyBytes(from: tensors[$0].1) },
                           Array(try Data(contentsOf: url)))
        }
    }

    /// Reading gguf-py's fixtures and writing them again gives the same bytes: the same header,
    /// value encodings, offsets and padding as gguf-py's GGUFWriter.
    func testRewritesGGUFPyFilesByteForByte() throws {
        for name in ["all_types.gguf", "align64.gguf"] {
            let url = fixturesDirectory.appendingPathComponent("gguf/\(name)")
            let file = try GGUFFile(contentsOf: url)
            let descriptors = file.tensors.map { GGUFTensorDescriptor(name: $0.name, dimensions: $0.dimensions, type: $0.type) }
            let out = temporary.appendingPathComponent(name)
            try GGUFWriter.write(to: out, metadata: file.metadata, tensors: descriptors) { i, buffer in
                buffer.copyMemory(from: try file.tensorData(named: descriptors[i].name))
            }
            XCTAssertEqual(Array(try Data(contentsOf: out)), Array(try Data(contentsOf: url)), name)
        }
    }

    func testEmptyFileAndDescriptorShape() throws {
        let bytes = try GGUFWriter.bytes(metadata: [], tensors: []) { _, _ in }
        let file = try GGUFFile(bytes: bytes)
        XCTAssertEqual(file.metadata.count, 0)
        XCTAssertEqual(file.tensors.count, 0)
        let d = GGUFTensorDescriptor(name: "w", shape: [10, 64], type: .q8_0)
        XCTAssertEqual(d.dimensions, [64, 10])
        XCTAssertEqual(d.shape, [10, 64])
    }

    func testInvalidRequestsAreErrorsAndLeaveNoFile() throws {
        let t = GGUFTensorDescriptor(name: "w", dimensions: [32], type: .q8_0)
        func expectError(_ metadata: [GGUFKeyValue], _ tensors: [GGUFTensorDescriptor], _ fragment: String,
                         file: StaticString = #filePath, line: UInt = #line) {
            let url = temporary.appendingPathComponent("bad.gguf")
            XCTAssertThrowsError(try GGUFWriter.write(to: url, metadata: metadata, tensors: tensors) { _, _ in }, file: file, line: line) { e in
                XCTAssertTrue("\(e)".contains(fragment), "\(e)", file: file, line: line)
                XCTAssertTrue("\(e)".contains(url.path), "\(e)", file: file, line: line)
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: url.path), file: file, line: line)
            let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: temporary.path)) ?? []
            XCTAssertEqual(leftovers.filter { $0.hasSuffix(".tmp") }, [], file: file, line: line)
        }
        expectError([.init(key: "", value: .uint8(1))], [], "key is empty")
        expectError([.init(key: "a", value: .uint8(1)), .init(key: "a", value: .uint8(2))], [], "appears twice")
        expectError([.init(key: "caf\u{e9}", value: .uint8(1))], [], "printable ASCII")
        expectError([.init(key: "general.alignment", value: .uint64(32))], [t], "u32 power of two")
        expectError([.init(key: "general.alignment", value: .uint32(48))], [t], "u32 power of two")
        expectError([.init(key: "general.alignment", value: .uint32(0))], [t], "u32 power of two")
        expectError([], [GGUFTensorDescriptor(name: String(repeating: "n", count: 64), dimensions: [32], type: .f32)], "at most 63")
        expectError([], [t, t], "appears twice")
        expectError([], [GGUFTensorDescriptor(name: "", dimensions: [32], type: .f32)], "name is empty")
        expectError([], [GGUFTensorDescriptor(name: "x", dimensions: [], type: .f32)], "1 to 4")
        expectError([], [GGUFTensorDescriptor(name: "x", dimensions: [1, 1, 1, 1, 1], type: .f32)], "1 to 4")
        expectError([], [GGUFTensorDescriptor(name: "x", dimensions: [32, 0], type: .f32)], "below 1")
        expectError([], [GGUFTensorDescriptor(name: "x", dimensions: [48], type: .q4_K)], "blocks of 256")
        expectError([], [GGUFTensorDescriptor(name: "x", dimensions: [Int.max / 8, 2], type: .f32)], "overflows")
        var deep = GGUFArray.uint8([1])
        for _ in 0..<17 { deep = .array([deep]) }
        expectError([.init(key: "deep", value: .array(deep))], [], "nest")
    }

    /// An error thrown while a tensor is produced reaches the caller as it is, and the file
    /// that was there stays.
    func testDataErrorKeepsOldFile() throws {
        struct Boom: Error {}
        let url = temporary.appendingPathComponent("keep.gguf")
        try Data("old".utf8).write(to: url)
        let tensors = [GGUFTensorDescriptor(name: "a", dimensions: [4], type: .f32), GGUFTensorDescriptor(name: "b", dimensions: [4], type: .f32)]
        XCTAssertThrowsError(try GGUFWriter.write(to: url, metadata: [], tensors: tensors) { i, _ in if i == 1 { throw Boom() } }) {
            XCTAssertTrue($0 is Boom, "\($0)")
        }
        XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), "old")
        XCTAssertThrowsError(try GGUFWriter.write(to: temporary.appendingPathComponent("no/such/dir.gguf"), metadata: [], tensors: []) { _, _ in }) {
            XCTAssertTrue("\($0)".contains("cannot write the GGUF file"), "\($0)")
        }
    }
}
