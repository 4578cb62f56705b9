import ArgumentParser
import Foundation
import Lathe
import LatheBench

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
                let r = try MemoryBenchmark.measureInChild(
                    executable: MemoryBenchmark.currentExecutable(),
                    arguments: ["bench", "memory-run", "--threads", "\(ThreadPool.threadCount)", "--repeat", "\(repeats)"]
                        + config.arguments + (checkpointing ? ["--checkpointing"] : []))
                out.print([("bench", .string("memory")), ("model", .string("gpt")), ("config", .string(config.label)),
                           ("batch", .int(config.batch)), ("context", .int(config.context)), ("d_model", .int(config.dModel)),
                           ("layers", .int(config.layers)), ("heads", .int(config.heads)),
                           ("threads", .int(ThreadPool.threadCount)), ("checkpointing", .bool(checkpointing)),
                           ("peak_rss_mb", .double(r.peakMB, digits: 1)), ("baseline_rss_mb", .double(r.baselineMB, digits: 1)),
                           ("step_delta_mb", .double(r.addedMB, digits: 1)), ("ms_per_step", .double(r.msPerStep, digits: 2)),
                           ("steps_per_second", .double(1e3 / r.msPerStep, digits: 3))])
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
            print(try MemoryBenchmark.measureHere(gpt: config.gpt, batch: config.batch, checkpointing: checkpointing, repeats: repeats).json)
        }
    }
}
