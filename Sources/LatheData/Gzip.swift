import CLatheKernels
import Foundation

/// gzip (RFC 1952) decoding with Lathe's own inflate (`CLatheKernels/inflate.c`); no zlib.
public enum Gzip {
    /// True when `bytes` start with the gzip magic number `1f 8b`.
    public static func isGzip(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
    }

    /// True when `data` starts with the gzip magic number `1f 8b`.
    public static func isGzip(_ data: Data) -> Bool {
        data.count >= 2 && data[data.startIndex] == 0x1f && data[data.startIndex + 1] == 0x8b
    }

    /// Decompresses gzip data (one or more members), checking CRC-32 and length of each.
    /// `path` only labels errors. `maxOutput` (bytes) guards against decompression bombs.
    public static func decompress(_ data: Data, path: String = "<data>", maxOutput: Int = 1 << 34) throws -> Data {
        try data.withUnsafeBytes { raw in
            try withDecompressed(raw, path: path, maxOutput: maxOutput) { Data($0) }
        }
    }

    /// Decompresses gzip bytes and lends the result to `body` without copying it.
    public static func withDecompressed<R>(
        _ raw: UnsafeRawBufferPointer, path: String = "<data>", maxOutput: Int = 1 << 34,
        _ body: (UnsafeRawBufferPointer) throws -> R
    ) throws -> R {
        var out: UnsafeMutablePointer<UInt8>? = nil
        var outLen = 0
        var errOffset = 0
        let status = lathe_gunzip(raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count, maxOutput,
                                  &out, &outLen, &errOffset)
        defer { lathe_inflate_free(out) }
        guard status == 0 else {
            throw DataError.corruptCompressedData(path: path, offset: errOffset,
                                                  reason: String(cString: lathe_inflate_strerror(status)))
        }
        return try body(UnsafeRawBufferPointer(start: out, count: outLen))
    }
}

/// Reading files whole, decompressing gzip transparently (detected by content, not name).
enum FileBytes {
    /// Lends the (decompressed) contents of `url` to `body`. `hint` goes into the
    /// missing-file error.
    static func withContents<R>(of url: URL, hint: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let data = try read(url, hint: hint)
        return try data.withUnsafeBytes { raw in
            if Gzip.isGzip(raw) {
                return try Gzip.withDecompressed(raw, path: url.path, body)
            }
            return try body(raw)
        }
    }

    /// The raw bytes of `url`, with Lathe's errors for missing or unreadable files.
    static func read(_ url: URL, hint: String) throws -> Data {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw DataError.missingFile(path: url.path, hint: hint)
        }
        if isDirectory.boolValue { throw DataError.unreadable(path: url.path, reason: "it is a directory, not a file") }
        do {
            return try Data(contentsOf: url, options: .mappedIfSafe)
        } catch {
            throw DataError.unreadable(path: url.path, reason: error.localizedDescription)
        }
    }
}
