import ArgumentParser
import Foundation
import Lathe
import LatheBench

/// `lathe bench compress`: accuracy and speed of pruning and distillation on the bundled
/// digits, printed for the record (``CompressionBenchmark``; about a minute).
struct BenchCompress: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compress",
        abstract: "Accuracy and speed of pruning and distillation on the bundled digits (about a minute)."
    )

    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        try threadOptions.apply()
        let r = try CompressionBenchmark.run { print($0) }
        let scan = r.sensitivity
        for name in Array(Set(scan.rows.map(\.parameter))).sorted() {
            print("sensitivity \(name): " + scan.rows(for: name).map { String(format: "%.1f:%.3f", $0.sparsity, $0.metric) }.joined(separator: " "))
        }
        print("ratios within a 1-point drop: \(scan.ratios(maxDrop: 0.01).sorted { $0.key < $1.key })")
        let split = r.teacher.test == nil ? "validation" : "test"
        print("\nvariant  parameters  non-zero  \(split)  latency b64 (ms)  speed-up b64")
        guard let base = r.rows.first else { return }
        for row in r.rows {
            print(String(format: "%@  %d  %d  %@  %.3f  %.2fx", row.name, row.parameters, row.nonZero, scoreText(row.evaluation),
                         row.latency64, base.latency64 / row.latency64))
        }
        for (stage, out) in r.stages {
            guard let d = out.distillation else { continue }
            print(String(format: "%@: KD student (alpha %.1f, T %.0f) mean test %.2f%%; without KD %.2f%% (%+.2f points; %d seeds, %d steps, %@)",
                         stage.name, stage.alpha, stage.temperature, 100 * d.meanKD, 100 * d.meanPlain, 100 * (d.meanKD - d.meanPlain),
                         stage.seeds, stage.steps,
                         stage.augmentation.map { $0.isIdentity ? "images as they are" : "images shifted by up to \($0.shift) px" } ?? "images as they are"))
        }
        for (_, out) in r.stages { for n in out.notes where out.distillation == nil { print(n.replacingOccurrences(of: "`", with: "")) } }
    }
}
