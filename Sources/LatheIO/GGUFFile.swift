import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One tensor's description in a GGUF file.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// The dimensions in GGML order: `ne[0]` first, the contiguous one along which quantisation
    /// blocks run. A PyTorch weight `[out, in]` is stored as `[in, out]`.
    public let dimensions: [Int]
    public let type: GGMLType
    /// Where the tensor's bytes start, relative to the start of the data section.
    public let offset: Int
    /// Bytes the tensor takes: `elementCount / type.blockSize * type.bytesPerBlock`.
    public let byteCount: Int
    /// Number of elements (the product of the dimensions; 1 for no dimensions).
    public let elementCount: Int

    /// The shape in PyTorch (row-major) order: ``dimensions`` reversed. GGML's `token_embd`
    /// `[576, 49152]` is `[49152, 576]`.
    public var shape: [Int] { dimensions.reversed() }
}

/// A GGUF file (versions 2 and 3, little-endian), memory-mapped: the header, the metadata in file
/// order and each tensor's description are parsed and checked when the file is opened; tensor
/// data stays in the mapping until asked for (``tensorData(named:)``, ``dequantized(named:)``,
/// `tensor(named:)`), and the mapping is released when the object is.
///
/// Files are checked as llama.cpp's reader (ggml `gguf.cpp`) does, and stricter where it is
/// cheap: magic and version; counts that the rest of the file cannot hold; strings over 1 GiB or
/// past the end; arrays over 2^30 elements or larger than the bytes left; empty, duplicate or
/// non-ASCII keys; unknown value types; `general.alignment` not a u32 power of two; tensor names
/// empty, over 63 bytes or duplicated; more than 4 dimensions, a dimension of 0 or over
/// `Int64.max`; element and byte counts that overflow; unknown or removed GGML types; a first
/// dimension not a multiple of the type's block size; offsets not aligned; tensor bytes outside
/// the file or overlapping. Arrays may nest (gguf-py writes them; llama.cpp refuses them) up to
/// 16 deep. Offsets in another order than llama.cpp's packing are accepted with a
/// ``warnings`` entry. Every problem is a ``GGUFError`` that names the file and the field.
///
/// The file must not be truncated while it is open (the mapping would fault, as with any mmap).
public final class GGUFFile: @unchecked Sendable {
    /// The path the file was opened from (or the name given to ``init(bytes:path:)``).
    public let path: String
    /// 2 or 3.
    public let version: UInt32
    /// Bytes of the whole file.
    public let fileSize: Int
    /// The metadata in file order.
    public let metadata: [GGUFKeyValue]
    /// The tensors in file order.
    public let tensors: [GGUFTensorInfo]
    /// `general.alignment`, or 32.
    public let alignment: Int
    /// Where the data section starts in the file (a multiple of ``alignment``).
    public let dataOffset: Int
    /// Things that are legal but that other readers refuse (tensor offsets llama.cpp rejects).
    public let warnings: [String]

    private let keyIndex: [String: Int]
    private let tensorIndex: [String: Int]
    private let storage: MappedFile

    /// Opens and checks the GGUF file at `url`, mapping it into memory.
    public convenience init(contentsOf url: URL) throws(GGUFError) {
        let storage: MappedFile
        do { storage = try MappedFile(mapping: url.path) } catch {
            switch error {
            case .notFound: throw .fileNotFound(path: url.path)
            case .unreadable(let reason): throw .unreadable(path: url.path, reason: reason)
            }
        }
        try self.init(storage: storage, path: url.path)
    }

    /// Checks `bytes` as a GGUF file called `path` (for error messages), from a copy of the bytes.
    public convenience init(bytes: some Collection<UInt8>, path: String = "<memory>") throws(GGUFError) {
        try self.init(storage: MappedFile(copying: bytes), path: path)
    }

    private init(storage: MappedFile, path: String) throws(GGUFError) {
        let parsed = try GGUFFile.parse(storage.bytes, path: path)
        self.storage = storage
        self.path = path
        self.version = parsed.version
        self.fileSize = storage.bytes.count
        self.metadata = parsed.metadata
        self.keyIndex = parsed.keyIndex
        self.tensors = parsed.tensors
        self.tensorIndex = parsed.tensorIndex
        self.alignment = parsed.alignment
        self.dataOffset = parsed.dataOffset
        self.warnings = parsed.warnings
    }

    // MARK: - Metadata

    /// The value of `key`, if the file has it.
    public func value(_ key: String) -> GGUFValue? {
        keyIndex[key].map { metadata[$0].value }
    }

    /// All keys in file order.
    public var keys: [String] { metadata.map(\.key) }

    /// The string value of `key`; `nil` if absent; throws if it is not a string.
    public func string(_ key: String) throws(GGUFError) -> String? {
        try typed(key, "str") { $0.stringValue }
    }

    /// The integer value of `key`, stored as any integer type (u8 ... i64); `nil` if absent;
    /// throws if it is not an integer or is a u64 over `Int.max`.
    public func int(_ key: String) throws(GGUFError) -> Int? {
        guard let v = value(key) else { return nil }
        if let i = v.intValue { return i }
        if case .uint64(let u) = v {
            throw .invalidMetadata(path: path, key: "'\(key)'", reason: "the value \(u) is too large for Int")
        }
        throw .wrongValueType(path: path, key: key, expected: "an integer", found: v.typeName)
    }

    /// The value of `key` stored as f32 (or f64, rounded to the nearest `Float`); `nil` if absent;
    /// throws for any other type.
    public func float(_ key: String) throws(GGUFError) -> Float? {
        try typed(key, "f32 or f64") { $0.doubleValue.map(Float.init) }
    }

    /// The value of `key` stored as f32 or f64, exactly; `nil` if absent; throws for any other type.
    public func double(_ key: String) throws(GGUFError) -> Double? {
        try typed(key, "f32 or f64") { $0.doubleValue }
    }

    /// The bool value of `key`; `nil` if absent; throws if it is not a bool.
    public func bool(_ key: String) throws(GGUFError) -> Bool? {
        try typed(key, "bool") { $0.boolValue }
    }

    /// The array value of `key`; `nil` if absent; throws if it is not an array.
    public func array(_ key: String) throws(GGUFError) -> GGUFArray? {
        try typed(key, "an array") { $0.arrayValue }
    }

    /// The value of `key` as an array of strings (`tokenizer.ggml.tokens`); `nil` if absent.
    public func strings(_ key: String) throws(GGUFError) -> [String]? {
        try typed(key, "arr[str]") { $0.arrayValue?.stringValues }
    }

    /// The value of `key` as an array of integers of any one type (`tokenizer.ggml.token_type`);
    /// `nil` if absent.
    public func ints(_ key: String) throws(GGUFError) -> [Int]? {
        try typed(key, "an array of integers that fit in Int") { $0.arrayValue?.intValues }
    }

    /// The value of `key` as an array of f32 (or f64) (`tokenizer.ggml.scores`); `nil` if absent.
    public func floats(_ key: String) throws(GGUFError) -> [Float]? {
        try typed(key, "arr[f32] or arr[f64]") { $0.arrayValue?.floatValues }
    }

    private func typed<T>(_ key: String, _ expected: String, _ get: (GGUFValue) -> T?) throws(GGUFError) -> T? {
        guard let v = value(key) else { return nil }
        guard let t = get(v) else { throw .wrongValueType(path: path, key: key, expected: expected, found: v.typeName) }
        return t
    }

    // MARK: - Tensors

    /// The description of the tensor called `name`, if present.
    public func tensorInfo(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// Tensor names in file order.
    public var tensorNames: [String] { tensors.map(\.name) }

    /// The tensor's bytes as stored (GGML blocks, little-endian), inside the mapping: valid only
    /// while this object is alive.
    public func tensorData(named name: String) throws(GGUFError) -> UnsafeRawBufferPointer {
        guard let info = tensorInfo(named: name) else { throw .tensorNotFound(path: path, name: name) }
        let start = dataOffset + info.offset
        return UnsafeRawBufferPointer(rebasing: storage.bytes[start..<start + info.byteCount])
    }

    /// Calls `body` with the tensor's bytes as stored; the bytes stay valid during the call.
    public func withTensorData<R>(named name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let bytes = try tensorData(named: name)
        return try withExtendedLifetime(self) { try body(bytes) }
    }

    /// The tensor's elements as float32, in storage order (`ne[0]` fastest, which is row-major
    /// for ``GGUFTensorInfo/shape``), dequantised as ggml's `dequantize_row_*` does.
    public func dequantized(named name: String) throws(GGUFError) -> [Float] {
        guard let info = tensorInfo(named: name) else { throw .tensorNotFound(path: path, name: name) }
        guard info.type.isDequantizable else {
            throw .unsupportedType(path: path, tensor: name, type: info.type)
        }
        let bytes = try tensorData(named: name)
        return withExtendedLifetime(self) { info.type.dequantized(bytes, count: info.elementCount) }
    }
}


extension GGUFFile {
    /// True when the file at `path` starts with the GGUF magic `"GGUF"` (reads 4 bytes; false if
    /// it cannot be read).
    public static func hasMagic(atPath path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        guard let first = try? handle.read(upToCount: 4) else { return false }
        return Array(first) == Array("GGUF".utf8)
    }
}
