import Foundation
import Lathe
import LatheBench
import XCTest
import _LatheTestSupport

/// The benchmark workloads as a library: what they run and return (timings are never asserted,
/// only that they are there and positive).
final class BenchmarkTests: XCTestCase {
    func testTimingCountsCallsAndTakesTheMedian() {
        XCTAssertEqual(Timing.median([3, 1, 2]), 2)
        XCTAssertEqual(Timing.median([4, 1, 2, 3]), 2.5)
        XCTAssertTrue(Timing.median([]).isNaN)
        var calls = 0
        let t = Timing.measure(repeats: 3, minTime: 0, warmup: 2) { calls += 1 }
        XCTAssertEqual(calls, 5, "2 warm-up calls, then one call per repetition")
        XCTAssertEqual(t.samples.count, 3)
        XCTAssertLessThanOrEqual(t.best, t.median)
        var counts = [0, 0]
        let both = Timing.interleaved([{ counts[0] += 1 }, { counts[1] += 1; usleep(100) }], rounds: 2, minTime: 0.002, warmupTime: 0.001)
        XCTAssertEqual(both.map(\.samples.count), [2, 2])
        XCTAssertGreaterThan(both[1].median, both[0].median, "the call that sleeps is the slower one")
        XCTAssertGreaterThan(counts[0], counts[1])
    }

    func testGEMMShapesParseAndRun() throws {
        XCTAssertEqual(try GEMMShape(parsing: "1024x512x128:tA"), GEMMShape(m: 1024, n: 512, k: 128, transA: true))
        XCTAssertEqual(try GEMMShape(parsing: "2x3x4:tAtB").description, "2x3x4:tAtB")
        XCTAssertEqual(try GEMMShape(parsing: "2x3x4").flop, 48)
        for bad in ["3x3", "0x1x1", "2x2x2:tC", "axbxc", "1x1x1:tA:tB"] {
            XCTAssertThrowsError(try GEMMShape(parsing: bad), bad)
        }
        let t = Benchmarks.gemm(GEMMShape(m: 64, n: 32, k: 16, transB: true), repeats: 2, minTime: 0.001)
        XCTAssertEqual(t.samples.count, 2)
        XCTAssertTrue(t.samples.allSatisfy { $0 > 0 && $0.isFinite })
    }

    func testTrainAndInferWorkloads() throws {
        XCTAssertEqual(BenchModel.registry.names, ["mlp", "cnn", "cnn28", "resnet", "gpt"])
        XCTAssertThrowsError(try BenchModel.make("rnn")) { error in
            XCTAssertEqual("\(error)", "unknown benchmark model 'rnn' (known: mlp, cnn, cnn28, resnet, gpt)")
        }
        let mlp = try BenchModel.make("mlp")
        XCTAssertEqual(mlp.batch, 64)
        let r = Benchmarks.train(mlp, steps: 2, warmup: 1, repeats: 2)
        XCTAssertEqual(r.rates.count, 2)
        XCTAssertEqual(Double(r.loss), log(10.0), accuracy: 1, "near chance after 3 steps")
        XCTAssertEqual(try BenchModel.make("gpt", batch: 2, gpt: CharGPT.Config(vocab: 65, context: 8, dModel: 16, heads: 2, layers: 1)).input.shape, [2, 8])
        for v in InferVariant.all {
            let t = try Benchmarks.infer("cnn", batch: 2, variant: v, repeats: 1, minTime: 0.001)
            XCTAssertTrue(t.best > 0 && t.best.isFinite, v.name)
        }
        XCTAssertThrowsError(try InferVariant.named("int3"))
    }

    func testMachineAndMemoryMeasurements() throws {
        XCTAssertGreaterThan(MachineBenchmark.fmaPeak(seconds: 0.01, threads: 1), 0)
        XCTAssertGreaterThan(MachineBenchmark.bandwidth(.triad, arrayMB: 1, threads: 2, seconds: 0.01) ?? 0, 0)
        XCTAssertTrue([1, 4, 8, 16].contains(MachineBenchmark.fmaLanes))
        let r = try MemoryBenchmark.measureHere(gpt: CharGPT.Config(vocab: 65, context: 8, dModel: 16, heads: 2, layers: 1), batch: 2,
                                                checkpointing: true, repeats: 2)
        XCTAssertGreaterThanOrEqual(r.peakMB, r.baselineMB)
        XCTAssertGreaterThan(r.msPerStep, 0)
        XCTAssertEqual(try MemoryBenchmark.Result(json: r.json), r, "what a child prints, its parent reads")
        XCTAssertThrowsError(try MemoryBenchmark.Result(json: "{\"checkpointing\":true}"))
    }

    /// `lathe bench compress` runs stages of the compression pipeline; they are valid stages.
    func testCompressionBenchmarkStagesAreValidPipelineStages() {
        let stages = CompressionBenchmark.stages
        XCTAssertEqual(Set(stages.map(\.name)).count, stages.count)
        XCTAssertEqual(stages.filter { $0.method == .prune }.map(\.prune), [.structured, .magnitude, .global, .global, .twoFour])
        XCTAssertEqual(stages.filter { $0.method == .distill }.map(\.steps), [600, 2000, 2000])
    }
}
