import Foundation
import LatheTensor
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The tensors and metadata of a safetensors file.
public struct SafeTensorsFile: Sendable {
    /// The tensors by name.
    public let tensors: [String: Tensor]
    /// Tensor names in the order of their data in the file.
    public let names: [String]
    /// The file's `__metadata__` (empty if it has none).
    public let metadata: [String: String]
    /// The file's header (dtypes as stored, byte ranges, sizes).
    public let header: SafeTensorsHeader
    /// Tensors stored as `F64` in the file and converted to float32 on loading.
    public let convertedFromFloat64: [String]

    /// The tensor called `name`, if present.
    public subscript(name: String) -> Tensor? { tensors[name] }
}

/// Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON
/// header mapping each tensor name to `dtype`, `shape` and `data_offsets` (plus optional
/// `__metadata__` strings), then the tensors' little-endian bytes, back to back.
///
/// Lathe loads `F32`, `F16`, `BF16`, `I64`, `I32`, `I8`, `U8` and `BOOL` as the matching
/// ``DType``; `F64` loads converted to float32. Other dtypes (`F8_E4M3`, `I16`, ...) are
/// reported by ``readHeader(contentsOf:)`` and refused by ``read(contentsOf:)``.
///
/// Files are checked as the reference implementation does: the header must be a JSON object,
/// each tensor's byte range must hold exactly its shape, and the ranges must cover the data
/// section without overlaps or holes. Every problem is a ``SafeTensorsError``.
public enum SafeTensors {
    /// Reads every tensor and the metadata of the file at `url`.
    ///
    /// The file is mapped, not read into memory, and each tensor copies its bytes once.
    public static func read(contentsOf url: URL) throws -> SafeTensorsFile {
        let path = url.path
        try checkReadable(path)
        // A file too short for the length field is refused before it is mapped: Foundation
        // reads a 0-byte file as a possibly special file (/proc) and leaks its 4 KiB buffer.
        var st = stat()
        if stat(path, &st) == 0, st.st_size < 8 { throw SafeTensorsError.tooShort(path: path, fileSize: Int(st.st_size)) }
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw SafeTensorsError.unreadable(path: path, reason: error.localizedDescription)
        }
        return try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws -> SafeTensorsFile in
            let n = try headerLength(first8: raw, fileSize: raw.count, path: path)
            let header = try parseHeader(UnsafeRawBufferPointer(rebasing: raw[8..<8 + n]), fileSize: raw.count, path: path)
            for e in header.entries where e.dtype == nil {
                throw SafeTensorsError.unsupportedDType(path: path, tensor: e.name, dtype: e.fileDType)
            }
            var tensors: [String: Tensor] = [:]
            tensors.reserveCapacity(header.entries.count)
            var converted: [String] = []
            for e in header.entries {
                let range = header.dataStart + e.dataOffsets.lowerBound ..< header.dataStart + e.dataOffsets.upperBound
                let bytes = UnsafeRawBufferPointer(rebasing: raw[range])
                if e.isConvertedOnLoad {
                    let values = (0..<e.elementCount).map {
                        Float(Double(bitPattern: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))))
                    }
                    tensors[e.name] = Tensor(values, shape: e.shape)
                    converted.append(e.name)
                } else if let dtype = e.dtype {
                    tensors[e.name] = Tensor(bytes: bytes, shape: e.shape, dtype: dtype)
                }
            }
            return SafeTensorsFile(tensors: tensors, names: header.names, metadata: header.metadata, header: header,
                                   convertedFromFloat64: converted)
        }
    }

    /// Reads only the header of the file at `url` (the length field and the JSON), checking it
    /// against the file size, without reading tensor data. Tensors of dtypes Lathe cannot load
    /// are listed (their ``SafeTensorsHeader/Entry/dtype`` is `nil`).
    public static func readHeader(contentsOf url: URL) throws -> SafeTensorsHeader {
        let path = url.path
        try checkReadable(path)
        do {
            let handle = try FileHandle(forReadingFrom: url)
            defer { try? handle.close() }
            let fileSize = Int(try handle.seekToEnd())
            try handle.seek(toOffset: 0)
            let first8 = try handle.read(upToCount: 8) ?? Data()
            let n = try first8.withUnsafeBytes { try headerLength(first8: $0, fileSize: fileSize, path: path) }
            let json = n == 0 ? Data() : (try handle.read(upToCount: n) ?? Data())
            guard json.count == n else {
                throw SafeTensorsError.unreadable(path: path, reason: "the file changed while it was read")
            }
            return try json.withUnsafeBytes { try parseHeader($0, fileSize: fileSize, path: path) }
        } catch let error as SafeTensorsError {
            throw error
        } catch {
            throw SafeTensorsError.unreadable(path: path, reason: error.localizedDescription)
        }
    }

    /// Writes `tensors` and `metadata` to `url` in the layout of the reference (Python/Rust)
    /// writer, byte for byte: compact JSON header, tensors ordered by dtype (8-byte types
    /// first) then by name, metadata first and only when non-empty (keys sorted), header padded
    /// with spaces to a multiple of 8 bytes.
    ///
    /// The file is written to a temporary file in the same directory, flushed to disk, then
    /// renamed over `url`, so a crash leaves either the old file or the complete new one.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to url: URL) throws {
        let path = url.path
        guard tensors["__metadata__"] == nil else {
            throw SafeTensorsError.invalidInput(path: path, reason: "a tensor cannot be called \"__metadata__\" (the name is reserved)")
        }
        let headerBytes = try encodeHeader(tensors, metadata: metadata, path: path)
        let order = writeOrder(tensors)

        do {
            try AtomicFile.write(to: url) { handle in
                var length = UInt64(headerBytes.count).littleEndian
                try handle.write(contentsOf: Data(bytes: &length, count: 8))
                try handle.write(contentsOf: headerBytes)
                for entry in order where entry.tensor.byteCount > 0 {
                    try entry.tensor.withUnsafeRawBytes { try handle.write(contentsOf: $0) }
                }
            }
        } catch let error as AtomicFile.WriteError {
            throw SafeTensorsError.writeFailed(path: path, reason: error.reason)
        }
    }

    /// Tensors in the reference writer's data order: by dtype rank (descending), then by the
    /// names' UTF-8 bytes.
    static func writeOrder(_ tensors: [String: Tensor]) -> [(name: String, tensor: Tensor)] {
        tensors.map { (name: $0.key, tensor: $0.value) }.sorted { a, b in
            let ra = fileDType(a.tensor.dtype).rank, rb = fileDType(b.tensor.dtype).rank
            if ra != rb { return ra > rb }
            return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
    }

    /// The header JSON with its padding (without the 8-byte length).
    static func encodeHeader(_ tensors: [String: Tensor], metadata: [String: String], path: String) throws -> [UInt8] {
        try encodeHeader(entries: writeOrder(tensors).map { StreamedEntry(name: $0.0, shape: $0.1.shape, dtype: $0.1.dtype) },
                         metadata: metadata, path: path)
    }

    /// The header of `entries` in their order, data offsets from their shapes.
    static func encodeHeader(entries: [StreamedEntry], metadata: [String: String], path: String) throws -> [UInt8] {
        var parts: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
            parts.append("\"__metadata__\":{" + pairs.map { JSONWriter.quoted($0.key) + ":" + JSONWriter.quoted($0.value) }
                .joined(separator: ",") + "}")
        }
        var offset = 0
        for e in entries {
            let end = offset + e.byteCount
            parts.append(JSONWriter.quoted(e.name) + ":{\"dtype\":\"\(fileDType(e.dtype).name)\",\"shape\":"
                         + JSONWriter.intArray(e.shape) + ",\"data_offsets\":" + JSONWriter.intArray([offset, end]) + "}")
            offset = end
        }
        var bytes = Array(("{" + parts.joined(separator: ",") + "}").utf8)
        let padding = (8 - bytes.count % 8) % 8
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padding))
        guard bytes.count <= maxHeaderSize else {
            throw SafeTensorsError.invalidInput(path: path, reason:
                "the header would be \(bytes.count) bytes, over the format's limit of \(maxHeaderSize) bytes")
        }
        return bytes
    }

    /// Throws `fileNotFound` or `unreadable` unless `path` is a regular, readable file.
    private static func checkReadable(_ path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw SafeTensorsError.fileNotFound(path: path)
        }
        if isDirectory.boolValue { throw SafeTensorsError.unreadable(path: path, reason: "it is a directory") }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw SafeTensorsError.unreadable(path: path, reason: "permission denied")
        }
    }
}
