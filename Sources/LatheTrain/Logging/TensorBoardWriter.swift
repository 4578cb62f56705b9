import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes scalar summaries to a TensorBoard event file.
///
/// The file is `<directory>/events.out.tfevents.<unix time>.<hostname>.lathe` (with `.1`, `.2`, …
/// appended if that name is taken), so `tensorboard --logdir <parent of directory>` shows the
/// directory as one run. Several writers may share a directory (e.g. a resumed run): TensorBoard
/// reads all event files of a run in file-name order.
///
/// Format (facts of TensorFlow's on-disk format, encoded by hand here):
/// - Each record is TFRecord-framed: `length` (UInt64 little-endian), masked CRC-32C of those
///   8 length bytes (UInt32 LE), the payload, masked CRC-32C of the payload (UInt32 LE); see
///   ``CRC32C/masked(_:)``.
/// - Each payload is a serialized `tensorflow.Event` protobuf. The first is
///   `Event{wall_time = 1 (double), file_version = 3 (string) "brain.Event:2"}`; every scalar is
///   `Event{wall_time = 1, step = 2 (int64), summary = 5 {value = 1 {tag = 1 (string),
///   simple_value = 2 (float)}}}`, one event per scalar. As in protobuf's own proto3 encoding, a
///   step of 0 is omitted, fields are written in field-number order, and a negative step is a
///   10-byte two's-complement varint; so given the same wall times, the bytes equal those of
///   TensorBoard's Python `EventFileWriter`.
///
/// Records are buffered in memory by ``addScalar(tag:value:step:wallTime:)`` and written to the
/// file by ``flush()``; call it after each batch of scalars (``addScalars(_:step:wallTime:)``
/// does), so a crash loses at most the unflushed batch. Not thread-safe: use from one thread.
public final class TensorBoardWriter {
    /// The event file being written.
    public let fileURL: URL
    private var fd: Int32
    private var pending: [UInt8] = []
    private let now: () -> Double

    /// The `file_version` string of the first event.
    public static let fileVersion = "brain.Event:2"

    /// Creates `directory` if needed, creates a new event file in it and writes the
    /// `file_version` event (flushed immediately).
    ///
    /// - Parameters:
    ///   - directory: the run directory.
    ///   - now: wall-clock time in seconds since the Unix epoch; used for the file name and for
    ///     events logged without an explicit `wallTime`.
    public init(directory: URL, now: @escaping () -> Double = { Date().timeIntervalSince1970 }) throws {
        self.now = now
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let start = now()
        let base = "events.out.tfevents.\(Int64(start.rounded(.down))).\(Self.hostName()).lathe"
        var attempt = 0
        while true {
            let name = attempt == 0 ? base : "\(base).\(attempt)"
            let url = directory.appendingPathComponent(name)
            let d = open(url.path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
            if d >= 0 {
                fd = d
                fileURL = url
                break
            }
            let err = errno
            guard err == EEXIST, attempt < 10_000 else {
                throw CocoaError(.fileWriteUnknown, userInfo: [
                    NSFilePathErrorKey: url.path,
                    NSLocalizedDescriptionKey: "cannot create \(url.path): \(String(cString: strerror(err)))",
                ])
            }
            attempt += 1
        }
        var event = ProtoEncoder()
        event.double(field: 1, start)
        event.string(field: 3, Self.fileVersion)
        appendRecord(event.bytes)
        try flush()
    }

    deinit {
        try? close()
    }

    /// Queues one scalar event; it reaches the file at the next ``flush()``.
    ///
    /// - Parameters:
    ///   - tag: the series name, e.g. `train/loss` (TensorBoard groups tags by the part before `/`).
    ///   - value: stored as a 32-bit float (`simple_value`); NaN and infinities are kept.
    ///   - step: the x-axis value.
    ///   - wallTime: seconds since the Unix epoch; defaults to now.
    public func addScalar(tag: String, value: Double, step: Int, wallTime: Double? = nil) {
        var value_ = ProtoEncoder()
        value_.string(field: 1, tag)
        value_.float(field: 2, Float(value))
        var summary = ProtoEncoder()
        summary.message(field: 1, value_)
        var event = ProtoEncoder()
        event.double(field: 1, wallTime ?? now())
        if step != 0 { event.varint(field: 2, UInt64(bitPattern: Int64(step))) }  // proto3 omits defaults
        event.message(field: 5, summary)
        appendRecord(event.bytes)
    }

    /// Queues one scalar event per entry of `scalars` (in tag order) at the same step and wall
    /// time, then flushes.
    public func addScalars(_ scalars: [String: Double], step: Int, wallTime: Double? = nil) throws {
        let time = wallTime ?? now()
        for (tag, value) in scalars.sorted(by: { $0.key < $1.key }) {
            addScalar(tag: tag, value: value, step: step, wallTime: time)
        }
        try flush()
    }

    /// Writes every queued record to the file (one `write` system call per flush in the common
    /// case). The data then survives a crash of this process.
    public func flush() throws {
        guard !pending.isEmpty else { return }
        guard fd >= 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "TensorBoardWriter is closed"]) }
        var written = 0
        while written < pending.count {
            let n = pending.withUnsafeBytes { buf in
                write(fd, buf.baseAddress! + written, buf.count - written)
            }
            if n < 0 {
                if errno == EINTR { continue }
                let err = errno
                throw CocoaError(.fileWriteUnknown, userInfo: [
                    NSFilePathErrorKey: fileURL.path,
                    NSLocalizedDescriptionKey: "write to \(fileURL.path) failed: \(String(cString: strerror(err)))",
                ])
            }
            written += n
        }
        pending.removeAll(keepingCapacity: true)
    }

    /// Flushes and closes the file. Further calls do nothing; scalars added afterwards are
    /// dropped by the next ``flush()``, which throws.
    public func close() throws {
        guard fd >= 0 else { return }
        defer {
            _ = posixClose(fd)
            fd = -1
        }
        try flush()
    }

    /// Frames `payload` as one TFRecord and appends it to the pending buffer.
    private func appendRecord(_ payload: [UInt8]) {
        let length = withUnsafeBytes(of: UInt64(payload.count).littleEndian) { Array($0) }
        pending += length
        withUnsafeBytes(of: CRC32C.masked(CRC32C.checksum(length)).littleEndian) { pending += $0 }
        pending += payload
        withUnsafeBytes(of: CRC32C.masked(CRC32C.checksum(payload)).littleEndian) { pending += $0 }
    }

    /// This machine's host name with characters unsafe in a file name replaced by `_`.
    static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "localhost" }
        let name = String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let safe = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_" ? $0 : "_" })
        return safe.isEmpty ? "localhost" : safe
    }
}

@inline(__always)
private func posixClose(_ fd: Int32) -> Int32 {
    close(fd)
}

/// A minimal protobuf encoder for the few wire types TensorBoard events need.
struct ProtoEncoder {
    private(set) var bytes: [UInt8] = []

    private mutating func rawVarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    private mutating func key(_ field: Int, _ wireType: UInt64) {
        rawVarint(UInt64(field) << 3 | wireType)
    }

    /// Wire type 0. Negative `int64` values are passed as their two's-complement bit pattern.
    mutating func varint(field: Int, _ v: UInt64) {
        key(field, 0)
        rawVarint(v)
    }

    /// Wire type 1, little-endian IEEE double.
    mutating func double(field: Int, _ v: Double) {
        key(field, 1)
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 }
    }

    /// Wire type 5, little-endian IEEE float.
    mutating func float(field: Int, _ v: Float) {
        key(field, 5)
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 }
    }

    /// Wire type 2.
    mutating func lengthDelimited(field: Int, _ payload: [UInt8]) {
        key(field, 2)
        rawVarint(UInt64(payload.count))
        bytes += payload
    }

    mutating func string(field: Int, _ s: String) { lengthDelimited(field: field, Array(s.utf8)) }
    mutating func message(field: Int, _ m: ProtoEncoder) { lengthDelimited(field: field, m.bytes) }
}
