// LatheData: data sets, loaders, batching, splits and file formats (IDX, CSV, gzip).
import Foundation

/// Why a data set could not be loaded or used. Each message says what was expected, where
/// Lathe looked, and how to fix it.
public enum DataError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A file that is not there. `hint` says how to get it.
    case missingFile(path: String, hint: String)
    /// A data-set directory that is not there. `hint` says how to get it.
    case missingDirectory(path: String, hint: String)
    /// A file that exists but could not be read (permissions, I/O error).
    case unreadable(path: String, reason: String)
    /// A file whose contents are not what the format requires. `location` is e.g.
    /// `"line 12, column 3"` or `"byte offset 16"`.
    case malformed(path: String, location: String, reason: String)
    /// gzip / DEFLATE data that failed to decode.
    case corruptCompressedData(path: String, offset: Int, reason: String)
    /// A resource that should ship with Lathe and is missing from the build.
    case missingResource(name: String)
    /// An argument that cannot work (bad fractions, empty data set, ...).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .missingFile(let path, let hint):
            return "data file not found: \(path). \(hint)"
        case .missingDirectory(let path, let hint):
            return "data directory not found: \(path). \(hint)"
        case .unreadable(let path, let reason):
            return "cannot read \(path): \(reason)"
        case .malformed(let path, let location, let reason):
            return "malformed data in \(path) at \(location): \(reason)"
        case .corruptCompressedData(let path, let offset, let reason):
            return "cannot decompress \(path) (gzip, at byte offset \(offset)): \(reason). "
                + "The file is damaged or incomplete; download it again."
        case .missingResource(let name):
            return "bundled resource \(name) is missing from the LatheData resource bundle; "
                + "rebuild the package (Sources/LatheData/Resources/\(name) must exist)"
        case .invalidArgument(let message):
            return message
        }
    }
}
