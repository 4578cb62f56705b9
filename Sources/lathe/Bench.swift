import ArgumentParser
import Foundation
import Lathe

/// `lathe bench ...`: Lathe's own timings. Every subcommand takes `--threads N`, `--repeat K`
/// and `--json` (one JSON object per row, for bench/compare); timings are medians / bests over
/// the K repetitions after a warm-up.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure Lathe's speed (compare with references through bench/compare).",
        subcommands: [GEMM.self, TrainSpeed.self, InferSpeed.self, MemoryUse.self, Machine.self, BenchCompress.self, MemoryRun.self]
    )
}

/// Options every `lathe bench` subcommand has. `--repeat` has a per-command default.
struct BenchOptions: ParsableArguments {
    @OptionGroup var threadOptions: ThreadOptions
    @Option(name: .customLong("repeat"), help: "Timed repetitions (default depends on the benchmark).") var repeats: Int?
    @Flag(help: "Print JSON lines (one object per row) instead of a table.") var json = false

    /// Applies the thread count and returns the repetitions.
    func apply(defaultRepeats: Int) throws -> Int {
        try threadOptions.apply()
        let k = repeats ?? defaultRepeats
        guard k >= 1 else { throw ValidationError("--repeat must be at least 1, got \(k)") }
        return k
    }
}

/// Seconds of monotonic time.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// A JSON or table value in a benchmark row.
enum BenchValue {
    case string(String), int(Int), double(Double, digits: Int), bool(Bool)

    var json: String {
        switch self {
        case .string(let s):
            var out = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
                default: out.unicodeScalars.append(u)
                }
            }
            return out + "\""
        case .int(let i): return String(i)
        case .double(let d, let digits): return d.isFinite ? String(format: "%.\(digits)f", d) : "null"
        case .bool(let b): return b ? "true" : "false"
        }
    }

    var text: String {
        switch self {
        case .string(let s): return s
        case .double(let d, let digits): return String(format: "%.\(digits)f", d)
        default: return json
        }
    }
}

/// Prints benchmark rows as JSON lines, or as an aligned table (header before the first row).
struct RowPrinter {
    let json: Bool
    /// Keys shown in the table, with their column titles (JSON has every key).
    let columns: [(key: String, title: String)]
    private var headerDone = false

    init(json: Bool, columns: [(String, String)]) {
        self.json = json
        self.columns = columns.map { (key: $0.0, title: $0.1) }
    }

    mutating func print(_ row: [(String, BenchValue)]) {
        if json {
            Swift.print("{" + row.map { "\"\($0.0)\":\($0.1.json)" }.joined(separator: ",") + "}")
        } else {
            let widths = columns.map { max($0.title.count, 10) }
            if !headerDone {
                Swift.print(zip(columns, widths).map { pad($0.title, $1) }.joined(separator: "  "))
                headerDone = true
            }
            let dict = Dictionary(row, uniquingKeysWith: { a, _ in a })
            Swift.print(zip(columns, widths).map { pad(dict[$0.key]?.text ?? "-", $1) }.joined(separator: "  "))
        }
        fflush(nil)
    }

    private func pad(_ s: String, _ w: Int) -> String {
        s.count >= w ? s : String(repeating: " ", count: w - s.count) + s
    }
}

/// Median of a non-empty array.
func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

extension Bench {
    struct GEMM: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gemm",
            abstract: "fp32 GEMM throughput in GFLOP/s for square and training shapes (best and median of --repeat, default 5)."
        )

        @OptionGroup var options: BenchOptions
        @Option(help: "Shapes as MxNxK with optional :tA / :tB / :tAtB, comma-separated.")
        var shapes: String = "256x256x256,512x512x512,1024x1024x1024,2048x2048x2048,64x64x128,1024x128x512,1024x512x128,1024x512x128:tA,1024x512x128:tB"
        @Option(help: "Seconds per timed repetition (calls are repeated to fill it).") var minTime: Double = 0.05

        func run() throws {
            let repeats = try options.apply(defaultRepeats: 5)
            if !options.json { print("kernels \(KernelInfo.isaName), threads \(ThreadPool.threadCount)") }
            var out = RowPrinter(json: options.json, columns: [("shape", "shape (MxNxK)"), ("gflops", "GFLOP/s"),
                                                               ("median_gflops", "median"), ("ms", "best ms")])
            for spec in shapes.split(separator: ",") {
                let parts = spec.split(separator: ":")
                let dims = parts[0].split(separator: "x").compactMap { Int($0) }
                guard dims.count == 3, dims.allSatisfy({ $0 > 0 }) else {
                    throw ValidationError("bad shape '\(spec)': expected MxNxK with positive sizes, e.g. 512x512x512")
                }
                let flags = parts.count > 1 ? String(parts[1]) : ""
                let (m, n, k) = (dims[0], dims[1], dims[2])
                let ta = flags.contains("tA"), tb = flags.contains("tB")
                var rng = RandomGenerator(seed: 0)
                let a = Tensor.uniform([m * k], low: -1, high: 1, generator: &rng).scalars
                let b = Tensor.uniform([k * n], low: -1, high: 1, generator: &rng).scalars
                var c = [Float](repeating: 0, count: m * n)
                let flop = 2.0 * Double(m) * Double(n) * Double(k)
                var samples: [Double] = []
                a.withUnsafeBufferPointer { ap in
                    b.withUnsafeBufferPointer { bp in
                        c.withUnsafeMutableBufferPointer { cbuf in
                            let cp = cbuf.baseAddress!
                            let call = { KernelInfo.sgemm(transA: ta, transB: tb, m: m, n: n, k: k, a: ap.baseAddress!, b: bp.baseAddress!, c: cp) }
                            let t0 = now(); call(); let once = now() - t0
                            // Enough calls per timing to last --min-time.
                            let inner = Swift.max(1, Int(minTime / Swift.max(once, 1e-9)))
                            for _ in 0..<repeats {
                                let s = now()
                                for _ in 0..<inner { call() }
                                samples.append((now() - s) / Double(inner))
                            }
                        }
                    }
                }
                let best = samples.min()!
                let name = "\(m)x\(n)x\(k)" + (flags.isEmpty ? "" : ":\(flags)")
                out.print([("bench", .string("gemm")), ("shape", .string(name)), ("m", .int(m)), ("n", .int(n)), ("k", .int(k)),
                           ("transA", .bool(ta)), ("transB", .bool(tb)), ("threads", .int(ThreadPool.threadCount)),
                           ("gflops", .double(flop / best / 1e9, digits: 2)),
                           ("median_gflops", .double(flop / median(samples) / 1e9, digits: 2)),
                           ("seconds", .double(best, digits: 9)), ("ms", .double(best * 1e3, digits: 3))])
            }
        }
    }
}
