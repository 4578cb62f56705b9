import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reports training progress: a redrawn progress bar on a terminal, plain log lines otherwise.
///
/// - ``Mode/terminal``: one line, redrawn in place with `\r` and cleared to its end with
///   `ESC [ K`, e.g. `epoch 2/10 [=====>              ] 120/1000 loss 0.4312 acc 91.2% 153.2 it/s eta 0:05`.
///   Redraws are throttled to one per ``minRedrawInterval`` seconds (the last step is always
///   drawn); ``finish()`` draws the latest state and ends the line.
/// - ``Mode/lines``: a line every ``logEvery`` steps and at the last step, e.g.
///   `step 120/1000 epoch 2 loss 0.4312 acc 91.2% 153.2 it/s eta 0:05`.
///
/// Rates are averages since construction: `it/s = (step - startStep) / elapsed`, and
/// `eta = (totalSteps - step) / (it/s)`, so time spent outside the step loop (validation,
/// checkpoints) is included and the ETA reflects it. Durations print as `m:ss`, or `h:mm:ss`
/// from one hour. Below 1 it/s the rate prints as seconds per step (`2.50 s/it`). Items whose
/// value is unknown (no loss given, no total, no elapsed time yet) are left out.
///
/// All output goes through the `sink` closure (default: standard output, unbuffered), so tests
/// can capture it. Not thread-safe: use from one thread.
public final class ProgressReporter {
    /// How progress is shown.
    public enum Mode: Sendable {
        /// A single redrawn line with a bar (for an interactive terminal).
        case terminal
        /// Plain, newline-terminated log lines (for files, pipes, CI logs).
        case lines
    }

    /// Receives every piece of output text, exactly as it should be written.
    public typealias Sink = (String) -> Void

    /// The total number of steps of the run, if known.
    public let totalSteps: Int?
    /// The total number of epochs, if known (shown as `epoch e/E`).
    public let totalEpochs: Int?
    /// The output mode.
    public let mode: Mode
    /// In ``Mode/lines``: a line is printed whenever the step reaches a multiple of this.
    public let logEvery: Int
    /// In ``Mode/terminal``: the minimum time between redraws, in seconds.
    public var minRedrawInterval: Double = 0.1
    /// In ``Mode/terminal``: the bar's width in characters (narrowed to fit ``columns``).
    public var barWidth: Int = 24
    /// In ``Mode/terminal``: the terminal width; lines are kept below it.
    public var columns: Int

    private let startStep: Int
    private let startTime: Double
    private let clock: () -> Double
    private let sink: Sink
    private var last: (step: Int, epoch: Int, loss: Double?, accuracy: Double?)?
    private var lastShown = false
    private var lastDrawTime: Double?
    private var lastPrintedStep: Int?
    private var lineOpen = false

    /// Whether standard output is a terminal (`isatty(1)`).
    public static var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) != 0 }

    /// Creates a reporter; the clock starts now.
    ///
    /// - Parameters:
    ///   - totalSteps: the step count of the whole run, if known (enables the bar, percentage, ETA).
    ///   - totalEpochs: the epoch count, if known.
    ///   - startStep: the step the run starts from (non-zero when resuming), for the rate.
    ///   - logEvery: lines-mode period in steps; default `ceil(totalSteps / 20)` (about 20 lines per
    ///     run), or 100 without a total.
    ///   - mode: default ``Mode/terminal`` if standard output is a terminal, else ``Mode/lines``.
    ///   - clock: monotonic time in seconds (default: system uptime).
    ///   - sink: where output text goes (default: standard output).
    public init(totalSteps: Int?, totalEpochs: Int? = nil, startStep: Int = 0, logEvery: Int? = nil,
                mode: Mode? = nil, clock: @escaping () -> Double = { ProcessInfo.processInfo.systemUptime },
                sink: Sink? = nil) {
        self.totalSteps = totalSteps
        self.totalEpochs = totalEpochs
        self.startStep = startStep
        self.logEvery = max(1, logEvery ?? totalSteps.map { ($0 + 19) / 20 } ?? 100)
        self.mode = mode ?? (Self.stdoutIsTerminal ? .terminal : .lines)
        self.clock = clock
        self.sink = sink ?? { FileHandle.standardOutput.write(Data($0.utf8)) }
        self.columns = ProcessInfo.processInfo.environment["COLUMNS"].flatMap { Int($0) }.flatMap { $0 > 20 ? $0 : nil } ?? 80
        startTime = clock()
    }

    /// Records that `step` steps are done (in `epoch`) and shows it if due.
    ///
    /// - Parameters:
    ///   - loss: the latest (or running mean) training loss.
    ///   - accuracy: a fraction in 0...1, shown as a percentage.
    public func update(step: Int, epoch: Int, loss: Double? = nil, accuracy: Double? = nil) {
        last = (step, epoch, loss, accuracy)
        lastShown = false
        let now = clock()
        let isLast = totalSteps.map { step >= $0 } ?? false
        switch mode {
        case .terminal:
            if isLast || lastDrawTime.map({ now - $0 >= minRedrawInterval }) ?? true { draw(now: now) }
        case .lines:
            let due = lastPrintedStep.map { step / logEvery > $0 / logEvery } ?? (step / logEvery > startStep / logEvery)
            if isLast || due { printLine(now: now) }
        }
    }

    /// Writes a message on its own line without garbling the bar (in terminal mode the bar is
    /// cleared, the message written, and the bar redrawn below it).
    public func message(_ text: String) {
        switch mode {
        case .terminal:
            if lineOpen {
                sink("\r\u{1B}[K" + text + "\n")
                lineOpen = false
                if last != nil { draw(now: clock()) }
            } else {
                sink(text + "\n")
            }
        case .lines:
            sink(text + "\n")
        }
    }

    /// Shows the latest state if it has not been shown and, in terminal mode, ends the line.
    public func finish() {
        let now = clock()
        switch mode {
        case .terminal:
            if last != nil, !lastShown { draw(now: now) }
            if lineOpen { sink("\n"); lineOpen = false }
        case .lines:
            if last != nil, !lastShown { printLine(now: now) }
        }
    }

    /// The average steps per second from the start until `now`, or `nil` before any time passed.
    public func stepsPerSecond(step: Int, now: Double) -> Double? {
        let elapsed = now - startTime
        guard elapsed > 0, step > startStep else { return nil }
        return Double(step - startStep) / elapsed
    }

    /// The estimated seconds until `totalSteps` at the average rate, or `nil` if unknown.
    public func etaSeconds(step: Int, now: Double) -> Double? {
        guard let totalSteps, let rate = stepsPerSecond(step: step, now: now) else { return nil }
        return Double(max(0, totalSteps - step)) / rate
    }

    /// The lines-mode text (without the line end) for a state at time `now`.
    public func plainLine(step: Int, epoch: Int, loss: Double?, accuracy: Double?, now: Double) -> String {
        var parts = [totalSteps.map { "step \(step)/\($0)" } ?? "step \(step)", epochText(epoch)]
        parts += metricParts(step: step, loss: loss, accuracy: accuracy, now: now)
        return parts.joined(separator: " ")
    }

    /// The terminal-mode text (without `\r` and the clear code) for a state at time `now`, at most
    /// `columns - 1` characters: the bar is narrowed to fit, and left out (with trailing items
    /// dropped as needed) if fewer than 5 characters remain for it.
    public func barLine(step: Int, epoch: Int, loss: Double?, accuracy: Double?, now: Double) -> String {
        let head = [epochText(epoch), totalSteps.map { "\(step)/\($0)" } ?? "step \(step)"]
        var tail = metricParts(step: step, loss: loss, accuracy: accuracy, now: now)
        let limit = columns - 1
        // Without room for a bar of 5, drop trailing items until the line fits.
        var line = (head + tail).joined(separator: " ")
        if let totalSteps, totalSteps > 0, limit - line.count - 3 >= 5 {
            let width = min(barWidth, limit - line.count - 3)
            let fraction = min(1, max(0, Double(step) / Double(totalSteps)))
            let filled = Int((fraction * Double(width)).rounded(.down))
            var bar = String(repeating: "=", count: filled)
            if filled < width { bar += ">" + String(repeating: " ", count: width - filled - 1) }
            return ([head[0], "[\(bar)]", head[1]] + tail).joined(separator: " ")
        }
        while line.count > limit, !tail.isEmpty {
            tail.removeLast()
            line = (head + tail).joined(separator: " ")
        }
        return line.count > limit ? String(line.prefix(limit)) : line
    }

    /// Formats seconds as `m:ss`, or `h:mm:ss` from one hour (rounded to whole seconds).
    public static func formatDuration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let total = Int(max(0, seconds).rounded())
        let h = total / 3600, m = (total / 60) % 60, s = total % 60
        return h > 0 ? String(format: "%d:%02d:%02d", h, m, s) : String(format: "%d:%02d", m, s)
    }

    /// Formats a rate as `153.2 it/s`, or `2.50 s/it` below one step per second.
    public static func formatRate(_ stepsPerSecond: Double) -> String {
        stepsPerSecond >= 1 ? String(format: "%.1f it/s", stepsPerSecond) : String(format: "%.2f s/it", 1 / stepsPerSecond)
    }

    private func epochText(_ epoch: Int) -> String {
        totalEpochs.map { "epoch \(epoch)/\($0)" } ?? "epoch \(epoch)"
    }

    private func metricParts(step: Int, loss: Double?, accuracy: Double?, now: Double) -> [String] {
        var parts: [String] = []
        if let loss { parts.append(String(format: "loss %.4f", loss)) }
        if let accuracy { parts.append(String(format: "acc %.1f%%", accuracy * 100)) }
        if let rate = stepsPerSecond(step: step, now: now) { parts.append(Self.formatRate(rate)) }
        if let eta = etaSeconds(step: step, now: now) { parts.append("eta " + Self.formatDuration(eta)) }
        return parts
    }

    private func draw(now: Double) {
        guard let last else { return }
        sink("\r" + barLine(step: last.step, epoch: last.epoch, loss: last.loss, accuracy: last.accuracy, now: now) + "\u{1B}[K")
        lineOpen = true
        lastShown = true
        lastDrawTime = now
    }

    private func printLine(now: Double) {
        guard let last else { return }
        sink(plainLine(step: last.step, epoch: last.epoch, loss: last.loss, accuracy: last.accuracy, now: now) + "\n")
        lastPrintedStep = last.step
        lastShown = true
    }
}
