import Foundation

/// Why a merge stopped (besides config errors, ``MergeConfigError``).
public enum MergeError: Error, CustomStringConvertible, Equatable {
    case architectureMismatch(String)
    case vocabularyMismatch(String)
    case shapeMismatch(String)
    case nonFinite(tensor: String, count: Int)
    case invalidParameter(tensor: String, message: String)
    case output(String)

    public var description: String {
        switch self {
        case .architectureMismatch(let m), .vocabularyMismatch(let m), .shapeMismatch(let m), .output(let m): m
        case .nonFinite(let tensor, let count):
            "the merged \(tensor) has \(count) non-finite value\(count == 1 ? "" : "s") (NaN or infinity); check the inputs and the parameters for this tensor (weights summing to 0 with normalize: false, huge lambda)"
        case .invalidParameter(let tensor, let message): "\(tensor): \(message)"
        }
    }
}
