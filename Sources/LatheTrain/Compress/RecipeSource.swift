import Foundation

/// Where a recipe came from: its YAML text, a name for errors (the file path) and the
/// `--set` overrides applied to it. Variants of the recipe (a distilled student, a variant file
/// that names its own model keys) are parsed again from the source with more overrides, so
/// that they are checked like the recipe itself.
public struct RecipeSource: Sendable, Equatable {
    public var text: String
    public var file: String
    public var overrides: [String]

    public init(text: String, file: String = "<recipe>", overrides: [String] = []) {
        (self.text, self.file, self.overrides) = (text, file, overrides)
    }

    /// Reads a recipe file.
    public static func file(_ url: URL, overrides: [String] = []) throws -> RecipeSource {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw RecipeError(file: url.path, key: nil, message: "cannot read the recipe (does the file exist?)")
        }
        return RecipeSource(text: text, file: url.path, overrides: overrides)
    }

    /// The recipe with `extra` overrides on top of the source's own.
    public func recipe(extra: [String] = []) throws -> Recipe {
        try Recipe.parse(text, file: file, overrides: overrides + extra)
    }
}

/// A compression or report step that cannot go on, with what to do about it.
public struct CompressError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ message: String) { description = message }
}

/// "98.61%" or, for a model without accuracy, "loss 0.1234".
public func scoreText(_ e: Evaluation) -> String {
    e.accuracy.map { String(format: "%.2f%%", 100 * $0) } ?? String(format: "loss %.4f", e.loss)
}

/// Size of a file in bytes (0 if it cannot be read).
public func fileBytes(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
}

extension Trainer {
    /// The split that `evaluate(.test)` measures: "test", or "validation" when the data has no test split.
    public var testSplitName: String { task.hasTestSplit ? "test" : "validation" }
}

/// Temporary directories that live as long as their owner (fine-tuning runs write their
/// checkpoints there); removed when the last reference goes.
final class ScratchSpace: @unchecked Sendable {
    private let lock = NSLock()
    private var directories: [URL] = []

    /// A fresh directory under the system's temporary folder.
    func directory(_ prefix: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        lock.lock()
        directories.append(url)
        lock.unlock()
        return url
    }

    deinit {
        for u in directories { try? FileManager.default.removeItem(at: u) }
    }
}
