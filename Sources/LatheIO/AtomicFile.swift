import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Crash-safe file replacement: write a temporary file in the destination's directory, flush
/// it to disk, then rename it over the destination, so a reader (or a crash) sees either the
/// old file or the complete new one.
///
/// Foundation's `write(to:atomically: true)` does the same on Linux through a directory under
/// `/tmp` that it leaves behind at every call; this does not.
public enum AtomicFile {
    public struct WriteError: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "cannot write \(path): \(reason)" }
    }

    /// Writes the file at `url` through `body`, which gets the temporary file's handle.
    /// On any error the temporary file is removed and `url` is left as it was.
    public static func write(to url: URL, _ body: (FileHandle) throws -> Void) throws {
        let path = url.path
        let directory = url.deletingLastPathComponent()
        let tempPath = directory.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp").path
        let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else {
            throw WriteError(path: path, reason: "cannot create a temporary file in \(directory.path): \(String(cString: strerror(errno)))")
        }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        var renamed = false
        defer { if !renamed { unlink(tempPath) } }
        do {
            try body(handle)
            try handle.synchronize()
            try handle.close()
        } catch {
            try? handle.close()
            throw WriteError(path: path, reason: error.localizedDescription)
        }
        guard rename(tempPath, path) == 0 else {
            throw WriteError(path: path, reason: "cannot move the temporary file into place: \(String(cString: strerror(errno)))")
        }
        renamed = true
    }

    /// Writes `text` as UTF-8 to `url`, replacing it atomically.
    public static func write(_ text: String, to url: URL) throws {
        try write(to: url) { try $0.write(contentsOf: Data(text.utf8)) }
    }
}
