import ArgumentParser
import Foundation
import Lathe

/// Resident-set figures of this process in MB: current and peak (high-water mark).
struct ResidentMemory {
    var current: Double
    var peak: Double

    /// /proc/self/status VmRSS and VmHWM where present (Linux), else getrusage's ru_maxrss for both.
    static func read() -> ResidentMemory {
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
    static func maxRSS() -> Double {
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

/// The path of the running executable, to start children.
func currentExecutablePath() -> String {
    if let p = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return p }
    return Bundle.main.executablePath ?? CommandLine.arguments[0]
}

/// The char GPT configuration of the memory benchmark (activations dominate).
struct MemoryConfig: ParsableArguments {
    @Option(help: "Batch size.") var batch: Int = 32
    @Option(help: "Context length (tokens per sequence).") var context: Int = 256
    @Option(help: "Model width.") var dModel: Int = 128
    @Option(help: "Transformer blocks.") var layers: Int = 4
    @Option(help: "Attention heads.") var heads: Int = 4

    var gpt: CharGPT.Config { CharGPT.Config(vocab: 65, context: context, dModel: dModel, heads: heads, layers: layers) }
    var label: String { "char GPT d\(dModel) L\(layers) H\(heads), batch \(batch), context \(context)" }
    var arguments: [String] {
        ["--batch", "\(batch)", "--context", "\(context)", "--d-model", "\(dModel)", "--layers", "\(layers)", "--heads", "\(heads)"]
    }
}

extension Bench {
    struct MemoryUse: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "memory",
            abstract: "Peak resident memory and step time of char GPT training steps, with and without gradient checkpointing.",
            discussion: """
            Each configuration runs in a fresh child process (this binary, `lathe bench memory-run`), which \
            builds the model, AdamW and a synthetic batch, reads its resident set, runs 1 + --repeat training \
            steps and reads its peak resident set (VmHWM / ru_maxrss). Reported: the peak, the resident set \
            before the first step, their difference (what the steps added: activations, gradients, optimiser \
            state, allocator slack) and the median time of the steps after the first.
            Default configuration: batch 32, context 256, d_model 128, 4 layers, 4 heads (activations dominate).
            """
        )

        @OptionGroup var options: BenchOptions
        @OptionGroup var config: MemoryConfig

        func run() throws {
            let repeats = try options.apply(defaultRepeats: 3)
            var out = RowPrinter(json: options.json, columns: [("checkpointing", "checkpointing"), ("peak_rss_mb", "peak MB"),
                                                               ("baseline_rss_mb", "before MB"), ("step_delta_mb", "added MB"),
                                                               ("ms_per_step", "median ms/step")])
            if !options.json { print("\(config.label), threads \(ThreadPool.threadCount)") }
            for checkpointing in [false, true] {
                let child = Process()
                child.executableURL = URL(fileURLWithPath: currentExecutablePath())
                child.arguments = ["bench", "memory-run", "--threads", "\(ThreadPool.threadCount)", "--repeat", "\(repeats)"]
                    + config.arguments + (checkpointing ? ["--checkpointing"] : [])
                let pipe = Pipe()
                child.standardOutput = pipe
                try child.run()
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                child.waitUntilExit()
                guard child.terminationStatus == 0,
                      let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
                      let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                    throw CLIError("memory-run child failed (status \(child.terminationStatus))")
                }
                func num(_ k: String) -> Double { (obj[k] as? NSNumber)?.doubleValue ?? .nan }
                out.print([("bench", .string("memory")), ("model", .string("gpt")), ("config", .string(config.label)),
                           ("batch", .int(config.batch)), ("context", .int(config.context)), ("d_model", .int(config.dModel)),
                           ("layers", .int(config.layers)), ("heads", .int(config.heads)),
                           ("threads", .int(ThreadPool.threadCount)), ("checkpointing", .bool(checkpointing)),
                           ("peak_rss_mb", .double(num("peak_rss_mb"), digits: 1)),
                           ("baseline_rss_mb", .double(num("baseline_rss_mb"), digits: 1)),
                           ("step_delta_mb", .double(num("peak_rss_mb") - num("baseline_rss_mb"), digits: 1)),
                           ("ms_per_step", .double(num("ms_per_step"), digits: 2)),
                           ("steps_per_second", .double(1e3 / num("ms_per_step"), digits: 3))])
            }
        }
    }

    /// The child of `lathe bench memory`: one configuration in a fresh process.
    struct MemoryRun: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "memory-run", shouldDisplay: false)

        @OptionGroup var options: BenchOptions
        @OptionGroup var config: MemoryConfig
        @Flag(help: "Checkpoint every transformer block.") var checkpointing = false

        func run() throws {
            let repeats = try options.apply(defaultRepeats: 3)
            let c = try BenchModel.make("gpt", batch: config.batch, gpt: config.gpt)
            (c.model as! CharGPT).checkpointing = checkpointing
            let step = c.trainer()
            let before = ResidentMemory.read()
            _ = step()
            var times: [Double] = []
            for _ in 0..<repeats {
                let t0 = now()
                _ = step()
                times.append(now() - t0)
            }
            let after = ResidentMemory.read()
            print("{\"checkpointing\":\(checkpointing),\"baseline_rss_mb\":\(before.current),\"baseline_peak_mb\":\(before.peak),"
                  + "\"peak_rss_mb\":\(after.peak),\"ru_maxrss_mb\":\(ResidentMemory.maxRSS()),\"ms_per_step\":\(median(times) * 1e3)}")
        }
    }
}
