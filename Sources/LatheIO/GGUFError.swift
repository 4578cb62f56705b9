/// Why a GGUF file could not be read, or a value or tensor of it used. Each message names the
/// file and says what is wrong in terms a user can act on.
public enum GGUFError: Error, CustomStringConvertible, Equatable {
    /// No file at the path.
    case fileNotFound(path: String)
    /// The file exists but cannot be opened or mapped (a directory, no permission, I/O error).
    case unreadable(path: String, reason: String)
    /// The file does not start with the GGUF magic, or is too short to hold it.
    case notGGUF(path: String, reason: String)
    /// A version Lathe does not read (it reads 2 and 3), or a big-endian file.
    case unsupportedVersion(path: String, version: UInt32, reason: String)
    /// The file ends inside a field: `what` needed `needed` bytes at byte `offset`.
    case truncated(path: String, what: String, offset: Int, needed: Int, fileSize: Int)
    /// The tensor or key-value counts cannot be right for the file's size.
    case invalidHeader(path: String, reason: String)
    /// A key or value that breaks the format (empty or duplicate key, unknown value type, bad
    /// UTF-8, a count over the limits, a bad `general.alignment`).
    case invalidMetadata(path: String, key: String, reason: String)
    /// A tensor description that breaks the format (name, dimensions, type, size).
    case invalidTensorInfo(path: String, tensor: String, reason: String)
    /// Tensor data outside the file, misaligned or overlapping another tensor.
    case badLayout(path: String, reason: String)
    /// A metadata value read as a type it does not have (`block_count` stored as a string).
    case wrongValueType(path: String, key: String, expected: String, found: String)
    /// A tensor whose type Lathe lists but does not convert to float32.
    case unsupportedType(path: String, tensor: String, type: GGMLType)
    /// No tensor of that name in the file.
    case tensorNotFound(path: String, name: String)
    /// A file could not be written (``GGUFWriter``): what it was asked to write breaks the
    /// format, or the file system refused.
    case unwritable(path: String, reason: String)

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "\(path): no such file"
        case .unreadable(let path, let reason):
            return "\(path): cannot read the file: \(reason)"
        case .notGGUF(let path, let reason):
            return "\(path): not a GGUF file: \(reason)"
        case .unsupportedVersion(let path, let version, let reason):
            return "\(path): GGUF version \(version) cannot be read: \(reason)"
        case .truncated(let path, let what, let offset, let needed, let size):
            return "\(path): the file is truncated or damaged: \(what) needs \(needed) byte\(needed == 1 ? "" : "s") "
                + "at offset \(offset), but the file is \(size) bytes long"
        case .invalidHeader(let path, let reason):
            return "\(path): the GGUF header is invalid: \(reason)"
        case .invalidMetadata(let path, let key, let reason):
            return "\(path): metadata \(key): \(reason)"
        case .invalidTensorInfo(let path, let tensor, let reason):
            return "\(path): tensor \(tensor): \(reason)"
        case .badLayout(let path, let reason):
            return "\(path): tensor data layout is invalid: \(reason)"
        case .wrongValueType(let path, let key, let expected, let found):
            return "\(path): metadata key '\(key)' holds a value of type \(found), expected \(expected)"
        case .unsupportedType(let path, let tensor, let type):
            return "\(path): tensor '\(tensor)' has type \(type.name), which Lathe cannot convert to float32 "
                + "(supported: \(GGMLType.dequantizable.map(\.name).joined(separator: ", ")))"
        case .tensorNotFound(let path, let name):
            return "\(path): no tensor named '\(name)'"
        case .unwritable(let path, let reason):
            return "\(path): cannot write the GGUF file: \(reason)"
        }
    }
}
