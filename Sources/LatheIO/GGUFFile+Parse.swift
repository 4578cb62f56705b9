// Parsing and validating a GGUF file's header, metadata and tensor descriptions.
//
// The bytes come from untrusted files, so every read goes through `GGUFByteReader`, which checks
// the bytes left before it reads; every count is checked against the bytes that could hold it
// before anything is allocated; every size is computed with overflow checks. Every problem is a
// `GGUFError` naming the field. Layout: ggml's `include/gguf.h` and `docs/gguf.md`; the checks
// follow `gguf_init_from_reader` in ggml's `src/gguf.cpp`, stricter where noted.

/// A cursor over the file's bytes that never reads past the end.
struct GGUFByteReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var offset = 0

    init(_ bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }

    var remaining: Int { bytes.count - offset }

    /// The next `n` bytes; throws `truncated` (describing `what`) if the file is shorter.
    mutating func take(_ n: Int, _ what: @autoclosure () -> String) throws(GGUFError) -> UnsafeRawBufferPointer {
        guard n >= 0, n <= remaining else {
            throw .truncated(path: path, what: what(), offset: offset, needed: n, fileSize: bytes.count)
        }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n])
        offset += n
        return slice
    }

    mutating func load<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws(GGUFError) -> T {
        let size = MemoryLayout<T>.size
        guard size <= remaining else {
            throw .truncated(path: path, what: what(), offset: offset, needed: size, fileSize: bytes.count)
        }
        let value = T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += size
        return value
    }

    /// A length-prefixed string's bytes (u64 length, then the bytes). A length over `limit`
    /// throws `tooLong(length)`; a length past the end of the file throws `truncated`.
    mutating func stringBytes(limit: Int, _ what: @autoclosure () -> String,
                              tooLong: (UInt64) -> GGUFError) throws(GGUFError) -> UnsafeRawBufferPointer {
        let n = try load(UInt64.self, "the length of " + what())
        guard n <= UInt64(limit) else { throw tooLong(n) }
        return try take(Int(n), what() + " (a string of \(n) bytes)")
    }
}

/// Everything `GGUFFile` learns from the bytes.
struct GGUFParsed {
    var version: UInt32 = 0
    var metadata: [GGUFKeyValue] = []
    var keyIndex: [String: Int] = [:]
    var tensors: [GGUFTensorInfo] = []
    var tensorIndex: [String: Int] = [:]
    var alignment = GGUFFile.defaultAlignment
    var dataOffset = 0
    var warnings: [String] = []
}

extension GGUFFile {
    /// `general.alignment` when the file has none.
    public static let defaultAlignment = 32
    /// The versions Lathe reads (2 and 3 have the same layout; 1 used 32-bit counts).
    public static let supportedVersions: ClosedRange<UInt32> = 2...3
    /// The longest string (key, value or name) Lathe reads: 1 GiB, as gguf.cpp.
    public static let maxStringLength = 1 << 30
    /// The most elements an array may have: 2^30, as gguf.cpp.
    public static let maxArrayElements = 1 << 30
    /// The longest key: 65,535 bytes, as the GGUF specification says.
    public static let maxKeyLength = 65_535
    /// The longest tensor name: 63 bytes (ggml's `GGML_MAX_NAME` is 64 with the terminating zero).
    public static let maxTensorNameLength = 63
    /// The most dimensions a tensor may have (`GGML_MAX_DIMS`).
    public static let maxDimensions = 4
    /// How deep arrays may nest (gguf.cpp allows none; gguf-py any; Lathe 16).
    public static let maxArrayDepth = 16

    /// Bytes the smallest key-value entry takes: key length, a 1-byte key, value type, a 1-byte value.
    static let minimumKeyValueBytes = 8 + 1 + 4 + 1
    /// Bytes the smallest tensor description takes: name length, a 1-byte name, n_dims = 0, type, offset.
    static let minimumTensorInfoBytes = 8 + 1 + 4 + 4 + 8

    /// Parses and validates the whole of `bytes` (the file) named `path`.
    static func parse(_ bytes: UnsafeRawBufferPointer, path: String) throws(GGUFError) -> GGUFParsed {
        var r = GGUFByteReader(bytes, path: path)
        var out = GGUFParsed()

        // Magic and version.
        let magic: [UInt8] = [0x47, 0x47, 0x55, 0x46]  // "GGUF"
        guard bytes.count >= 4 else {
            throw .notGGUF(path: path, reason: "it is \(bytes.count) byte\(bytes.count == 1 ? "" : "s") long, "
                           + "too short for the 4-byte magic \"GGUF\"")
        }
        guard bytes.prefix(4).elementsEqual(magic) else {
            throw .notGGUF(path: path, reason: "it starts with \(describeMagic(bytes.prefix(4))), not \"GGUF\"")
        }
        r.offset = 4
        let version = try r.load(UInt32.self, "the version")
        if version == 0 || version & 0xFFFF == 0 {
            let reason = version == 0 ? "version 0 is not a GGUF version"
                : "the version field reads 0x\(String(version, radix: 16)), which is what a big-endian GGUF file "
                  + "looks like; Lathe reads little-endian files only (convert with gguf-py's gguf-convert-endian)"
            throw .unsupportedVersion(path: path, version: version, reason: reason)
        }
        if version == 1 {
            throw .unsupportedVersion(path: path, version: version, reason:
                "GGUF v1 (32-bit counts) is no longer read by Lathe or llama.cpp; convert the file with a current llama.cpp")
        }
        guard supportedVersions.contains(version) else {
            throw .unsupportedVersion(path: path, version: version, reason: "Lathe reads GGUF versions 2 and 3")
        }
        out.version = version

        // Counts: each entry takes some bytes, so a count the rest of the file cannot hold is
        // rejected before anything is reserved (gguf.cpp checks counts against the same bytes).
        let tensorCount = try r.load(UInt64.self, "the tensor count")
        let kvCount = try r.load(UInt64.self, "the metadata key-value count")
        let rest = UInt64(r.remaining)
        let maxTensors = rest / UInt64(minimumTensorInfoBytes), maxKV = rest / UInt64(minimumKeyValueBytes)
        guard tensorCount <= maxTensors else {
            throw .invalidHeader(path: path, reason: "it says the file has \(tensorCount) tensors, but the \(rest) bytes "
                                 + "after the header can describe at most \(maxTensors) (is the file truncated?)")
        }
        guard kvCount <= maxKV else {
            throw .invalidHeader(path: path, reason: "it says the file has \(kvCount) metadata keys, but the \(rest) bytes "
                                 + "after the header can hold at most \(maxKV) (is the file truncated?)")
        }
        guard kvCount * UInt64(minimumKeyValueBytes) + tensorCount * UInt64(minimumTensorInfoBytes) <= rest else {
            throw .invalidHeader(path: path, reason: "\(kvCount) metadata keys and \(tensorCount) tensors cannot fit "
                                 + "in the \(rest) bytes after the header (is the file truncated?)")
        }

        // Metadata.
        out.metadata.reserveCapacity(Int(kvCount))
        out.keyIndex.reserveCapacity(Int(kvCount))
        for i in 0..<Int(kvCount) {
            let keyOffset = r.offset
            let keyBytes = try r.stringBytes(limit: maxKeyLength, "the key of metadata entry \(i)") { n in
                .invalidMetadata(path: path, key: "entry \(i) (at offset \(keyOffset))",
                                 reason: "its key is \(n) bytes long; GGUF keys are at most \(maxKeyLength) bytes")
            }
            let key = try validKey(keyBytes, index: i, offset: keyOffset, path: path)
            if let first = out.keyIndex[key] {
                throw .invalidMetadata(path: path, key: "'\(key)'", reason:
                    "the key appears twice (entries \(first) and \(i)); keys must be unique")
            }
            let typeID = try r.load(Int32.self, "the value type of '\(key)'")
            guard let type = GGUFValueType(rawValue: typeID) else {
                throw .invalidMetadata(path: path, key: "'\(key)'", reason:
                    "value type \(typeID) is not a GGUF value type (0-12)")
            }
            let value = try readValue(type, &r, key: key, depth: 0)
            out.keyIndex[key] = out.metadata.count
            out.metadata.append(GGUFKeyValue(key: key, value: value))
        }

        // Alignment (gguf.cpp: must be a u32, non-zero power of two).
        if let index = out.keyIndex["general.alignment"] {
            let value = out.metadata[index].value
            guard case .uint32(let a) = value else {
                throw .invalidMetadata(path: path, key: "'general.alignment'", reason:
                    "it is of type \(value.typeName); it must be a u32")
            }
            guard a != 0, a & (a - 1) == 0 else {
                throw .invalidMetadata(path: path, key: "'general.alignment'", reason:
                    "it is \(a); it must be a power of two")
            }
            out.alignment = Int(a)
        }

        // Tensor descriptions.
        out.tensors.reserveCapacity(Int(tensorCount))
        out.tensorIndex.reserveCapacity(Int(tensorCount))
        var rawOffsets: [UInt64] = []
        rawOffsets.reserveCapacity(Int(tensorCount))
        for i in 0..<Int(tensorCount) {
            let (info, rawOffset) = try readTensorInfo(&r, index: i, alignment: out.alignment, path: path)
            if let first = out.tensorIndex[info.name] {
                throw .invalidTensorInfo(path: path, tensor: "'\(info.name)'", reason:
                    "the name appears twice (tensors \(first) and \(i)); tensor names must be unique")
            }
            out.tensorIndex[info.name] = out.tensors.count
            out.tensors.append(info)
            rawOffsets.append(rawOffset)
        }

        // The data section starts at the next multiple of the alignment (gguf.cpp pads only when
        // there are tensors: a file of metadata alone may end right after it).
        // (r.offset is at most the file size and the alignment at most 2^31: no overflow.)
        out.dataOffset = (r.offset + out.alignment - 1) / out.alignment * out.alignment
        if tensorCount == 0 {
            out.dataOffset = min(out.dataOffset, bytes.count)
        } else if out.dataOffset > bytes.count {
            throw .truncated(path: path, what: "the padding before the data section", offset: r.offset,
                             needed: out.dataOffset - r.offset, fileSize: bytes.count)
        }
        try checkLayout(&out, rawOffsets: rawOffsets, fileSize: bytes.count, path: path)
        return out
    }

    /// The key's text: 1 to 65,535 bytes of printable ASCII (the specification's rule; gguf.cpp
    /// only requires it to be non-empty).
    private static func validKey(_ bytes: UnsafeRawBufferPointer, index: Int, offset: Int,
                                 path: String) throws(GGUFError) -> String {
        let at = "entry \(index) (at offset \(offset))"
        guard !bytes.isEmpty else { throw .invalidMetadata(path: path, key: at, reason: "the key is empty") }
        if let bad = bytes.firstIndex(where: { $0 < 0x20 || $0 > 0x7E }) {
            let prefix = String(decoding: bytes[..<bad], as: UTF8.self)
            throw .invalidMetadata(path: path, key: at, reason:
                "the key has byte 0x\(String(bytes[bad], radix: 16)) at position \(bad) (after \"\(prefix)\"); "
                + "GGUF keys are printable ASCII")
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Reads one value of `type` (elements of arrays included, recursively).
    private static func readValue(_ type: GGUFValueType, _ r: inout GGUFByteReader, key: String,
                                  depth: Int) throws(GGUFError) -> GGUFValue {
        let what = depth == 0 ? "the value of '\(key)'" : "an element of array '\(key)'"
        switch type {
        case .uint8: return .uint8(try r.load(UInt8.self, what))
        case .int8: return .int8(try r.load(Int8.self, what))
        case .uint16: return .uint16(try r.load(UInt16.self, what))
        case .int16: return .int16(try r.load(Int16.self, what))
        case .uint32: return .uint32(try r.load(UInt32.self, what))
        case .int32: return .int32(try r.load(Int32.self, what))
        case .uint64: return .uint64(try r.load(UInt64.self, what))
        case .int64: return .int64(try r.load(Int64.self, what))
        case .float32: return .float32(Float(bitPattern: try r.load(UInt32.self, what)))
        case .float64: return .float64(Double(bitPattern: try r.load(UInt64.self, what)))
        case .bool:
            let b = try r.load(UInt8.self, what)
            guard b <= 1 else {
                throw .invalidMetadata(path: r.path, key: "'\(key)'", reason: "a bool is stored as byte \(b); it must be 0 or 1")
            }
            return .bool(b == 1)
        case .string: return .string(try readString(&r, key: key, what: what))
        case .array: return .array(try readArray(&r, key: key, depth: depth + 1))
        }
    }

    private static func readString(_ r: inout GGUFByteReader, key: String, what: @autoclosure () -> String) throws(GGUFError) -> String {
        let path = r.path
        let bytes = try r.stringBytes(limit: maxStringLength, what()) { n in
            .invalidMetadata(path: path, key: "'\(key)'", reason:
                "a string is \(n) bytes long, over the limit of \(maxStringLength) bytes")
        }
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw .invalidMetadata(path: path, key: "'\(key)'", reason: "a string is not valid UTF-8")
        }
        return s
    }

    private static func readArray(_ r: inout GGUFByteReader, key: String, depth: Int) throws(GGUFError) -> GGUFArray {
        let path = r.path
        func bad(_ reason: String) -> GGUFError { .invalidMetadata(path: path, key: "'\(key)'", reason: reason) }
        let typeID = try r.load(Int32.self, "the element type of array '\(key)'")
        guard let type = GGUFValueType(rawValue: typeID) else {
            throw bad("an array's element type \(typeID) is not a GGUF value type (0-12)")
        }
        if type == .array && depth >= maxArrayDepth {
            throw bad("arrays nest more than \(maxArrayDepth) deep")
        }
        let count64 = try r.load(UInt64.self, "the element count of array '\(key)'")
        guard count64 <= UInt64(maxArrayElements) else {
            throw bad("an array has \(count64) elements, over the limit of \(maxArrayElements)")
        }
        let count = Int(count64)
        // Every element takes at least this many bytes: refuse counts the file cannot hold before
        // reserving memory for them.
        let least = count * type.minimumByteCount
        guard least <= r.remaining else {
            throw .truncated(path: path, what: "array '\(key)' (\(count) elements of type \(type.name))",
                             offset: r.offset, needed: least, fileSize: r.bytes.count)
        }
        let what = "array '\(key)' (\(count) elements of type \(type.name))"
        func fixed<T: FixedWidthInteger>(_: T.Type) throws(GGUFError) -> [T] {
            let raw = try r.take(count * MemoryLayout<T>.size, what)
            return (0..<count).map { T(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self)) }
        }
        switch type {
        case .uint8: return .uint8(try fixed(UInt8.self))
        case .int8: return .int8(try fixed(Int8.self))
        case .uint16: return .uint16(try fixed(UInt16.self))
        case .int16: return .int16(try fixed(Int16.self))
        case .uint32: return .uint32(try fixed(UInt32.self))
        case .int32: return .int32(try fixed(Int32.self))
        case .uint64: return .uint64(try fixed(UInt64.self))
        case .int64: return .int64(try fixed(Int64.self))
        case .float32: return .float32(try fixed(UInt32.self).map { Float(bitPattern: $0) })
        case .float64: return .float64(try fixed(UInt64.self).map { Double(bitPattern: $0) })
        case .bool:
            let raw = try fixed(UInt8.self)
            if let i = raw.firstIndex(where: { $0 > 1 }) {
                throw bad("bool element \(i) is stored as byte \(raw[i]); it must be 0 or 1")
            }
            return .bool(raw.map { $0 == 1 })
        case .string:
            var strings: [String] = []
            strings.reserveCapacity(count)
            for i in 0..<count {
                strings.append(try readString(&r, key: key, what: "element \(i) of array '\(key)'"))
            }
            return .string(strings)
        case .array:
            var arrays: [GGUFArray] = []
            arrays.reserveCapacity(count)
            for _ in 0..<count { arrays.append(try readArray(&r, key: key, depth: depth + 1)) }
            return .array(arrays)
        }
    }

    /// Reads tensor description `index`; returns it with its offset as stored.
    private static func readTensorInfo(_ r: inout GGUFByteReader, index: Int, alignment: Int,
                                       path: String) throws(GGUFError) -> (GGUFTensorInfo, UInt64) {
        let at = "\(index) (at offset \(r.offset))"
        let nameBytes = try r.stringBytes(limit: maxTensorNameLength, "the name of tensor \(index)") { n in
            .invalidTensorInfo(path: path, tensor: at, reason:
                "its name is \(n) bytes long; GGML allows at most \(maxTensorNameLength)")
        }
        guard !nameBytes.isEmpty else { throw .invalidTensorInfo(path: path, tensor: at, reason: "its name is empty") }
        guard let name = String(validating: nameBytes, as: UTF8.self) else {
            throw .invalidTensorInfo(path: path, tensor: at, reason: "its name is not valid UTF-8")
        }
        func bad(_ reason: String) -> GGUFError { .invalidTensorInfo(path: path, tensor: "'\(name)'", reason: reason) }

        let nDims = try r.load(UInt32.self, "the dimension count of tensor '\(name)'")
        guard nDims <= UInt32(maxDimensions) else {
            throw bad("it has \(nDims) dimensions; GGML tensors have at most \(maxDimensions)")
        }
        var dims: [Int] = []
        dims.reserveCapacity(Int(nDims))
        var elements = 1
        for k in 0..<Int(nDims) {
            let ne = try r.load(UInt64.self, "dimension \(k) of tensor '\(name)'")
            guard ne <= UInt64(Int64.max) else {
                throw bad("dimension \(k) is \(ne) (\(Int64(bitPattern: ne)) as the signed 64-bit integer GGML reads)")
            }
            guard ne > 0 else { throw bad("dimension \(k) is 0; every dimension must be at least 1") }
            dims.append(Int(ne))
            let (product, overflow) = elements.multipliedReportingOverflow(by: Int(ne))
            guard !overflow else {
                throw bad("its dimensions \(dims)\(k + 1 < nDims ? "..." : "") hold more than \(Int.max) elements")
            }
            elements = product
        }

        let typeID = try r.load(Int32.self, "the type of tensor '\(name)'")
        guard let type = GGMLType(rawValue: typeID) else {
            if let removed = GGMLType.removedName(typeID) {
                throw bad("type id \(typeID) (\(removed)) was removed from GGML; re-convert the file with a current llama.cpp")
            }
            throw bad("type id \(typeID) is not a GGML type Lathe knows (0-\(GGMLType.allCases.last!.rawValue))")
        }
        let ne0 = dims.first ?? 1
        guard ne0 % type.blockSize == 0 else {
            throw bad("\(type.name) stores blocks of \(type.blockSize) elements along dimension 0, "
                      + "but dimension 0 is \(ne0), not a multiple of \(type.blockSize)")
        }
        guard let byteCount = type.byteCount(elementCount: elements) else {
            throw bad("its \(elements) elements of \(type.name) take more than \(Int.max) bytes")
        }
        let offset = try r.load(UInt64.self, "the data offset of tensor '\(name)'")
        guard offset % UInt64(alignment) == 0 else {
            throw bad("its data offset \(offset) is not a multiple of the alignment \(alignment)")
        }
        // Offsets past Int.max cannot be in the file; checkLayout reports them against its size.
        let info = GGUFTensorInfo(name: name, dimensions: dims, type: type, offset: Int(clamping: offset),
                                  byteCount: byteCount, elementCount: elements)
        return (info, offset)
    }

    /// Every tensor's bytes lie inside the data section and no two overlap. Offsets that are not
    /// llama.cpp's packing (file order, each tensor padded to the alignment) are allowed with a
    /// warning: llama.cpp refuses such files.
    private static func checkLayout(_ out: inout GGUFParsed, rawOffsets: [UInt64], fileSize: Int,
                                    path: String) throws(GGUFError) {
        let dataSize = fileSize - out.dataOffset
        for (t, raw) in zip(out.tensors, rawOffsets) {
            let (end, overflow) = t.offset.addingReportingOverflow(t.byteCount)
            guard raw <= UInt64(dataSize), !overflow, end <= dataSize else {
                throw .badLayout(path: path, reason:
                    "tensor '\(t.name)' (\(t.byteCount) bytes of \(t.type.name) at data offset \(raw)) ends past the end "
                    + "of the file: the data section starts at byte \(out.dataOffset) and holds \(dataSize) bytes "
                    + "(is the file truncated?)")
            }
        }
        let order = out.tensors.indices.sorted { out.tensors[$0].offset < out.tensors[$1].offset }
        for (a, b) in zip(order, order.dropFirst()) {
            let first = out.tensors[a], second = out.tensors[b]
            if first.offset + first.byteCount > second.offset {
                throw .badLayout(path: path, reason:
                    "tensor '\(second.name)' (data bytes \(second.offset)..<\(second.offset + second.byteCount)) overlaps "
                    + "tensor '\(first.name)' (data bytes \(first.offset)..<\(first.offset + first.byteCount))")
            }
        }
        var expected = 0
        for t in out.tensors {
            if t.offset != expected {
                out.warnings.append("tensor '\(t.name)' is at data offset \(t.offset) where llama.cpp expects \(expected) "
                                    + "(tensors packed in file order, each padded to \(out.alignment) bytes); "
                                    + "llama.cpp will refuse this file")
                break
            }
            // In bounds and not overlapping, so the running sum stays below the file size.
            expected += (t.byteCount + out.alignment - 1) / out.alignment * out.alignment
        }
    }

    /// The first bytes of a file that is not GGUF, for the error message: text if printable.
    private static func describeMagic(_ bytes: UnsafeRawBufferPointer.SubSequence) -> String {
        if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return "\"" + String(decoding: bytes, as: UTF8.self) + "\"" }
        return "bytes " + bytes.map { "0x" + String($0, radix: 16, uppercase: false) }.joined(separator: " ")
    }
}
