import ArgumentParser
import Foundation
import Lathe
import LatheBench

extension Bench {
    struct Machine: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "machine",
            abstract: "The machine's limits: fp32 FMA peak and memory bandwidth, on one thread and on all.",
            discussion: """
            FMA peak: independent FMA chains in the widest registers of the ISA the kernels use (LATHE_ISA \
            applies), 2 FLOP per FMA lane. Bandwidth: STREAM-like copy (8 bytes per element) and triad \
            (12 bytes per element) over three arrays of --array-mb each, bytes read + written per second. \
            "All threads" is --threads (default: the pool size, i.e. the cores). Best of --repeat.
            """
        )

        @OptionGroup var options: BenchOptions
        @Option(help: "Seconds per measurement (FMA peak, each bandwidth kind).") var seconds: Double = 0.5
        @Option(help: "Size of each bandwidth array in MB (much larger than the last-level cache).") var arrayMb: Int = 128

        func run() throws {
            let repeats = try options.apply(defaultRepeats: 1)
            guard seconds > 0, arrayMb >= 1 else { throw ValidationError("--seconds and --array-mb must be positive") }
            let all = ThreadPool.threadCount
            let threadCounts = all == 1 ? [1] : [1, all]
            let cpu = MachineBenchmark.cpuModelName()
            var out = RowPrinter(json: options.json, columns: [("metric", "metric"), ("threads", "threads"),
                                                               ("value", "value"), ("unit", "unit")])
            out.print([("bench", .string("machine")), ("metric", .string("cpu")), ("threads", .int(all)),
                       ("value", .string(cpu)), ("unit", .string("")),
                       ("cpu", .string(cpu)), ("cores", .int(ProcessInfo.processInfo.activeProcessorCount)),
                       ("isa", .string(KernelInfo.isaName)), ("fma_lanes", .int(MachineBenchmark.fmaLanes))])
            for t in threadCounts {
                let peak = (0..<repeats).map { _ in MachineBenchmark.fmaPeak(seconds: seconds, threads: t) }.max()!
                out.print([("bench", .string("machine")), ("metric", .string("fma_peak")), ("threads", .int(t)),
                           ("value", .double(peak, digits: 1)), ("unit", .string("GFLOP/s")), ("isa", .string(KernelInfo.isaName))])
            }
            for kind in MachineBenchmark.StreamKind.allCases {
                for t in threadCounts {
                    let runs = (0..<repeats).map { _ in MachineBenchmark.bandwidth(kind, arrayMB: arrayMb, threads: t, seconds: seconds) }
                    guard let gbs = runs.compactMap({ $0 }).max() else { throw CLIError("could not allocate 3 x \(arrayMb) MB for the bandwidth test") }
                    out.print([("bench", .string("machine")), ("metric", .string("bandwidth_\(kind.rawValue)")), ("threads", .int(t)),
                               ("value", .double(gbs, digits: 1)), ("unit", .string("GB/s")), ("array_mb", .int(arrayMb))])
                }
            }
        }
    }
}
