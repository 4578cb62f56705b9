import LatheNN
import LatheTensor
import LatheTrain

/// A GEMM problem: C[m, n] = op(A) op(B) with op(A) [m, k] and op(B) [k, n].
public struct GEMMShape: Sendable, Equatable, CustomStringConvertible {
    public var m, n, k: Int
    public var transA = false, transB = false

    public init(m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false) {
        (self.m, self.n, self.k, self.transA, self.transB) = (m, n, k, transA, transB)
    }

    /// `MxNxK` with an optional `:tA`, `:tB` or `:tAtB`.
    public init(parsing spec: String) throws {
        let parts = spec.split(separator: ":")
        let dims = parts.first.map { $0.split(separator: "x").compactMap { Int($0) } } ?? []
        let flags = parts.count > 1 ? String(parts[1]) : ""
        guard parts.count <= 2, dims.count == 3, dims.allSatisfy({ $0 > 0 }),
              flags.replacingOccurrences(of: "tA", with: "").replacingOccurrences(of: "tB", with: "").isEmpty else {
            throw BenchError("bad shape '\(spec)': expected MxNxK with positive sizes and an optional :tA, :tB or :tAtB, e.g. 512x512x512")
        }
        self.init(m: dims[0], n: dims[1], k: dims[2], transA: flags.contains("tA"), transB: flags.contains("tB"))
    }

    public var description: String {
        "\(m)x\(n)x\(k)" + (transA || transB ? ":" + (transA ? "tA" : "") + (transB ? "tB" : "") : "")
    }

    public var flop: Double { 2 * Double(m) * Double(n) * Double(k) }
}

/// A benchmark that cannot run as asked.
public struct BenchError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ message: String) { description = message }
}

/// Lathe's own timings of its kernels and models (`lathe bench`; bench/compare sets them
/// beside the references).
public enum Benchmarks {
    /// fp32 GEMM on uniform random matrices: seconds per call over `repeats` repetitions of
    /// `minTime` seconds each.
    public static func gemm(_ shape: GEMMShape, repeats: Int, minTime: Double = 0.05) -> TimingResult {
        var rng = RandomGenerator(seed: 0)
        let a = Tensor.uniform([shape.m * shape.k], low: -1, high: 1, generator: &rng).scalars
        let b = Tensor.uniform([shape.k * shape.n], low: -1, high: 1, generator: &rng).scalars
        var c = [Float](repeating: 0, count: shape.m * shape.n)
        return a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    Timing.measure(repeats: repeats, minTime: minTime) {
                        KernelInfo.sgemm(transA: shape.transA, transB: shape.transB, m: shape.m, n: shape.n, k: shape.k,
                                         a: ap.baseAddress!, b: bp.baseAddress!, c: cp.baseAddress!)
                    }
                }
            }
        }
    }

    /// Training throughput of a benchmark model.
    public struct TrainResult: Sendable, Equatable {
        /// Steps per second of each repetition.
        public var rates: [Double]
        /// The loss of the last step.
        public var loss: Float
        public var median: Double { Timing.median(rates) }
        public var best: Double { rates.max() ?? .nan }
    }

    /// Steps per second of full training steps (``BenchModel/trainer(learningRate:)``): `warmup`
    /// untimed steps, then `repeats` timed runs of `steps` steps.
    public static func train(_ model: BenchModel, steps: Int, warmup: Int, repeats: Int) -> TrainResult {
        let step = model.trainer()
        var loss: Float = 0
        for _ in 0..<warmup { loss = step() }
        let timing = Timing.measure(repeats: repeats, minTime: 0, warmup: 0) {
            for _ in 0..<steps { loss = step() }
        }
        return TrainResult(rates: timing.samples.map { Double(steps) / $0 }, loss: loss)
    }

    /// Inference latency (eval mode, no tape) of a fresh benchmark model made ready by `variant`.
    public static func infer(_ name: String, batch: Int, variant: InferVariant, repeats: Int, minTime: Double = 0.05) throws -> TimingResult {
        // A fresh (identically seeded) model per variant: quantization works in place.
        let base = try BenchModel.make(name, batch: batch)
        base.model.eval()
        let model = try variant.prepare(base.model, base.input)
        let x = base.input
        return Timing.measure(repeats: repeats, minTime: minTime, warmup: 2) { _ = noGrad { model(x) } }
    }
}
