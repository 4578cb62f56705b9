import Foundation

/// The training loop's metric log: every call goes to `metrics.csv` and a TensorBoard event file
/// in one run directory.
///
/// Layout of `directory`:
/// - `metrics.csv`: see ``MetricsCSV`` (columns `step,epoch,split,name,value,wall_time`).
/// - `events.out.tfevents.<unix time>.<hostname>.lathe`: see ``TensorBoardWriter``; a resumed run
///   adds a new event file next to the old ones. Tags are `<split>/<name>`, e.g. `train/loss`,
///   `val/accuracy`. View with `tensorboard --logdir <parent of directory>`.
///
/// Each ``log(step:epoch:split:metrics:)`` call is written through to both files before it returns,
/// so a killed run keeps everything it logged. Not thread-safe: use from one thread.
public final class MetricLogger {
    /// The run directory.
    public let directory: URL
    /// The CSV log, if enabled.
    public let csv: MetricsCSV?
    /// The TensorBoard writer, if enabled.
    public let tensorBoard: TensorBoardWriter?
    private let now: () -> Double

    /// Opens the logs in `directory`, creating it if missing.
    ///
    /// - Parameters:
    ///   - resume: `true` to continue an existing `metrics.csv` (no second header); `false`
    ///     starts it afresh. Either way a new TensorBoard event file is started.
    ///   - csv: whether to write `metrics.csv`.
    ///   - tensorBoard: whether to write a TensorBoard event file.
    ///   - now: wall-clock time in seconds since the Unix epoch, recorded with every row and event.
    public init(directory: URL, resume: Bool, csv: Bool = true, tensorBoard: Bool = true,
                now: @escaping () -> Double = { Date().timeIntervalSince1970 }) throws {
        self.directory = directory
        self.now = now
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.csv = csv ? try MetricsCSV(directory: directory, resume: resume, now: now) : nil
        self.tensorBoard = tensorBoard ? try TensorBoardWriter(directory: directory, now: now) : nil
    }

    /// Logs `metrics` (name → value, e.g. `["loss": 0.43, "accuracy": 0.91]`) for one split
    /// (`train`, `val`, `test`, …) at `step`, and flushes both files.
    /// Logs what ``Trainer/onMetrics`` reports (`split` named by its raw value).
    public func log(step: Int, epoch: Int, split: MetricSplit, metrics: [String: Double]) throws {
        try log(step: step, epoch: epoch, split: split.rawValue, metrics: metrics)
    }

    public func log(step: Int, epoch: Int, split: String, metrics: [String: Double]) throws {
        guard !metrics.isEmpty else { return }
        let time = now()
        try csv?.append(step: step, epoch: epoch, split: split, metrics: metrics, wallTime: time)
        if let tensorBoard {
            var tagged: [String: Double] = [:]
            for (name, value) in metrics { tagged[split.isEmpty ? name : "\(split)/\(name)"] = value }
            try tensorBoard.addScalars(tagged, step: step, wallTime: time)
        }
    }

    /// Flushes and closes both files. Further calls do nothing.
    public func close() throws {
        var firstError: Error?
        do { try csv?.close() } catch { firstError = error }
        do { try tensorBoard?.close() } catch { firstError = firstError ?? error }
        if let firstError { throw firstError }
    }
}
