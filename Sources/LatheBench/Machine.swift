import CLatheBench
import Foundation
import LatheIO
import LatheNN
import LatheTensor

/// The machine's limits, measured: fp32 FMA peak and STREAM-like memory bandwidth.
public enum MachineBenchmark {
    /// The CPU model name from /proc/cpuinfo (Linux) or sysctl (macOS); "unknown" otherwise.
    public static func cpuModelName() -> String {
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

    /// The vector width in floats of the FMA peak measurement (16, 8, 4 or 1).
    public static var fmaLanes: Int { Int(lathe_fma_peak_lanes()) }

    /// fp32 GFLOP/s of independent FMA chains in the widest registers of the active ISA, on
    /// `threads` threads for about `seconds`.
    public static func fmaPeak(seconds: Double, threads: Int) -> Double {
        lathe_measure_fma_peak(seconds, Int32(threads))
    }

    public enum StreamKind: String, CaseIterable, Sendable {
        /// c[i] = a[i] (8 bytes per element).
        case copy
        /// a[i] = b[i] + s * c[i] (12 bytes per element).
        case triad
    }

    /// STREAM-like bandwidth in GB/s (bytes read plus written) over three arrays of `arrayMB`
    /// MB each; nil when the arrays cannot be allocated.
    public static func bandwidth(_ kind: StreamKind, arrayMB: Int, threads: Int, seconds: Double) -> Double? {
        let code = kind == .copy ? LATHE_STREAM_COPY : LATHE_STREAM_TRIAD
        let gbs = lathe_measure_bandwidth(Int32(code.rawValue), arrayMB << 20, Int32(threads), seconds)
        return gbs > 0 ? gbs : nil
    }

    /// Makes stdout line-buffered, so that progress reaches a log file or pipe as it happens.
    public static func lineBufferStandardOutput() { lathe_line_buffer_stdout() }
}

/// Resident-set figures of this process in MB: current and peak (high-water mark).
public struct ResidentMemory: Sendable {
    public var current: Double
    public var peak: Double

    /// /proc/self/status VmRSS and VmHWM where present (Linux), else getrusage's ru_maxrss for both.
    public static func read() -> ResidentMemory {
        if let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) {
            func field(_ name: String) -> Double? {
                guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return nil }
                return line.split(separator: " ").dropFirst().first.flatMap { Double($0) }.map { $0 / 1024 }  // kB
            }
            if let rss = field("VmRSS"), let hwm = field("VmHWM") { return ResidentMemory(current: rss, peak: max(hwm, maxRSS())) }
        }
        let peak = maxRSS()
        return ResidentMemory(current: peak, peak: peak)
    }

    /// getrusage(RUSAGE_SELF).ru_maxrss in MB (kB on Linux, bytes on macOS).
    public static func maxRSS() -> Double {
        var usage = rusage()
        #if canImport(Darwin)
        let who = RUSAGE_SELF
        #else
        let who = __rusage_who_t(RUSAGE_SELF.rawValue)
        #endif
        guard getrusage(who, &usage) == 0 else { return 0 }
        #if canImport(Darwin)
        return Double(usage.ru_maxrss) / 1_048_576
        #else
        return Double(usage.ru_maxrss) / 1024
        #endif
    }
}

/// Peak memory of char GPT training steps, with and without gradient checkpointing. Each
/// configuration runs in a fresh child process (so that one's peak cannot hide another's).
public enum MemoryBenchmark {
    /// What one configuration measured.
    public struct Result: Sendable, Equatable {
        public var checkpointing: Bool
        /// Resident set before the first step, and its peak after the steps (MB).
        public var baselineMB: Double
        public var peakMB: Double
        /// Median milliseconds of the steps after the first.
        public var msPerStep: Double
        public var addedMB: Double { peakMB - baselineMB }

        /// One JSON line (what a child prints for its parent).
        public var json: String {
            JSONWriter.object([("checkpointing", checkpointing ? "true" : "false"), ("baseline_rss_mb", JSONWriter.number(baselineMB)),
                               ("peak_rss_mb", JSONWriter.number(peakMB)), ("ms_per_step", JSONWriter.number(msPerStep))])
        }

        public init(checkpointing: Bool, baselineMB: Double, peakMB: Double, msPerStep: Double) {
            (self.checkpointing, self.baselineMB, self.peakMB, self.msPerStep) = (checkpointing, baselineMB, peakMB, msPerStep)
        }

        /// Reads a child's JSON line.
        public init(json line: String) throws {
            let v: JSONValue
            do { v = try JSONParser.parse(line) } catch { throw BenchError("memory benchmark child printed no JSON: \(error)") }
            guard let c = v["checkpointing"]?.boolValue, let b = v["baseline_rss_mb"]?.doubleValue, let p = v["peak_rss_mb"]?.doubleValue,
                  let ms = v["ms_per_step"]?.doubleValue else {
                throw BenchError("memory benchmark child printed \(line), without the expected fields")
            }
            self.init(checkpointing: c, baselineMB: b, peakMB: p, msPerStep: ms)
        }
    }

    /// Runs `1 + repeats` training steps of the char GPT in this process and measures them
    /// (the child's side).
    public static func measureHere(gpt config: CharGPT.Config, batch: Int, checkpointing: Bool, repeats: Int) throws -> Result {
        let c = try BenchModel.make("gpt", batch: batch, gpt: config)
        (c.model as! CharGPT).checkpointing = checkpointing
        let step = c.trainer()
        let before = ResidentMemory.read()
        _ = step()
        let timing = Timing.measure(repeats: repeats, minTime: 0, warmup: 0) { _ = step() }
        return Result(checkpointing: checkpointing, baselineMB: before.current, peakMB: ResidentMemory.read().peak,
                      msPerStep: timing.median * 1e3)
    }

    /// Starts `executable` with `arguments` (a command that ends in ``measureHere``'s JSON
    /// line) and reads its result (the parent's side).
    public static func measureInChild(executable: URL, arguments: [String]) throws -> Result {
        let child = Process()
        child.executableURL = executable
        child.arguments = arguments
        let pipe = Pipe()
        child.standardOutput = pipe
        try child.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        child.waitUntilExit()
        guard child.terminationStatus == 0, let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last else {
            throw BenchError("memory benchmark child failed (status \(child.terminationStatus))")
        }
        return try Result(json: String(line))
    }

    /// The path of the running executable, to start children.
    public static func currentExecutable() -> URL {
        if let p = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return URL(fileURLWithPath: p) }
        return URL(fileURLWithPath: Bundle.main.executablePath ?? CommandLine.arguments[0])
    }
}
