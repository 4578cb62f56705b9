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
}
