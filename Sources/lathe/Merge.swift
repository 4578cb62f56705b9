import ArgumentParser
import Foundation
import Lathe
import LatheMerge

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge models as a mergekit YAML config says (linear, slerp, task_arithmetic, ties, dare_*, della*, breadcrumbs*, model_stock, passthrough).",
        discussion: """
        The config is mergekit's: merge_method, base_model, models (with per-model parameters) or slices (layer_range \
        sources), parameters, dtype / out_dtype, tokenizer_source. Parameter values may be numbers, lists (a gradient \
        over the layers) or lists of {filter, value} picked by tensor name, with mergekit's precedence. Inputs are \
        Hugging Face folders, .safetensors files or .gguf files (dequantised). The output is a Hugging Face folder \
        (config.json, safetensors, the tokenizer files of tokenizer_source or the base model), a .safetensors file, or \
        a .gguf file (--type). Tensors are read, merged and written one at a time; the math is mergekit's, in float32. \
        DARE and DELLA masks come from a counter-based generator: one --seed gives one merge at any thread count.

        With --eval TEXT, the merge is then loaded beside each model it came from (base_model, models, slices' \
        sources; one at a time) and run on the text as lathe perplexity --reference runs two models: the table gives \
        each one's perplexity, the mean KL divergence of the merge from each parent and how often both pick the same \
        top token.

        Examples:
          lathe merge ties.yaml --output merged
          lathe merge slerp.yaml --output merged.gguf --type q8_0
          lathe merge linear.yaml --output merged --eval wiki.test.raw --eval-tokens 8192
        """)

    @Argument(help: "The merge config (mergekit YAML).") var config: String
    @Option(help: "The Hugging Face folder to write, or a .safetensors or .gguf file.") var output: String
    @Option(help: "The weights' type, overriding the config's out_dtype/dtype: f32, f16, bf16.") var dtype: Convert.WeightType?
    @Option(help: "GGUF output: the file type: \(GGUFFileType.names.joined(separator: ", ")).") var type: String?
    @Option(help: "Folder output: split the weights into shards of at most this many megabytes.") var maxShardMB: Int?
    @Option(help: "Seed of DARE's and DELLA's random masks.") var seed: UInt64 = 0
    @Option(help: "How DARE/DELLA rescale kept entries when rescale is on: l1 (mergekit: keep the L1 norm) or inverse_density (PEFT: divide by density).")
    var dareRescale: String = "l1"
    @Option(help: ArgumentHelp("After merging, a text file to compare the merge with its parents on: perplexities, KL divergence, same top token.", valueName: "TEXT"))
    var eval: String?
    @Option(help: "--eval: tokens per chunk (as lathe perplexity's --context).") var evalContext: Int = 512
    @Option(help: "--eval: use at most this many tokens of the text (default: all).") var evalTokens: Int?
    @Flag(help: "Print every tensor as it is written.") var verbose = false
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        let lower = output.lowercased()
        if lower.hasSuffix(".gguf") {
            guard let type else { throw ValidationError("writing a .gguf file needs --type (\(GGUFFileType.names.joined(separator: ", ")))") }
            guard GGUFFileType(name: type) != nil else { throw ValidationError("unknown --type '\(type)'; Lathe writes \(GGUFFileType.names.joined(separator: ", "))") }
            if maxShardMB != nil { throw ValidationError("--max-shard-mb is for Hugging Face folders") }
        } else if type != nil {
            throw ValidationError("--type is for .gguf outputs; a folder or .safetensors file takes --dtype")
        }
        if let mb = maxShardMB, mb < 1 { throw ValidationError("--max-shard-mb must be at least 1") }
        if eval != nil && lower.hasSuffix(".safetensors") {
            throw ValidationError("--eval loads the merge: write a Hugging Face folder or a .gguf file, not a lone .safetensors file")
        }
        if evalContext < 4 { throw ValidationError("--eval-context must be at least 4") }
        if let n = evalTokens, n < evalContext { throw ValidationError("--eval-tokens must be at least --eval-context (\(evalContext)): one chunk") }
        if (evalTokens != nil) && eval == nil { throw ValidationError("--eval-tokens goes with --eval TEXT") }
        guard DARERescale(rawValue: dareRescale) != nil else { throw ValidationError("--dare-rescale is l1 or inverse_density, not '\(dareRescale)'") }
    }

    func run() throws {
        try threadOptions.apply()
        var options = Merger.Options()
        let lower = output.lowercased()
        options.format = lower.hasSuffix(".gguf") ? .gguf(GGUFTypeRules(fileType: GGUFFileType(name: type!)!))
            : lower.hasSuffix(".safetensors") ? .safetensors : .folder
        options.dtype = dtype?.dtype
        options.maxShardBytes = maxShardMB.map { $0 << 20 }
        options.seed = seed
        options.dareRescale = DARERescale(rawValue: dareRescale)!
        let verbose = self.verbose
        let stderr = FileHandle.standardError
        var lastPercent = -1
        do {
            let parsed = try MergeConfig.load(contentsOf: URL(fileURLWithPath: config))
            let report = try Merger.merge(parsed, file: config, output: URL(fileURLWithPath: output), options: options, progress: { done, total, name in
                let percent = done * 100 / total
                if verbose {
                    stderr.write(Data("[\(done)/\(total)] \(name)\n".utf8))
                } else if percent / 10 != lastPercent / 10 || done == total {
                    lastPercent = percent
                    stderr.write(Data("merged \(done)/\(total) tensors (\(percent)%)\n".utf8))
                }
            }, warn: { stderr.write(Data("warning: \($0)\n".utf8)) })
            for f in report.files {
                let size = (try? FileManager.default.attributesOfItem(atPath: f.path)[.size] as? Int) ?? 0
                print(String(format: "%@  %.1f MB", f.lastPathComponent, Double(size) / 1e6))
            }
            print(String(format: "merged %d tensors (%d parameters, %d layers) with %@ into %@ in %.1f s", report.tensors, report.parameters,
                         report.layers, parsed.mergeMethod, output, report.seconds))
            if let eval {
                guard let text = try? String(contentsOfFile: eval, encoding: .utf8) else { throw CLIError("cannot read \(eval) as UTF-8 text") }
                let parents = parsed.referencedModels.map { Merger.modelPath($0, configFile: config) }
                do {
                    let evaluation = try MergeEvaluation.run(merged: output, parents: parents, text: text, context: evalContext, maxTokens: evalTokens) { p, done, all in
                        stderr.write(Data("eval \(p): [\(done)/\(all)]\n".utf8))
                    }
                    printEvaluation(evaluation, names: parsed.referencedModels)
                } catch {
                    // The merge is written; say that what failed is the evaluation.
                    throw CLIError("--eval: \(error)")
                }
            }
        } catch let e as MergeConfigError {
            throw CLIError("\(e)")
        } catch let e as MergeError {
            throw CLIError("\(e)")
        } catch let e as ModelFileError {
            throw CLIError("\(e)")
        } catch let e as SafeTensorsError {
            throw CLIError("\(e)")
        } catch let e as GGUFError {
            throw CLIError("\(e)")
        }
    }

    /// One row for the merge and one per parent.
    func printEvaluation(_ e: MergeEvaluation, names: [String]) {
        let width = max(12, (names + [output]).map(\.count).max()!)
        func pad(_ s: String) -> String { s.padding(toLength: width, withPad: " ", startingAt: 0) }
        print(String(format: "\neval: %d tokens of %@, %d chunks of %d, %d tokens scored", e.tokens, eval!, e.merged.chunks, e.context, e.merged.tokensScored))
        print(pad("model") + "  " + "PPL".padding(toLength: 22, withPad: " ", startingAt: 0) + "  KL(parent||merge)  same top")
        print(pad(output) + "  " + String(format: "%10.4f +/- %-8.5f", e.merged.perplexity, e.merged.standardError) + "  " + "merge".padding(toLength: 17, withPad: " ", startingAt: 0))
        for (p, name) in zip(e.parents, names) {
            let r = p.comparison
            print(pad(name) + "  " + String(format: "%10.4f +/- %-8.5f  %17.6f  %7.2f %%", r.referencePerplexity.perplexity, r.referencePerplexity.standardError,
                                            r.meanKL, 100 * r.sameTopToken))
        }
    }
}
