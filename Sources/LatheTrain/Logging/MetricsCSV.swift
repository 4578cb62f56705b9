import Foundation

/// Appends metric rows to `<directory>/metrics.csv`, one row per metric value ("long" format).
///
/// Format (RFC 4180 CSV, UTF-8, `\n` line ends):
/// ```
/// step,epoch,split,name,value,wall_time
/// 120,2,train,loss,0.4312,1718000000.123
/// 120,2,train,accuracy,0.912,1718000000.123
/// ```
/// - `step`, `epoch`: integers. `split`: e.g. `train`, `val`, `test`. `name`: the metric name.
/// - `value`: the shortest decimal that reads back as the same `Double` (`nan`, `inf`, `-inf`
///   for non-finite values; pandas' `read_csv` accepts these).
/// - `wall_time`: seconds since the Unix epoch, 3 decimals.
/// - Fields containing `,`, `"`, or a line break are quoted with `"` and inner quotes doubled.
///
/// The long format lets new metric names appear mid-run without changing the header; pivot on
/// `(step, split, name)` for a wide table (e.g. `df.pivot_table(index="step",
/// columns=["split", "name"], values="value")`).
///
/// Each ``append(step:epoch:split:metrics:wallTime:)`` writes its rows with a single unbuffered
/// `write`, so a killed run keeps everything logged before it. The header is written only when the
/// file is new or empty. Not thread-safe: use from one thread.
public final class MetricsCSV {
    /// The header line (without the line end).
    public static let header = "step,epoch,split,name,value,wall_time"
    /// The file name inside the directory.
    public static let fileName = "metrics.csv"

    /// `<directory>/metrics.csv`.
    public let fileURL: URL
    private var handle: FileHandle?
    private let now: () -> Double

    /// Opens `<directory>/metrics.csv`, creating the directory if missing.
    ///
    /// - Parameters:
    ///   - directory: the run directory.
    ///   - resume: if `true` and the file exists, new rows are appended after the existing ones and
    ///     no second header is written (an incomplete last line, from a run killed mid-write, is
    ///     ended first). If `false`, an existing file is truncated and started afresh.
    ///   - now: wall-clock time in seconds since the Unix epoch for rows logged without `wallTime`.
    /// - Throws: if the file cannot be opened, or when resuming a non-empty file whose first line
    ///   is not ``header``.
    public init(directory: URL, resume: Bool, now: @escaping () -> Double = { Date().timeIntervalSince1970 }) throws {
        self.now = now
        let fm = FileManager.default
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        fileURL = directory.appendingPathComponent(Self.fileName)
        var appending = false
        if resume, fm.fileExists(atPath: fileURL.path) {
            let attributes = try fm.attributesOfItem(atPath: fileURL.path)
            appending = ((attributes[.size] as? NSNumber)?.intValue ?? 0) > 0
        }
        if !appending {
            guard fm.createFile(atPath: fileURL.path, contents: nil) else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: fileURL.path])
            }
        }
        let handle = try FileHandle(forUpdating: fileURL)
        self.handle = handle
        if !appending {
            try handle.write(contentsOf: Data((Self.header + "\n").utf8))
            return
        }
        // Resuming: check the header, then make sure the last line is complete.
        let head = try handle.read(upToCount: Self.header.utf8.count + 2) ?? Data()
        let firstLine = String(decoding: head.prefix(while: { $0 != UInt8(ascii: "\n") }), as: UTF8.self)
        guard firstLine.trimmingCharacters(in: .whitespacesAndNewlines) == Self.header else {
            try? handle.close()
            self.handle = nil
            throw CocoaError(.fileReadCorruptFile, userInfo: [
                NSFilePathErrorKey: fileURL.path,
                NSLocalizedDescriptionKey: "\(fileURL.path) does not start with the header \(Self.header)",
            ])
        }
        let end = try handle.seekToEnd()
        try handle.seek(toOffset: end - 1)
        let lastByte = try handle.read(upToCount: 1)
        try handle.seekToEnd()
        if lastByte?.first != UInt8(ascii: "\n") {
            try handle.write(contentsOf: Data("\n".utf8))
        }
    }

    deinit {
        try? handle?.close()
    }

    /// Appends one row per metric (in name order), all with the same `step`, `epoch`, `split` and
    /// wall time, in one write.
    public func append(step: Int, epoch: Int, split: String, metrics: [String: Double], wallTime: Double? = nil) throws {
        guard let handle else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "MetricsCSV is closed"])
        }
        guard !metrics.isEmpty else { return }
        let time = String(format: "%.3f", wallTime ?? now())
        var text = ""
        for (name, value) in metrics.sorted(by: { $0.key < $1.key }) {
            text += "\(step),\(epoch),\(Self.escape(split)),\(Self.escape(name)),\(Self.format(value)),\(time)\n"
        }
        try handle.write(contentsOf: Data(text.utf8))
    }

    /// Closes the file. Further calls do nothing; appends afterwards throw.
    public func close() throws {
        guard let h = handle else { return }
        handle = nil
        try h.close()
    }

    /// The shortest round-tripping decimal for `v`; `nan`, `inf`, `-inf` for non-finite values.
    static func format(_ v: Double) -> String {
        if v.isNaN { return "nan" }
        if v.isInfinite { return v < 0 ? "-inf" : "inf" }
        return "\(v)"
    }

    /// Quotes a field if it contains a comma, quote or line break (RFC 4180).
    static func escape(_ field: String) -> String {
        guard field.unicodeScalars.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
