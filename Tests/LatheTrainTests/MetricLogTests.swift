import _LatheTestSupport
import Foundation
import LatheTrain
import XCTest

private func eventFiles(in dir: URL) throws -> [URL] {
    try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
        .filter { $0.lastPathComponent.hasPrefix("events.out.tfevents.") }
        .sorted { $0.lastPathComponent < $1.lastPathComponent }
}

private func sameFloat(_ a: Float, _ b: Float) -> Bool { a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN) }

final class CRC32CTests: XCTestCase {
    func testKnownVectors() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)  // RFC 3720 B.4
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
    }

    func testIncrementalUpdateEqualsWhole() {
        let bytes = Array("The quick brown fox jumps over the lazy dog".utf8)
        XCTAssertEqual(CRC32C.update(CRC32C.checksum(bytes[..<10]), bytes[10...]), CRC32C.checksum(bytes))
    }

    func testMask() {
        XCTAssertEqual(CRC32C.masked(0), 0xA282_EAD8)
        // (0xE3069283 >> 15 | 0xE3069283 << 17) + 0xA282EAD8, modulo 2^32.
        XCTAssertEqual(CRC32C.masked(0xE306_9283), ((0xE306_9283 as UInt32) >> 15 | (0xE306_9283 as UInt32) << 17) &+ 0xA282_EAD8)
    }
}

final class TensorBoardWriterTests: XCTestCase {
    func testWrittenFileDecodes() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var clock = 1_700_000_123.5
        let writer = try TensorBoardWriter(directory: dir.appendingPathComponent("run"), now: { clock })
        XCTAssertTrue(writer.fileURL.lastPathComponent.hasPrefix("events.out.tfevents.1700000123."))
        XCTAssertTrue(writer.fileURL.lastPathComponent.hasSuffix(".lathe"))

        clock += 1
        writer.addScalar(tag: "train/loss", value: 0.4312, step: 120)
        writer.addScalar(tag: "train/loss", value: 0.25, step: 0, wallTime: 42)
        try writer.addScalars(["val/accuracy": 0.912, "val/loss": .nan], step: -3, wallTime: 7)
        writer.addScalar(tag: "big", value: -1e30, step: 1 << 50)
        try writer.flush()

        // Everything flushed is readable before close.
        let events = try EventFileDecoder.events(at: writer.fileURL)
        XCTAssertEqual(events.count, 6)
        XCTAssertEqual(events[0].fileVersion, "brain.Event:2")
        XCTAssertEqual(events[0].wallTime, 1_700_000_123.5)
        XCTAssertEqual(events[0].values, [])
        let scalars = events.dropFirst().map { ($0.values.first!.tag, $0.step, $0.wallTime, $0.values.first!.simpleValue) }
        XCTAssertTrue(events.dropFirst().allSatisfy { $0.values.count == 1 && $0.fileVersion == nil })
        let expected: [(String, Int64, Double, Float)] = [
            ("train/loss", 120, 1_700_000_124.5, 0.4312), ("train/loss", 0, 42, 0.25),
            ("val/accuracy", -3, 7, 0.912), ("val/loss", -3, 7, .nan), ("big", 1 << 50, 1_700_000_124.5, -1e30),
        ]
        XCTAssertEqual(scalars.count, expected.count)
        for (got, want) in zip(scalars, expected) {
            XCTAssertEqual(got.0, want.0)
            XCTAssertEqual(got.1, want.1, want.0)
            XCTAssertEqual(got.2, want.2, want.0)
            XCTAssertTrue(sameFloat(got.3, want.3), "\(want.0): \(got.3) vs \(want.3)")
        }

        try writer.close()
        try writer.close()  // idempotent
        XCTAssertEqual(try EventFileDecoder.events(at: writer.fileURL).count, 6)
    }

    func testUnflushedScalarsAreNotOnDiskAndFlushPersistsThem() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let writer = try TensorBoardWriter(directory: dir)
        XCTAssertEqual(try EventFileDecoder.events(at: writer.fileURL).count, 1)  // file_version flushed at once
        writer.addScalar(tag: "a", value: 1, step: 1)
        XCTAssertEqual(try EventFileDecoder.events(at: writer.fileURL).count, 1)
        try writer.flush()
        XCTAssertEqual(try EventFileDecoder.events(at: writer.fileURL).count, 2)
    }

    func testWritersInTheSameSecondGetDistinctFiles() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try TensorBoardWriter(directory: dir, now: { 1000 })
        let b = try TensorBoardWriter(directory: dir, now: { 1000 })
        XCTAssertNotEqual(a.fileURL, b.fileURL)
        XCTAssertEqual(b.fileURL.lastPathComponent, a.fileURL.lastPathComponent + ".1")
        XCTAssertEqual(try eventFiles(in: dir).count, 2)
    }

    // MARK: Golden file from TensorBoard's Python EventFileWriter

    private struct GoldenScalar { let tag: String; let step: Int64; let wallTime: Double; let value: Float }

    private func loadGolden() throws -> (url: URL, fileVersionWallTime: Double, scalars: [GoldenScalar]) {
        let dir = fixturesDirectory.appendingPathComponent("tensorboard")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("expected.json"))) as! [String: Any]
        let scalars = (json["scalars"] as! [[String: Any]]).map { s -> GoldenScalar in
            // Floats are stored as decimal strings ("nan", "inf", "-inf" included); Double(String) is exact.
            GoldenScalar(tag: s["tag"] as! String, step: (s["step"] as! NSNumber).int64Value,
                         wallTime: Double(s["wall_time"] as! String)!, value: Float(Double(s["value"] as! String)!))
        }
        return (dir.appendingPathComponent("events.out.tfevents.golden"),
                Double(json["file_version_wall_time"] as! String)!, scalars)
    }

    func testGoldenFileFromPythonDecodes() throws {
        let golden = try loadGolden()
        let events = try EventFileDecoder.events(at: golden.url)
        XCTAssertEqual(events.first?.fileVersion, TensorBoardWriter.fileVersion)
        XCTAssertEqual(events.first?.wallTime, golden.fileVersionWallTime)
        XCTAssertEqual(events.count, golden.scalars.count + 1)
        for (event, want) in zip(events.dropFirst(), golden.scalars) {
            XCTAssertEqual(event.values.count, 1)
            XCTAssertEqual(event.values.first?.tag, want.tag)
            XCTAssertEqual(event.step, want.step)
            XCTAssertEqual(event.wallTime, want.wallTime)
            XCTAssertTrue(sameFloat(event.values.first?.simpleValue ?? 0, want.value), "\(want.tag)@\(want.step)")
        }
    }

    func testSwiftWriterMatchesPythonGolden() throws {
        let golden = try loadGolden()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let writer = try TensorBoardWriter(directory: dir, now: { golden.fileVersionWallTime })
        for s in golden.scalars {
            writer.addScalar(tag: s.tag, value: Double(s.value), step: Int(s.step), wallTime: s.wallTime)
        }
        try writer.close()
        let ours = try EventFileDecoder.events(at: writer.fileURL)
        let theirs = try EventFileDecoder.events(at: golden.url)
        XCTAssertEqual(ours, theirs)  // NaN compared by bit pattern: both write the quiet NaN 0x7FC00000
        // Same wall times, field order and proto3 default omission: the scalar records are byte-identical.
        // (Python's first record also has source_metadata {writer: ...}, field 10, which Lathe omits.)
        let ourRecords = try EventFileDecoder.records(Data(contentsOf: writer.fileURL))
        let theirRecords = try EventFileDecoder.records(Data(contentsOf: golden.url))
        XCTAssertEqual(ourRecords.count, theirRecords.count)
        XCTAssertEqual(Array(ourRecords.dropFirst()), Array(theirRecords.dropFirst()))
    }
}

final class MetricsCSVTests: XCTestCase {
    private func read(_ url: URL) throws -> String { try String(contentsOf: url, encoding: .utf8) }

    func testHeaderOnceAndRows() throws {
        let dir = try temporaryDirectory().appendingPathComponent("new/run")
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent().deletingLastPathComponent()) }
        let csv = try MetricsCSV(directory: dir, resume: false, now: { 1_700_000_000.1234 })
        XCTAssertEqual(csv.fileURL, dir.appendingPathComponent("metrics.csv"))
        try csv.append(step: 10, epoch: 1, split: "train", metrics: ["loss": 0.4312, "accuracy": 0.9])
        // Flushed per call: readable before close.
        XCTAssertEqual(try read(csv.fileURL), """
            step,epoch,split,name,value,wall_time
            10,1,train,accuracy,0.9,1700000000.123
            10,1,train,loss,0.4312,1700000000.123

            """)
        try csv.append(step: 20, epoch: 1, split: "val, held-out", metrics: ["a\"b": .nan, "inf": .infinity, "one": 1], wallTime: 5)
        try csv.append(step: 20, epoch: 1, split: "val", metrics: [:])
        try csv.close()
        XCTAssertEqual(try read(csv.fileURL), """
            step,epoch,split,name,value,wall_time
            10,1,train,accuracy,0.9,1700000000.123
            10,1,train,loss,0.4312,1700000000.123
            20,1,"val, held-out","a""b",nan,5.000
            20,1,"val, held-out",inf,inf,5.000
            20,1,"val, held-out",one,1.0,5.000

            """)
        XCTAssertThrowsError(try csv.append(step: 1, epoch: 1, split: "x", metrics: ["y": 1]))
    }

    func testResumeAppendsWithoutSecondHeaderAndFreshStartTruncates() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        do {
            let csv = try MetricsCSV(directory: dir, resume: true, now: { 1 })  // resume with no file: new file
            try csv.append(step: 1, epoch: 0, split: "train", metrics: ["loss": 2])
        }  // deinit closes, as in a run that never called close()
        do {
            let csv = try MetricsCSV(directory: dir, resume: true, now: { 2 })
            try csv.append(step: 2, epoch: 0, split: "train", metrics: ["loss": 1.5])
            try csv.close()
        }
        let url = dir.appendingPathComponent("metrics.csv")
        XCTAssertEqual(try read(url), "step,epoch,split,name,value,wall_time\n1,0,train,loss,2.0,1.000\n2,0,train,loss,1.5,2.000\n")

        // A run killed mid-row: the incomplete line is ended before new rows.
        let handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("3,0,tra".utf8))
        try handle.close()
        let resumed = try MetricsCSV(directory: dir, resume: true, now: { 4 })
        try resumed.append(step: 4, epoch: 1, split: "train", metrics: ["loss": 1])
        try resumed.close()
        XCTAssertTrue(try read(url).hasSuffix("2,0,train,loss,1.5,2.000\n3,0,tra\n4,1,train,loss,1.0,4.000\n"))

        let fresh = try MetricsCSV(directory: dir, resume: false, now: { 9 })
        try fresh.append(step: 1, epoch: 0, split: "train", metrics: ["loss": 3])
        try fresh.close()
        XCTAssertEqual(try read(url), "step,epoch,split,name,value,wall_time\n1,0,train,loss,3.0,9.000\n")
    }

    func testResumeRejectsForeignFile() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("epoch,loss\n1,2\n".utf8).write(to: dir.appendingPathComponent("metrics.csv"))
        XCTAssertThrowsError(try MetricsCSV(directory: dir, resume: true))
    }
}

final class MetricLoggerTests: XCTestCase {
    func testLogsToCSVAndTensorBoard() throws {
        let dir = try temporaryDirectory().appendingPathComponent("run1")
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
        var clock = 100.0
        let logger = try MetricLogger(directory: dir, resume: false, now: { clock })
        try logger.log(step: 1, epoch: 0, split: "train", metrics: ["loss": 2.5, "accuracy": 0.25])
        clock = 101
        try logger.log(step: 2, epoch: 1, split: "val", metrics: ["loss": 2.0])

        // Written through before close.
        let csv = try String(contentsOf: dir.appendingPathComponent("metrics.csv"), encoding: .utf8)
        XCTAssertEqual(csv, """
            step,epoch,split,name,value,wall_time
            1,0,train,accuracy,0.25,100.000
            1,0,train,loss,2.5,100.000
            2,1,val,loss,2.0,101.000

            """)
        let files = try eventFiles(in: dir)
        XCTAssertEqual(files.count, 1)
        let events = try EventFileDecoder.events(at: files[0]).dropFirst()
        XCTAssertEqual(events.map { $0.values.first!.tag }, ["train/accuracy", "train/loss", "val/loss"])
        XCTAssertEqual(events.map(\.step), [1, 1, 2])
        XCTAssertEqual(events.map(\.wallTime), [100, 100, 101])
        XCTAssertEqual(events.map { $0.values.first!.simpleValue }, [0.25, 2.5, 2.0])
        try logger.close()
        try logger.close()

        // Resume: CSV continues; a second event file appears.
        clock = 200
        let resumed = try MetricLogger(directory: dir, resume: true, now: { clock })
        try resumed.log(step: 3, epoch: 1, split: "train", metrics: ["loss": 1.0])
        try resumed.close()
        let csv2 = try String(contentsOf: dir.appendingPathComponent("metrics.csv"), encoding: .utf8)
        XCTAssertEqual(csv2, csv + "3,1,train,loss,1.0,200.000\n")
        let files2 = try eventFiles(in: dir)
        XCTAssertEqual(files2.count, 2)
        XCTAssertEqual(try EventFileDecoder.events(at: files2[1]).last?.values.first?.tag, "train/loss")
    }

    /// Writes a small sample run. With `LATHE_TB_SAMPLE_DIR` set, the run is kept in
    /// `$LATHE_TB_SAMPLE_DIR/sample` for checking with TensorBoard's own reader, e.g.
    /// `python -c "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator; ..."`.
    func testSampleRun() throws {
        let keep = ProcessInfo.processInfo.environment["LATHE_TB_SAMPLE_DIR"]
        let root = try keep.map { URL(fileURLWithPath: $0) } ?? temporaryDirectory()
        defer { if keep == nil { try? FileManager.default.removeItem(at: root) } }
        let dir = root.appendingPathComponent("sample")
        let logger = try MetricLogger(directory: dir, resume: false)
        for step in 1...50 {
            let loss = 2.3 * exp(-Double(step) / 20)
            try logger.log(step: step, epoch: (step - 1) / 10, split: "train", metrics: ["loss": loss, "accuracy": 1 - loss / 2.3])
            if step % 10 == 0 {
                try logger.log(step: step, epoch: (step - 1) / 10, split: "val", metrics: ["loss": loss * 1.1, "accuracy": 0.9 * (1 - loss / 2.3)])
            }
        }
        try logger.close()
        let events = try eventFiles(in: dir).flatMap { try EventFileDecoder.events(at: $0) }
        XCTAssertEqual(events.count, 1 + 50 * 2 + 5 * 2)
        XCTAssertEqual(events.last?.values.first?.tag, "val/loss")
        XCTAssertEqual(events.last?.step, 50)
        XCTAssertEqual(events.last?.values.first?.simpleValue, Float(2.3 * exp(-50.0 / 20) * 1.1))
    }

    func testDisabledOutputs() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let logger = try MetricLogger(directory: dir, resume: false, csv: false, tensorBoard: true)
        try logger.log(step: 1, epoch: 0, split: "train", metrics: ["loss": 1])
        try logger.close()
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("metrics.csv").path))
        XCTAssertEqual(try eventFiles(in: dir).count, 1)
    }
}

final class ProgressReporterTests: XCTestCase {
    /// A reporter whose clock and output the test controls.
    private final class Harness {
        var now = 0.0
        var output: [String] = []
        var reporter: ProgressReporter!
        init(totalSteps: Int?, totalEpochs: Int? = nil, startStep: Int = 0, logEvery: Int? = nil, mode: ProgressReporter.Mode) {
            reporter = ProgressReporter(totalSteps: totalSteps, totalEpochs: totalEpochs, startStep: startStep, logEvery: logEvery,
                                        mode: mode, clock: { [unowned self] in self.now }, sink: { [unowned self] in self.output.append($0) })
        }
    }

    func testFormatting() {
        XCTAssertEqual(ProgressReporter.formatDuration(5), "0:05")
        XCTAssertEqual(ProgressReporter.formatDuration(59.6), "1:00")
        XCTAssertEqual(ProgressReporter.formatDuration(754), "12:34")
        XCTAssertEqual(ProgressReporter.formatDuration(3600), "1:00:00")
        XCTAssertEqual(ProgressReporter.formatDuration(3 * 3600 + 25 * 60 + 7), "3:25:07")
        XCTAssertEqual(ProgressReporter.formatDuration(-3), "0:00")
        XCTAssertEqual(ProgressReporter.formatRate(153.24), "153.2 it/s")
        XCTAssertEqual(ProgressReporter.formatRate(0.4), "2.50 s/it")
    }

    func testRateAndETA() {
        let h = Harness(totalSteps: 1000, mode: .lines)
        h.now = 4
        XCTAssertNil(h.reporter.stepsPerSecond(step: 0, now: 4))
        XCTAssertNil(h.reporter.stepsPerSecond(step: 10, now: 0))
        XCTAssertEqual(h.reporter.stepsPerSecond(step: 200, now: 4)!, 50, accuracy: 1e-12)
        XCTAssertEqual(h.reporter.etaSeconds(step: 200, now: 4)!, 16, accuracy: 1e-12)
        XCTAssertEqual(h.reporter.etaSeconds(step: 1000, now: 20)!, 0)

        // Resumed at step 500: the rate counts only steps done in this process.
        let r = Harness(totalSteps: 1000, startStep: 500, mode: .lines)
        XCTAssertEqual(r.reporter.stepsPerSecond(step: 600, now: 2)!, 50, accuracy: 1e-12)
        XCTAssertEqual(r.reporter.etaSeconds(step: 600, now: 2)!, 8, accuracy: 1e-12)
        XCTAssertNil(Harness(totalSteps: nil, mode: .lines).reporter.etaSeconds(step: 10, now: 1))
    }

    func testPlainLines() {
        let h = Harness(totalSteps: 1000, mode: .lines)
        XCTAssertEqual(h.reporter.logEvery, 50)  // about 20 lines per run
        XCTAssertEqual(h.reporter.plainLine(step: 120, epoch: 2, loss: 0.43124, accuracy: 0.9123, now: 120 / 153.2),
                       "step 120/1000 epoch 2 loss 0.4312 acc 91.2% 153.2 it/s eta 0:06")  // 880 / 153.2 = 5.74 s
        for step in 1...1000 {
            h.now = Double(step) * 0.01  // 100 it/s
            h.reporter.update(step: step, epoch: (step - 1) / 250, loss: 1.0 / Double(step))
        }
        h.reporter.finish()
        XCTAssertEqual(h.output.count, 20)
        XCTAssertTrue(h.output.allSatisfy { $0.hasSuffix("\n") && !$0.contains("\r") })
        XCTAssertEqual(h.output[0], "step 50/1000 epoch 0 loss 0.0200 100.0 it/s eta 0:10\n")
        XCTAssertEqual(h.output[1], "step 100/1000 epoch 0 loss 0.0100 100.0 it/s eta 0:09\n")
        XCTAssertEqual(h.output[19], "step 1000/1000 epoch 3 loss 0.0010 100.0 it/s eta 0:00\n")
    }

    func testPlainLinesWithSkippedStepsUnknownTotalAndFinish() {
        let h = Harness(totalSteps: nil, totalEpochs: 3, logEvery: 10, mode: .lines)
        for step in stride(from: 3, through: 27, by: 3) {  // never a multiple of 10 except by crossing
            h.now = Double(step)
            h.reporter.update(step: step, epoch: 1, loss: 0.5, accuracy: 0.5)
        }
        XCTAssertEqual(h.output, [
            "step 12 epoch 1/3 loss 0.5000 acc 50.0% 1.0 it/s\n",
            "step 21 epoch 1/3 loss 0.5000 acc 50.0% 1.0 it/s\n",
        ])
        h.reporter.finish()  // the last, unprinted state
        XCTAssertEqual(h.output.last, "step 27 epoch 1/3 loss 0.5000 acc 50.0% 1.0 it/s\n")
        h.reporter.message("val loss 0.4")
        XCTAssertEqual(h.output.last, "val loss 0.4\n")
    }

    func testTerminalBarThrottleAndFinish() {
        let h = Harness(totalSteps: 100, totalEpochs: 2, mode: .terminal)
        h.reporter.columns = 100
        h.reporter.barWidth = 10
        h.reporter.minRedrawInterval = 0.125
        for step in 1...100 {
            h.now = Double(step) * 0.031_25  // 32 it/s (exact binary fractions): a redraw every 4 steps
            h.reporter.update(step: step, epoch: step <= 50 ? 1 : 2, loss: 0.5, accuracy: 0.75)
        }
        XCTAssertEqual(h.output.count, 26)  // steps 1, 5, 9, ..., 97, and the last step
        XCTAssertTrue(h.output.allSatisfy { $0.hasPrefix("\r") && $0.hasSuffix("\u{1B}[K") && !$0.contains("\n") })
        XCTAssertEqual(h.output[0], "\repoch 1/2 [>         ] 1/100 loss 0.5000 acc 75.0% 32.0 it/s eta 0:03\u{1B}[K")
        XCTAssertEqual(h.output[12], "\repoch 1/2 [====>     ] 49/100 loss 0.5000 acc 75.0% 32.0 it/s eta 0:02\u{1B}[K")
        XCTAssertEqual(h.output.last, "\repoch 2/2 [==========] 100/100 loss 0.5000 acc 75.0% 32.0 it/s eta 0:00\u{1B}[K")
        h.reporter.finish()
        XCTAssertEqual(h.output.last, "\n")
        XCTAssertEqual(h.output.count, 27)
        h.reporter.finish()
        XCTAssertEqual(h.output.count, 27)
    }

    func testTerminalFinishDrawsPendingStateAndMessageKeepsBar() {
        let h = Harness(totalSteps: 1000, mode: .terminal)
        h.reporter.columns = 60
        h.now = 1
        h.reporter.update(step: 10, epoch: 0, loss: 1)
        h.now = 1.05
        h.reporter.update(step: 11, epoch: 0, loss: 0.9)  // throttled
        XCTAssertEqual(h.output.count, 1)
        h.reporter.message("epoch 0 val loss 0.8")
        XCTAssertEqual(h.output[1], "\r\u{1B}[Kepoch 0 val loss 0.8\n")
        XCTAssertTrue(h.output[2].hasPrefix("\repoch 0 ["))
        XCTAssertTrue(h.output[2].contains("11/1000 loss 0.9000"))
        XCTAssertTrue(h.output.allSatisfy { $0.replacingOccurrences(of: "\u{1B}[K", with: "").count <= 60 })
        h.reporter.finish()
        XCTAssertEqual(h.output.last, "\n")
    }

    func testNarrowTerminalDropsBarAndTruncates() {
        let h = Harness(totalSteps: 1000, mode: .terminal)
        h.reporter.columns = 30
        h.now = 1
        h.reporter.update(step: 10, epoch: 0, loss: 1)
        let line = h.output[0].dropFirst().replacingOccurrences(of: "\u{1B}[K", with: "")
        XCTAssertEqual(line, "epoch 0 10/1000 loss 1.0000")
        XCTAssertFalse(line.contains("["))
    }
}
