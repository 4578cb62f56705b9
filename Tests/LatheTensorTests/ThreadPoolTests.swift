import CLatheKernels
import Foundation
import LatheTensor
import XCTest

/// The C thread pool behind every parallel kernel.
final class ThreadPoolTests: XCTestCase {
    /// Many small back-to-back jobs with one reused context, as kernels pass stack frames: each
    /// item must run exactly once, and none after `lathe_parallel_for` returns (a late item
    /// would write into the next job's counts or find the job closed).
    func testEveryItemRunsOnceAndNoneAfterTheCallReturns() {
        let threads = ThreadPool.threadCount
        defer { ThreadPool.threadCount = threads }
        ThreadPool.threadCount = 2
        // [0]: 1 while the job is open; [1]: items that ran while it was closed; [2...]: runs per item.
        let slots = 2 + 9
        let ctx = UnsafeMutablePointer<Int>.allocate(capacity: slots)
        ctx.initialize(repeating: 0, count: slots)
        defer { ctx.deallocate() }
        let task: lathe_task_fn = { raw, i in
            let p = raw!.assumingMemoryBound(to: Int.self)
            if p[0] == 0 { p[1] += 1 }
            p[2 + i] += 1
            // Uneven item lengths, so threads interleave differently from job to job.
            var spin = 0
            for k in 0..<(i % 4) * 20 { spin &+= k }
            if spin == -1 { p[1] = -1 }
        }
        // A thread competing for the cores, so pool threads get preempted mid-claim now and then.
        let hog = Thread {
            let end = Date().addingTimeInterval(1.5)
            var x = 0
            while Date() < end { x &+= 1 }
            if x == -1 { print(x) }
        }
        hog.start()
        var wrong = 0
        for job in 0..<2_000_000 {
            let n = 2 + job % 8
            ctx[0] = 1
            lathe_parallel_for(n, task, ctx)
            ctx[0] = 0
            for i in 0..<9 where ctx[2 + i] != (i < n ? 1 : 0) { wrong += 1 }
            for i in 0..<9 { ctx[2 + i] = 0 }
        }
        XCTAssertEqual(wrong, 0, "items that ran twice or not at all")
        XCTAssertEqual(ctx[1], 0, "items that ran after lathe_parallel_for returned")
    }
    /// Copies of strided views large enough to be split over the pool (by rows, or by bytes for a
    /// dense source) put every element where the one-thread copy does: a permuted tensor made
    /// contiguous, a strided slice, a concatenation (strided writes) and a step-2 slice's gradient.
    func testThreadedCopiesPlaceEveryElement() {
        let threads = ThreadPool.threadCount
        defer { ThreadPool.threadCount = threads }
        let (a, b, c) = (37, 29, 101)  // 108,373 elements: several row chunks, a ragged last one
        let values = (0..<(a * b * c)).map { Float($0) }
        let x = Tensor(values, shape: [a, b, c])
        func at(_ i: Int, _ j: Int, _ k: Int) -> Float { values[(i * b + j) * c + k] }
        var results: [[[Float]]] = []
        for n in [1, 2] {
            ThreadPool.threadCount = n
            let permuted = x.permuted([2, 0, 1]).contiguous()
            let slice = x.sliced(dim: 2, start: 3, end: 100, step: 2).contiguous()
            let joined = Tensor.concatenated([x, x.sliced(dim: 1, start: 0, end: 7)], dim: 1)
            let dense = x.reshaped([a * b * c]).sliced(dim: 0, start: 1).contiguous()
            let source = x.requiringGrad()
            source.sliced(dim: 2, start: 1, step: 2).sum().backward()
            results.append([permuted.scalars, slice.scalars, joined.scalars, dense.scalars, source.grad!.scalars])
            XCTAssertEqual(permuted.shape, [c, a, b])
            for (k, i, j) in [(0, 0, 0), (100, 36, 28), (57, 3, 11), (1, 20, 27)] {
                XCTAssertEqual(permuted.scalars[(k * a + i) * b + j], at(i, j, k))
            }
            XCTAssertEqual(slice.scalars[((36 * b) + 28) * 49 + 48], at(36, 28, 99))
            XCTAssertEqual(joined.scalars[((5 * (b + 7)) + b + 6) * c + 100], at(5, 6, 100))
            XCTAssertEqual(dense.scalars.last, values.last)
            XCTAssertEqual(source.grad!.scalars.reduce(0, +), Float(a * b * 50))
        }
        XCTAssertEqual(results[0], results[1])
    }
}
