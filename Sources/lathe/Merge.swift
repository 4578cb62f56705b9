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

        Examples:
          lathe merge ties.yaml --output merged
          lathe merge slerp.yaml --output merged.gguf --type q8_0
        """)

    @Argument(help: "The merge config (mergekit YAML).") var config: String
    @Option(help: "The Hugging Face folder to write, or a .safetensors or .gguf file.") var output: String
    @Option(help: "The weights' type, overriding the config's out_dtype/dtype: f32, f16, bf16.") var dtype: Convert.WeightType?
    @Option(help: "GGUF output: the file type: \(GGUFFileType.names.joined(separator: ", ")).") var type: String?
    @Option(help: "Folder output: split the weights into shards of at most this many megabytes.") var maxShardMB: Int?
    @Option(help: "Seed of DARE's and DELLA's random masks.") var seed: UInt64 = 0
    @Option(help: "How DARE/DELLA rescale kept entries when rescale is on: l1 (mergekit: keep the L1 norm) or inverse_density (PEFT: divide by density).")
    var dareRescale: String = "l1"
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
}
