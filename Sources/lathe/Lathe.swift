import ArgumentParser
import Foundation
import Lathe
import LatheBench

@main
struct LatheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lathe",
        abstract: "Train, compress, evaluate and run neural networks and pretrained language models on a CPU.",
        subcommands: [Demo.self, Train.self, Eval.self, Quantize.self, Prune.self, Distill.self, Compress.self, Report.self, Sample.self,
                      FineTune.self, Generate.self, Chat.self, PerplexityCommand.self, Tokenize.self, Embed.self, Convert.self, Merge.self,
                      MergeAdapters.self, ExtractLoRA.self, Fuse.self, ConvertAdapter.self, Bench.self, Info.self, Inspect.self]
    )

    static func main() {
        // Line-buffered output, so that progress reaches a log file or pipe as it happens.
        MachineBenchmark.lineBufferStandardOutput()
        main(nil)
    }
}

/// Shared thread option.
struct ThreadOptions: ParsableArguments {
    @Option(name: .long, help: "Threads for the kernels (default: LATHE_NUM_THREADS or the core count).")
    var threads: Int?

    func apply() throws {
        if let threads {
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1, got \(threads)") }
            ThreadPool.threadCount = threads
        }
    }

    /// Applies the option and makes it the recipe's `threads`, so that every trainer built
    /// from the recipe keeps it.
    func apply(to recipe: inout Recipe) throws {
        try apply()
        if let threads { recipe.threads = threads }
    }
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the kernels and threads Lathe will use on this machine.")

    func run() {
        print("kernels: \(KernelInfo.isaName)")
        print("threads: \(ThreadPool.threadCount)")
    }
}

/// A failure while running a command (not a usage mistake): printed as `Error: ...` with
/// exit status 1 and no usage text.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
