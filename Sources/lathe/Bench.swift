import ArgumentParser
import Foundation
import Lathe
import LatheBench

/// `lathe bench ...`: Lathe's own timings. Every subcommand takes `--threads N`, `--repeat K`
/// and `--json` (one JSON object per row, for bench/compare); timings are medians / bests over
/// the K repetitions after a warm-up.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure Lathe's speed (compare with references through bench/compare).",
        subcommands: [GEMM.self, TrainSpeed.self, InferSpeed.self, MemoryUse.self, Machine.self, BenchCompress.self, MemoryRun.self, LLM.self, LoRAStep.self]
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

/// A JSON or table value in a benchmark row.
enum BenchValue {
    case string(String), int(Int), double(Double, digits: Int), bool(Bool)

    var json: String {
        switch self {
        case .string(let s): return JSONWriter.quoted(s)
        case .int(let i): return String(i)
        case .double(let d, let digits): return JSONWriter.number(d, digits: digits)
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
            Swift.print(JSONWriter.object(row.map { ($0.0, $0.1.json) }))
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

/// Splits a comma-separated list, dropping empty items.
func commaList(_ s: String) -> [String] { s.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }

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
            let parsed = try commaList(shapes).map { spec in
                do { return try GEMMShape(parsing: spec) } catch { throw ValidationError("\(error)") }
            }
            if !options.json { print("kernels \(KernelInfo.isaName), threads \(ThreadPool.threadCount)") }
            var out = RowPrinter(json: options.json, columns: [("shape", "shape (MxNxK)"), ("gflops", "GFLOP/s"),
                                                               ("median_gflops", "median"), ("ms", "best ms")])
            for shape in parsed {
                let t = Benchmarks.gemm(shape, repeats: repeats, minTime: minTime)
                out.print([("bench", .string("gemm")), ("shape", .string(shape.description)), ("m", .int(shape.m)), ("n", .int(shape.n)),
                           ("k", .int(shape.k)), ("transA", .bool(shape.transA)), ("transB", .bool(shape.transB)),
                           ("threads", .int(ThreadPool.threadCount)),
                           ("gflops", .double(shape.flop / t.best / 1e9, digits: 2)),
                           ("median_gflops", .double(shape.flop / t.median / 1e9, digits: 2)),
                           ("seconds", .double(t.best, digits: 9)), ("ms", .double(t.best * 1e3, digits: 3))])
            }
        }
    }
}
