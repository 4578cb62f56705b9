import CLatheKernels
import Foundation
import LatheTensor
import XCTest

/// The kernel families this CPU can run (scalar always; AVX2, AVX-512 or NEON when present).
public func availableISAs() -> [lathe_isa] {
    let original = lathe_active_isa()
    defer { _ = lathe_set_isa(original) }
    return [LATHE_ISA_SCALAR, LATHE_ISA_AVX2, LATHE_ISA_AVX512, LATHE_ISA_NEON].filter { lathe_set_isa($0) == 0 }
}

/// The name of a kernel family ("scalar", "avx2", ...).
public func isaName(_ isa: lathe_isa) -> String { String(cString: lathe_isa_name(isa)) }

/// Runs `body` with every kernel family this CPU has forced in turn (the original is restored
/// afterwards); `body` gets the family's name for messages.
public func forEachISA(_ body: (String) throws -> Void) rethrows {
    let original = lathe_active_isa()
    defer { _ = lathe_set_isa(original) }
    for isa in availableISAs() {
        _ = lathe_set_isa(isa)
        try body(isaName(isa))
    }
}

/// Runs `body` on every kernel family this CPU has and with each of `threads` threads (the
/// original family and thread count are restored afterwards); `body` gets a label such as
/// "avx2 threads 2" for messages.
public func forEachISAAndThreads(threads: [Int] = [1, 2], _ body: (String) throws -> Void) rethrows {
    let count = ThreadPool.threadCount
    defer { ThreadPool.threadCount = count }
    try forEachISA { isa in
        for t in threads {
            ThreadPool.threadCount = t
            try body("\(isa) threads \(t)")
        }
    }
}

/// Deterministic test data independent of Lathe's own generators (a 64-bit LCG), for kernels
/// whose reference must not share code with what it checks.
public struct TestRNG {
    public var state: UInt64
    public init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    public mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state >> 11
    }
    public mutating func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }
    public mutating func float(_ lo: Float = -1, _ hi: Float = 1) -> Float { lo + (hi - lo) * Float(next() % 1_000_000) / 1_000_000 }
    public mutating func floats(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] { (0..<n).map { _ in float(lo, hi) } }
}

extension XCTestCase {
    /// A fresh, empty temporary directory that is removed when the test ends.
    public func temporaryDirectory(_ name: String = #function) throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("lathe-\(name.filter { $0.isLetter || $0.isNumber })-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}
