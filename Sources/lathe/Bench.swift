import ArgumentParser
import Foundation
import Lathe

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure Lathe's speed (compare with references through bench/compare).",
        subcommands: [GEMM.self]
    )
}

/// Seconds of monotonic time.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

extension Bench {
    struct GEMM: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gemm",
            abstract: "fp32 GEMM throughput in GFLOP/s for square and training shapes."
        )

        @OptionGroup var threadOptions: ThreadOptions
        @Option(name: .customLong("repeat"), help: "Timed repetitions per shape; the best is reported.") var repeats: Int = 5
        @Option(help: "Shapes as MxNxK with optional :tA / :tB / :tAtB, comma-separated.")
        var shapes: String = "256x256x256,512x512x512,1024x1024x1024,2048x2048x2048,64x64x128,1024x128x512,1024x512x128,1024x512x128:tA,1024x512x128:tB"
        @Flag(help: "Print JSON lines instead of a table.") var json = false

        func run() throws {
            try threadOptions.apply()
            guard repeats >= 1 else { throw ValidationError("--repeat must be at least 1") }
            if !json {
                print("kernels \(KernelInfo.isaName), threads \(ThreadPool.threadCount)")
                print("shape (MxNxK)          GFLOP/s   best ms")
            }
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
                // Enough calls per timing to last ~50 ms.
                var inner = 1
                var best = Double.infinity
                a.withUnsafeBufferPointer { ap in
                    b.withUnsafeBufferPointer { bp in
                        c.withUnsafeMutableBufferPointer { cbuf in
                            let cp = cbuf.baseAddress!
                            let call = { KernelInfo.sgemm(transA: ta, transB: tb, m: m, n: n, k: k, a: ap.baseAddress!, b: bp.baseAddress!, c: cp) }
                            let t0 = now(); call(); let once = now() - t0
                            inner = Swift.max(1, Int(0.05 / Swift.max(once, 1e-9)))
                            for _ in 0..<repeats {
                                let s = now()
                                for _ in 0..<inner { call() }
                                best = Swift.min(best, (now() - s) / Double(inner))
                            }
                        }
                    }
                }
                let gflops = flop / best / 1e9
                let name = "\(m)x\(n)x\(k)" + (flags.isEmpty ? "" : ":\(flags)")
                if json {
                    print("{\"bench\":\"gemm\",\"shape\":\"\(name)\",\"m\":\(m),\"n\":\(n),\"k\":\(k),\"transA\":\(ta),\"transB\":\(tb),\"threads\":\(ThreadPool.threadCount),\"gflops\":\(String(format: "%.2f", gflops)),\"seconds\":\(best)}")
                } else {
                    print(name.padding(toLength: 22, withPad: " ", startingAt: 0) + String(format: "%8.1f  %8.3f", gflops, best * 1e3))
                }
            }
        }
    }
}
