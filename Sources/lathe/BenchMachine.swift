import ArgumentParser
import CLatheKernels
import Foundation
import Lathe

/// The CPU model name from /proc/cpuinfo (Linux) or sysctl (macOS); "unknown" otherwise.
func cpuModelName() -> String {
    if let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) {
        for line in text.split(separator: "\n") where line.hasPrefix("model name") || line.hasPrefix("Model") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
    }
    #if canImport(Darwin)
    var size = 0
    if sysctlbyname("machdep.cpu.brand_string", nil, &size, nil, 0) == 0, size > 0 {
        var buf = [CChar](repeating: 0, count: size)
        if sysctlbyname("machdep.cpu.brand_string", &buf, &size, nil, 0) == 0 { return String(cString: buf) }
    }
    #endif
    return "unknown"
}

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
            var out = RowPrinter(json: options.json, columns: [("metric", "metric"), ("threads", "threads"),
                                                               ("value", "value"), ("unit", "unit")])
            out.print([("bench", .string("machine")), ("metric", .string("cpu")), ("threads", .int(all)),
                       ("value", .string(cpuModelName())), ("unit", .string("")),
                       ("cpu", .string(cpuModelName())), ("cores", .int(ProcessInfo.processInfo.activeProcessorCount)),
                       ("isa", .string(KernelInfo.isaName)), ("fma_lanes", .int(Int(lathe_fma_peak_lanes())))])
            for t in threadCounts {
                let peak = (0..<repeats).map { _ in lathe_measure_fma_peak(seconds, Int32(t)) }.max()!
                out.print([("bench", .string("machine")), ("metric", .string("fma_peak")), ("threads", .int(t)),
                           ("value", .double(peak, digits: 1)), ("unit", .string("GFLOP/s")), ("isa", .string(KernelInfo.isaName))])
            }
            let bytes = arrayMb << 20
            for (kind, name) in [(LATHE_STREAM_COPY, "bandwidth_copy"), (LATHE_STREAM_TRIAD, "bandwidth_triad")] {
                for t in threadCounts {
                    let gbs = (0..<repeats).map { _ in lathe_measure_bandwidth(Int32(kind.rawValue), bytes, Int32(t), seconds) }.max()!
                    guard gbs > 0 else { throw CLIError("could not allocate 3 x \(arrayMb) MB for the bandwidth test") }
                    out.print([("bench", .string("machine")), ("metric", .string(name)), ("threads", .int(t)),
                               ("value", .double(gbs, digits: 1)), ("unit", .string("GB/s")), ("array_mb", .int(arrayMb))])
                }
            }
        }
    }
}
