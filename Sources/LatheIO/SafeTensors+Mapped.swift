import Foundation
import LatheTensor
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a model's tensors come from while it is built: a dictionary, a memory-mapped
/// safetensors file or a folder of shards. Tensors are produced one at a time as float32, so a
/// model built from a source holds its weights and the (file-backed) mapping, not a second
/// copy of every tensor in its storage dtype.
public protocol TensorSource {
    /// Every tensor's name.
    var tensorNames: [String] { get }
    /// The shape of `name`, nil if there is no such tensor.
    func shape(of name: String) -> [Int]?
    /// The tensor `name` as float32.
    func float32Tensor(named name: String) throws -> Tensor
}

extension Dictionary: TensorSource where Key == String, Value == Tensor {
    public var tensorNames: [String] { Array(keys) }
    public func shape(of name: String) -> [Int]? { self[name]?.shape }
    public func float32Tensor(named name: String) throws -> Tensor {
        guard let t = self[name] else { throw SafeTensorsError.invalidInput(path: "weights", reason: "no tensor \(name)") }
        return t.dtype == .float32 ? t : t.to(.float32)
    }
}

/// A safetensors file mapped into memory: the header is read and checked when it is opened,
/// and each tensor is read from the mapping only when asked for. After ``float32Tensor(named:)``
/// the tensor's pages of the mapping are given back to the system, so that building a model
/// holds its weights and about one tensor of the file, not the whole file besides.
public final class MappedSafeTensors: TensorSource, @unchecked Sendable {
    public let header: SafeTensorsHeader
    /// The file, mapped read-only (never copied as a whole).
    private let file: MappedFile
    private var bytes: UnsafeRawBufferPointer { file.bytes }
    private let entries: [String: SafeTensorsHeader.Entry]

    public init(contentsOf url: URL) throws {
        let path = url.path
        do { file = try MappedFile(mapping: path) } catch {
            switch error {
            case .notFound: throw SafeTensorsError.fileNotFound(path: path)
            case .unreadable(let reason): throw SafeTensorsError.unreadable(path: path, reason: reason)
            }
        }
        // An empty or short file gets headerLength's error.
        let mapped = file.bytes
        let n = try SafeTensors.headerLength(first8: mapped, fileSize: mapped.count, path: path)
        header = try SafeTensors.parseHeader(UnsafeRawBufferPointer(rebasing: mapped[8..<8 + n]), fileSize: mapped.count, path: path)
        entries = Dictionary(header.entries.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    public var tensorNames: [String] { header.names }
    public func shape(of name: String) -> [Int]? { entries[name]?.shape }

    /// The tensor `name` in its file dtype (F64 as float32), copied out of the mapping.
    public func tensor(named name: String) throws -> Tensor {
        let e = try entry(name)
        guard let dtype = e.dtype else { throw SafeTensorsError.unsupportedDType(path: header.path, tensor: name, dtype: e.fileDType) }
        return bytes(of: e) { raw in
            if e.isConvertedOnLoad {
                return Tensor((0..<e.elementCount).map {
                    Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))))
                }, shape: e.shape)
            }
            return Tensor(bytes: raw, shape: e.shape, dtype: dtype)
        }
    }

    /// The tensor `name` as float32: F32, F16 and BF16 are converted straight from the mapping.
    public func float32Tensor(named name: String) throws -> Tensor {
        let e = try entry(name)
        switch e.dtype {
        case .float32?, .float16?, .bfloat16?:
            guard !e.isConvertedOnLoad else { return try tensor(named: name) }
            defer { release(e) }
            return bytes(of: e) { Tensor(float32From: $0, shape: e.shape, dtype: e.dtype!) }
        case nil: throw SafeTensorsError.unsupportedDType(path: header.path, tensor: name, dtype: e.fileDType)
        default: return try tensor(named: name).to(.float32)
        }
    }

    private func entry(_ name: String) throws -> SafeTensorsHeader.Entry {
        guard let e = entries[name] else { throw SafeTensorsError.invalidInput(path: header.path, reason: "no tensor \(name)") }
        return e
    }

    private func bytes<R>(of e: SafeTensorsHeader.Entry, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        let start = header.dataStart + e.dataOffsets.lowerBound
        return body(UnsafeRawBufferPointer(rebasing: bytes[start..<start + e.byteCount]))
    }

    /// Drops the whole pages of `e`'s bytes from memory (they are read from the file again if
    /// touched again: the mapping is private and read-only).
    private func release(_ e: SafeTensorsHeader.Entry) {
        guard let base = bytes.baseAddress else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: base) + header.dataStart + e.dataOffsets.lowerBound
        let first = (start + page - 1) / page * page, end = (start + e.byteCount) / page * page
        guard end > first else { return }
        _ = madvise(UnsafeMutableRawPointer(bitPattern: first), end - first, Int32(MADV_DONTNEED))
    }
}

/// The tensors of several safetensors files (a sharded checkpoint) as one source; a name in
/// two files is an error.
public struct ShardedSafeTensors: TensorSource {
    public let files: [MappedSafeTensors]
    private let owner: [String: Int]

    public init(_ urls: [URL]) throws {
        files = try urls.map { try MappedSafeTensors(contentsOf: $0) }
        var owner: [String: Int] = [:]
        for (i, f) in files.enumerated() {
            for name in f.tensorNames {
                if let j = owner.updateValue(i, forKey: name) {
                    throw SafeTensorsError.invalidInput(path: f.header.path, reason: "tensor \(name) is also in \(files[j].header.path)")
                }
            }
        }
        self.owner = owner
    }

    public var tensorNames: [String] { files.flatMap(\.tensorNames) }
    public func shape(of name: String) -> [Int]? { owner[name].flatMap { files[$0].shape(of: name) } }
    public func float32Tensor(named name: String) throws -> Tensor {
        guard let i = owner[name] else { throw SafeTensorsError.invalidInput(path: files.first?.header.path ?? "shards", reason: "no tensor \(name)") }
        return try files[i].float32Tensor(named: name)
    }
}
