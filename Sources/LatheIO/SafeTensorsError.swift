import Foundation

/// Why a safetensors file could not be read or written. Each message names the file and says
/// what is wrong in terms a user can act on.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable {
    /// No file at the path.
    case fileNotFound(path: String)
    /// The file exists but cannot be opened or read (a directory, no permission, I/O error).
    case unreadable(path: String, reason: String)
    /// Fewer than the 8 bytes that hold the header length.
    case tooShort(path: String, fileSize: Int)
    /// The header length in the first 8 bytes is larger than the rest of the file.
    case headerLongerThanFile(path: String, headerSize: UInt64, fileSize: Int)
    /// The header length is over the 100 MB limit the format sets.
    case headerTooLarge(path: String, headerSize: UInt64)
    /// The header is not UTF-8, not JSON, or not a JSON object.
    case invalidHeader(path: String, reason: String)
    /// `__metadata__` is not an object of strings.
    case invalidMetadata(path: String, reason: String)
    /// A tensor entry lacks `dtype`, `shape` or `data_offsets`, has the wrong types, or its
    /// offsets do not span `shape` elements of `dtype`.
    case invalidEntry(path: String, tensor: String, reason: String)
    /// A dtype Lathe cannot load (or a dtype the format does not define).
    case unsupportedDType(path: String, tensor: String, dtype: String)
    /// The data section is shorter than the header says.
    case truncated(path: String, expectedDataBytes: Int, foundDataBytes: Int)
    /// Tensors overlap, leave holes between them, or leave bytes after the last one.
    case badLayout(path: String, reason: String)
    /// A tensor or metadata that cannot be written (e.g. a tensor named `__metadata__`).
    case invalidInput(path: String, reason: String)
    /// Writing the file failed.
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "\(path): no such file"
        case .unreadable(let path, let reason):
            return "\(path): cannot read the file: \(reason)"
        case .tooShort(let path, let size):
            return "\(path): not a safetensors file: it is \(size) byte\(size == 1 ? "" : "s") long, "
                + "too short for the 8-byte header length"
        case .headerLongerThanFile(let path, let header, let size):
            return "\(path): not a safetensors file or truncated: the header length is \(header) bytes "
                + "but only \(max(size - 8, 0)) bytes follow the 8-byte length field (file size \(size))"
        case .headerTooLarge(let path, let header):
            return "\(path): not a safetensors file: the header length \(header) bytes is over the "
                + "format's limit of \(SafeTensors.maxHeaderSize) bytes"
        case .invalidHeader(let path, let reason):
            return "\(path): the safetensors header is invalid: \(reason)"
        case .invalidMetadata(let path, let reason):
            return "\(path): the safetensors header's __metadata__ is invalid: \(reason)"
        case .invalidEntry(let path, let tensor, let reason):
            return "\(path): tensor '\(tensor)': \(reason)"
        case .unsupportedDType(let path, let tensor, let dtype):
            return "\(path): tensor '\(tensor)' has dtype \(dtype), which Lathe cannot load "
                + "(supported: \(SafeTensors.supportedDTypeNames.joined(separator: ", ")); "
                + "convert it to one of those first"
        case .truncated(let path, let expected, let found):
            return "\(path): the file is truncated: expected \(expected) bytes of data, found \(found)"
        case .badLayout(let path, let reason):
            return "\(path): tensor data layout is invalid: \(reason)"
        case .invalidInput(let path, let reason):
            return "\(path): cannot write: \(reason)"
        case .writeFailed(let path, let reason):
            return "\(path): writing failed: \(reason)"
        }
    }
}
