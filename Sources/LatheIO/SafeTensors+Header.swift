import Foundation
import LatheTensor

/// The header of a safetensors file: what each tensor is and where its bytes are, without the
/// data. ``SafeTensors/readHeader(contentsOf:)`` reads only this part of a file.
public struct SafeTensorsHeader: Sendable, Equatable {
    /// One tensor's description.
    public struct Entry: Sendable, Equatable {
        public let name: String
        /// The dtype as the file spells it (`F32`, `BF16`, `F8_E4M3`, ...).
        public let fileDType: String
        /// The Lathe dtype the tensor has once loaded, `nil` if Lathe cannot load it.
        /// `F64` loads as `.float32` (see ``isConvertedOnLoad``).
        public let dtype: DType?
        public let shape: [Int]
        /// The tensor's bytes, relative to the start of the data section (the file's
        /// `data_offsets`).
        public let dataOffsets: Range<Int>

        /// Number of elements (1 for a scalar, shape `[]`).
        public var elementCount: Int { shape.reduce(1, *) }
        /// Bytes the tensor takes in the file.
        public var byteCount: Int { dataOffsets.count }
        /// True when loading changes the element type (`F64` is loaded as float32).
        public var isConvertedOnLoad: Bool { fileDType == "F64" }
    }

    /// The file the header was read from.
    public let path: String
    /// The tensors in the order of their data in the file.
    public let entries: [Entry]
    /// The `__metadata__` strings (empty if the file has none).
    public let metadata: [String: String]
    /// Bytes of the header JSON (including padding), as stored in the file's first 8 bytes.
    public let headerSize: Int
    /// Bytes of the whole file.
    public let fileSize: Int

    /// Offset in the file of the data section (after the length and the header).
    public var dataStart: Int { 8 + headerSize }
    /// Tensor names in the order of their data in the file.
    public var names: [String] { entries.map(\.name) }
    /// Total elements over all tensors.
    public var parameterCount: Int { entries.reduce(0) { $0 + $1.elementCount } }
    /// Total bytes of tensor data.
    public var dataByteCount: Int { entries.reduce(0) { $0 + $1.byteCount } }
    /// The entry for `name`, if present.
    public subscript(name: String) -> Entry? { entries.first { $0.name == name } }
}

extension SafeTensors {
    /// The format's limit on the header length (as in the reference implementation).
    public static let maxHeaderSize = 100_000_000

    /// The file dtypes Lathe loads, in the spelling of the format.
    public static let supportedDTypeNames = ["F32", "F16", "BF16", "I64", "I32", "I8", "U8", "BOOL", "F64 (as F32)"]

    /// Every dtype the format defines: bits per element and the Lathe dtype it loads as.
    static let fileDTypes: [String: (bits: Int, dtype: DType?)] = [
        "BOOL": (8, .bool), "U8": (8, .uint8), "I8": (8, .int8),
        "F16": (16, .float16), "BF16": (16, .bfloat16), "I32": (32, .int32), "F32": (32, .float32),
        "I64": (64, .int64), "F64": (64, .float32),
        "F4": (4, nil), "F6_E2M3": (6, nil), "F6_E3M2": (6, nil),
        "F8_E5M2": (8, nil), "F8_E4M3": (8, nil), "F8_E8M0": (8, nil),
        "I16": (16, nil), "U16": (16, nil), "U32": (32, nil), "U64": (64, nil), "C64": (64, nil),
    ]

    /// The file spelling of a Lathe dtype and its place in the reference writer's data order
    /// (tensors with a higher rank come first; ties by name).
    static func fileDType(_ dtype: DType) -> (name: String, rank: Int) {
        switch dtype {
        case .int64: ("I64", 8)
        case .float32: ("F32", 7)
        case .int32: ("I32", 6)
        case .bfloat16: ("BF16", 5)
        case .float16: ("F16", 4)
        case .int8: ("I8", 3)
        case .uint8: ("U8", 2)
        case .bool: ("BOOL", 1)
        }
    }

    /// The header length from the first 8 bytes, checked against the file size and the limit.
    static func headerLength(first8 bytes: UnsafeRawBufferPointer, fileSize: Int, path: String) throws -> Int {
        guard fileSize >= 8, bytes.count >= 8 else { throw SafeTensorsError.tooShort(path: path, fileSize: fileSize) }
        var n: UInt64 = 0
        for k in (0..<8).reversed() { n = n << 8 | UInt64(bytes[k]) }
        guard n <= UInt64(maxHeaderSize) else { throw SafeTensorsError.headerTooLarge(path: path, headerSize: n) }
        guard n <= UInt64(fileSize - 8) else {
            throw SafeTensorsError.headerLongerThanFile(path: path, headerSize: n, fileSize: fileSize)
        }
        return Int(n)
    }

    /// Parses and validates the header JSON `bytes` of a file of `fileSize` bytes.
    static func parseHeader(_ bytes: UnsafeRawBufferPointer, fileSize: Int, path: String) throws -> SafeTensorsHeader {
        func bad(_ reason: String) -> SafeTensorsError { .invalidHeader(path: path, reason: reason) }
        guard isValidUTF8(bytes) else { throw bad("it is not valid UTF-8 text (is this a safetensors file?)") }
        let root: JSONValue
        do { root = try JSONParser.parse(bytes) } catch {
            throw bad("it is not valid JSON (\(error)) (is this a safetensors file?)")
        }
        guard case .object(let members) = root else { throw bad("it is \(root.kindName), not a JSON object") }

        var metadata: [String: String] = [:]
        var metadataKeys: [String: String] = [:]
        var entries: [SafeTensorsHeader.Entry] = []
        entries.reserveCapacity(members.count)
        // The JSON reader refuses keys with the same bytes; Swift strings (the keys of the
        // tensor and metadata dictionaries) are also equal when only their Unicode forms differ
        // ("\u00e9" and "e\u0301"), which would make one tensor or value hide the other.
        var names: [String: String] = [:]
        names.reserveCapacity(members.count)
        for (name, value) in members {
            if name == "__metadata__" {
                // null is no metadata, as Hugging Face's reader (an optional map) takes it; MLX writes it.
                if value == .null { continue }
                guard case .object(let pairs) = value else {
                    throw SafeTensorsError.invalidMetadata(path: path, reason: "it is \(value.kindName), not an object of strings")
                }
                for (k, v) in pairs {
                    guard case .string(let s) = v else {
                        throw SafeTensorsError.invalidMetadata(
                            path: path, reason: "the value of '\(k)' is \(v.kindName); metadata values must be strings")
                    }
                    if let earlier = metadataKeys.updateValue(k, forKey: k) {
                        throw SafeTensorsError.invalidMetadata(path: path, reason: "the keys " + sameTextTwice(earlier, k))
                    }
                    metadata[k] = s
                }
                continue
            }
            if let earlier = names.updateValue(name, forKey: name) {
                throw bad("the tensor names " + sameTextTwice(earlier, name))
            }
            entries.append(try parseEntry(name: name, value, path: path))
        }

        // Data order; a stable sort keeps the header order for empty tensors at the same offset.
        let ordered = entries.enumerated().sorted {
            ($0.element.dataOffsets.lowerBound, $0.element.dataOffsets.upperBound, $0.offset)
                < ($1.element.dataOffsets.lowerBound, $1.element.dataOffsets.upperBound, $1.offset)
        }.map(\.element)

        // The tensors must cover the data section from 0 without overlaps or holes.
        let dataSize = fileSize - 8 - bytes.count
        var end = 0
        var previous: String?
        for e in ordered {
            let begin = e.dataOffsets.lowerBound
            if begin < end, let previous {
                throw SafeTensorsError.badLayout(path: path, reason:
                    "tensor '\(e.name)' (bytes \(begin)..<\(e.dataOffsets.upperBound)) overlaps tensor '\(previous)' "
                    + "(which ends at \(end))")
            }
            if begin > end {
                throw SafeTensorsError.badLayout(path: path, reason:
                    "there is a hole of \(begin - end) bytes at data offset \(end) "
                    + (previous.map { "between tensor '\($0)' and tensor '\(e.name)'" } ?? "before the first tensor '\(e.name)'")
                    + "; the format requires tensors to cover the data without gaps")
            }
            end = e.dataOffsets.upperBound
            previous = e.name
        }
        if end > dataSize {
            throw SafeTensorsError.truncated(path: path, expectedDataBytes: end, foundDataBytes: dataSize)
        }
        if end < dataSize {
            throw SafeTensorsError.badLayout(path: path, reason:
                "\(dataSize - end) bytes of data follow the last tensor"
                + (previous.map { " '\($0)'" } ?? "") + " (the header describes \(end) bytes, the file holds \(dataSize))")
        }
        return SafeTensorsHeader(path: path, entries: ordered, metadata: metadata, headerSize: bytes.count, fileSize: fileSize)
    }

    private static func parseEntry(name: String, _ value: JSONValue, path: String) throws -> SafeTensorsHeader.Entry {
        func bad(_ reason: String) -> SafeTensorsError { .invalidEntry(path: path, tensor: name, reason: reason) }
        guard case .object(let fields) = value else { throw bad("the entry is \(value.kindName), not an object") }
        func field(_ key: String) throws -> JSONValue {
            guard let v = fields.first(where: { $0.key == key })?.value else { throw bad("the entry has no \"\(key)\"") }
            return v
        }
        guard case .string(let dtypeName) = try field("dtype") else {
            throw bad("\"dtype\" is \(try field("dtype").kindName), not a string such as \"F32\"")
        }
        guard case .array(let shapeValues) = try field("shape") else {
            throw bad("\"shape\" is \(try field("shape").kindName), not an array of sizes")
        }
        var shape: [Int] = []
        // The product of the non-zero sizes: a tensor's strides and element count are computed
        // from it (a size 0 makes the count 0 but not the strides), so it must fit in an Int
        // even when the tensor is empty.
        var nonZeroProduct = 1
        var countOverflow = false
        for v in shapeValues {
            guard let d = v.nonNegativeInt else {
                throw bad("\"shape\" holds \(v.kindName == "a number" ? "the number \(numberText(v))" : v.kindName); "
                          + "sizes must be non-negative integers")
            }
            shape.append(d)
            guard d > 0 else { continue }
            let (c, o) = nonZeroProduct.multipliedReportingOverflow(by: d)
            nonZeroProduct = c
            countOverflow = countOverflow || o
        }
        guard case .array(let offsetValues) = try field("data_offsets") else {
            throw bad("\"data_offsets\" is \(try field("data_offsets").kindName), not an array [begin, end]")
        }
        guard offsetValues.count == 2, let begin = offsetValues[0].nonNegativeInt, let end = offsetValues[1].nonNegativeInt else {
            throw bad("\"data_offsets\" must be two non-negative integers [begin, end]")
        }
        guard begin <= end else { throw bad("\"data_offsets\" [\(begin), \(end)] ends before it begins") }
        guard let info = fileDTypes[dtypeName] else {
            throw SafeTensorsError.unsupportedDType(path: path, tensor: name, dtype: dtypeName)
        }
        if countOverflow {
            throw bad(shape.contains(0) ? "shape \(shape) is empty, but its other sizes multiply past 2^63 (too many elements)"
                                        : "shape \(shape) has too many elements")
        }
        let elements = shape.contains(0) ? 0 : nonZeroProduct
        let (bits, o) = elements.multipliedReportingOverflow(by: info.bits)
        guard !o else { throw bad("shape \(shape) of \(dtypeName) is too large") }
        guard bits % 8 == 0 else {
            throw bad("\(elements) elements of \(dtypeName) (\(info.bits) bits each) do not fill whole bytes")
        }
        guard end - begin == bits / 8 else {
            throw bad("\"data_offsets\" [\(begin), \(end)] span \(end - begin) bytes, but shape \(shape) of \(dtypeName) "
                      + "needs \(bits / 8) bytes")
        }
        return .init(name: name, fileDType: dtypeName, dtype: info.dtype, shape: shape, dataOffsets: begin..<end)
    }

    /// Says that `a` and `b` (different bytes) are the same Unicode text, with their code points.
    private static func sameTextTwice(_ a: String, _ b: String) -> String {
        func points(_ s: String) -> String {
            let scalars = s.unicodeScalars.prefix(16).map { c -> String in
                let hex = String(c.value, radix: 16, uppercase: true)
                return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
            }
            return scalars.joined(separator: " ") + (s.unicodeScalars.count > 16 ? " ..." : "")
        }
        return "'\(a)' (\(points(a))) and '\(b)' (\(points(b))) are the same Unicode text written two ways "
            + "(canonically equivalent); Lathe cannot tell them apart, rename one"
    }

    private static func numberText(_ v: JSONValue) -> String {
        if case .number(let t) = v { return t }
        return "?"
    }
}
