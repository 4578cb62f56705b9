import ArgumentParser
import Foundation
import Lathe
import LatheBench

extension Bench {
    struct TrainSpeed: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "train",
            abstract: "Training steps per second (forward, cross-entropy, backward, AdamW) of the reference models on synthetic data.",
            discussion: """
            mlp: digits MLP, x [64, 64]. cnn: digits CNN, x [64, 1, 8, 8]. resnet: small ResNet, x [64, 1, 8, 8] \
            (not in the default list). gpt: char GPT, d_model 128, 4 layers, 4 heads, context 64, vocab 65, batch 16. \
            After --warmup steps, --repeat runs of --steps steps are timed; median and best steps/s are reported.
            """
        )

        @OptionGroup var options: BenchOptions
        @Option(help: "Models, comma-separated (\(BenchModel.registry.names.joined(separator: ", "))).") var models: String = "mlp,cnn,cnn28,gpt"
        @Option(help: "Timed steps per repetition.") var steps: Int = 20
        @Option(help: "Untimed steps first.") var warmup: Int = 5
        @Option(help: "Batch size (default: 64 for the digits models, 16 for gpt).") var batch: Int?

        func run() throws {
            let repeats = try options.apply(defaultRepeats: 5)
            guard steps >= 1, warmup >= 0 else { throw ValidationError("--steps must be at least 1 and --warmup at least 0") }
            let cases = try commaList(models).map { name in
                do { return try BenchModel.make(name, batch: batch) } catch { throw ValidationError("\(error)") }
            }
            if !options.json { print("kernels \(KernelInfo.isaName), threads \(ThreadPool.threadCount)") }
            var out = RowPrinter(json: options.json, columns: [("model", "model"), ("batch", "batch"),
                                                               ("steps_per_second", "median steps/s"),
                                                               ("best_steps_per_second", "best steps/s"), ("ms_per_step", "median ms")])
            for c in cases {
                let r = Benchmarks.train(c, steps: steps, warmup: warmup, repeats: repeats)
                out.print([("bench", .string("train")), ("model", .string(c.name)), ("batch", .int(c.batch)),
                           ("threads", .int(ThreadPool.threadCount)), ("steps", .int(steps)), ("repeat", .int(repeats)),
                           ("steps_per_second", .double(r.median, digits: 3)), ("best_steps_per_second", .double(r.best, digits: 3)),
                           ("ms_per_step", .double(1e3 / r.median, digits: 3)), ("loss", .double(Double(r.loss), digits: 4))])
            }
        }
    }

    struct InferSpeed: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "infer",
            abstract: "Inference latency (eval mode, no autodiff) of the reference models at batch 1 and 64.",
            discussion: """
            mlp and cnn at each --batches size; gpt (char GPT, context 64) at batch 1 only. Each repetition times \
            enough calls to last --min-time; median and best latency per call are reported.
            """
        )

        @OptionGroup var options: BenchOptions
        @Option(help: "Models, comma-separated (\(BenchModel.registry.names.joined(separator: ", "))).") var models: String = "mlp,cnn,cnn28,gpt"
        @Option(help: "Batch sizes for the digits models, comma-separated (gpt always uses batch 1).") var batches: String = "1,64"
        @Option(help: "Variants, comma-separated (default: all; known: \(InferVariant.all.map(\.name).joined(separator: ", "))).")
        var variants: String?
        @Option(help: "Seconds per timed repetition.") var minTime: Double = 0.05

        func run() throws {
            let repeats = try options.apply(defaultRepeats: 7)
            let chosen = try (variants.map(commaList) ?? InferVariant.all.map(\.name)).map { name in
                do { return try InferVariant.named(name) } catch { throw ValidationError("\(error)") }
            }
            let names = commaList(models)
            if let bad = names.first(where: { BenchModel.registry[$0] == nil }) {
                throw ValidationError("\(RegistryError(kind: BenchModel.registry.kind, name: bad, known: BenchModel.registry.names))")
            }
            let sizes = commaList(batches).compactMap { Int($0) }
            guard !sizes.isEmpty, sizes.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--batches: expected positive sizes, e.g. 1,64") }
            if !options.json { print("kernels \(KernelInfo.isaName), threads \(ThreadPool.threadCount)") }
            var out = RowPrinter(json: options.json, columns: [("model", "model"), ("variant", "variant"), ("batch", "batch"),
                                                               ("ms", "median ms"), ("best_ms", "best ms"),
                                                               ("samples_per_second", "samples/s")])
            for name in names {
                for b in name == "gpt" ? [1] : sizes {
                    for v in chosen {
                        let t = try Benchmarks.infer(name, batch: b, variant: v, repeats: repeats, minTime: minTime)
                        out.print([("bench", .string("infer")), ("model", .string(name)), ("variant", .string(v.name)),
                                   ("batch", .int(b)), ("threads", .int(ThreadPool.threadCount)),
                                   ("ms", .double(t.median * 1e3, digits: 4)), ("best_ms", .double(t.best * 1e3, digits: 4)),
                                   ("samples_per_second", .double(Double(b) / t.median, digits: 1))])
                    }
                }
            }
        }
    }
}
