import ArgumentParser
import Foundation
import Lathe
import LatheMerge

struct MergeAdapters: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge-adapters",
        abstract: "Combine LoRA adapters into one, as PEFT's add_weighted_adapter does (cat, linear, svd, ties, dare_*, magnitude_prune*).",
        discussion: """
        Each --adapter is a PEFT folder (adapter_config.json + adapter_model.safetensors) with a weight. Methods: \
        cat (exact: the result's delta is the sum of the weighted deltas; its rank is the sum of the ranks), linear \
        (weighted sums of the A's and of the B's with sqrt weights; equal ranks; an approximation), svd (the weighted \
        sum of the full deltas, truncated to --rank by SVD), and the pruned variants ties, dare_linear, dare_ties, \
        magnitude_prune (on the factors) and ties_svd, dare_linear_svd, dare_ties_svd, magnitude_prune_svd (on the \
        full deltas), which take --density. The result has lora_alpha = r (scale 1).

        Examples:
          lathe merge-adapters --adapter math:0.7 --adapter code:0.3 --method cat --output mixed
          lathe merge-adapters --adapter math:1 --adapter code:1 --method ties_svd --density 0.5 --rank 16 --output mixed
        """)

    @Option(name: .customLong("adapter"), help: "A PEFT adapter folder and its weight, as DIR:WEIGHT (DIR alone: weight 1). Repeat for each adapter.")
    var adapters: [String] = []
    @Option(help: "cat, linear, svd, ties, ties_svd, dare_linear, dare_ties, dare_linear_svd, dare_ties_svd, magnitude_prune, magnitude_prune_svd.")
    var method: String
    @Option(help: "The rank of an svd method's result (default: the largest input rank).") var rank: Int?
    @Option(help: "The fraction of entries kept by ties, dare_* and magnitude_prune*, in [0, 1].") var density: Double?
    @Option(help: "How TIES elects the sign: total (sign of the sum) or frequency (the more common sign).") var majoritySign: String = "total"
    @Option(help: "svd methods: clamp the factors to this quantile of their entries (PEFT's svd_clamp).") var clamp: Double?
    @Option(help: "Seed of DARE's random masks.") var seed: UInt64 = 0
    @Flag(help: "Combine adapters whose base_model_name_or_path differ.") var allowDifferentBases = false
    @Option(help: "The adapter folder to write.") var output: String
    @OptionGroup var threadOptions: ThreadOptions

    /// `DIR:WEIGHT` (the last colon splits, so DIR may hold colons), or `DIR`.
    static func parse(_ spec: String) throws -> (URL, Double) {
        if let colon = spec.lastIndex(of: ":"), let w = Double(spec[spec.index(after: colon)...]) {
            guard w.isFinite else { throw ValidationError("--adapter \(spec): the weight must be a finite number") }
            return (URL(fileURLWithPath: String(spec[..<colon])), w)
        }
        return (URL(fileURLWithPath: spec), 1)
    }

    func validate() throws {
        guard !adapters.isEmpty else { throw ValidationError("give at least one --adapter DIR:WEIGHT") }
        guard AdapterArithmetic.Method(rawValue: method) != nil else {
            throw ValidationError("unknown --method '\(method)'; use one of \(AdapterArithmetic.Method.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard AdapterArithmetic.MajoritySign(rawValue: majoritySign) != nil else { throw ValidationError("--majority-sign is total or frequency, not '\(majoritySign)'") }
        for a in adapters { _ = try MergeAdapters.parse(a) }
    }

    func run() throws {
        try threadOptions.apply()
        var options = AdapterArithmetic.Options(method: AdapterArithmetic.Method(rawValue: method)!, rank: rank, density: density)
        options.majoritySign = AdapterArithmetic.MajoritySign(rawValue: majoritySign)!
        options.clamp = clamp
        options.seed = seed
        options.allowDifferentBases = allowDifferentBases
        do {
            let inputs = try adapters.map { try MergeAdapters.parse($0) }
            let result = try AdapterArithmetic.combine(folders: inputs.map { (folder: $0.0, weight: $0.1) }, options: options)
            try AdapterArithmetic.write(result, to: URL(fileURLWithPath: output))
            print("combined \(inputs.count) adapter\(inputs.count == 1 ? "" : "s") with \(method) into \(output): \(result.modules) layers, r \(result.config.rank), lora_alpha \(result.config.rank)")
        } catch let e as LoRAError {
            throw CLIError(e.message)
        }
    }
}

struct ExtractLoRA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract-lora",
        abstract: "Make a LoRA adapter (PEFT folder) from a fine-tuned model and its base by truncated SVD of the weight differences.",
        discussion: """
        For each targeted linear weight, the difference W_ft - W_base is factored by SVD: lora_B = U_r S_r, lora_A = V_r^T, \
        lora_alpha = r (scale 1), the best rank-r approximation. Unchanged layers are skipped; changed embeddings, norms, \
        biases and the output head cannot be held by a LoRA adapter and are listed. Models are Hugging Face folders, \
        .safetensors or .gguf files (dequantised).

        Example:
          lathe extract-lora --model my-finetune --base SmolLM2-135M --rank 32 --output my-adapter
        """)

    @Option(help: "The fine-tuned model.") var model: String
    @Option(help: "The base model it was fine-tuned from.") var base: String
    @Option(help: "The adapter's rank.") var rank: Int
    @Option(help: "Comma-separated module names to extract (q_proj,v_proj); default every linear layer but the output head.") var targets: String?
    @Option(help: "The adapter folder to write.") var output: String
    @Flag(help: "Print every layer's error.") var verbose = false
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard rank >= 1 else { throw ValidationError("--rank must be at least 1, got \(rank)") }
    }

    func run() throws {
        try threadOptions.apply()
        let stderr = FileHandle.standardError
        do {
            let ft = try HuggingFaceWeights.open(model), b = try HuggingFaceWeights.open(base)
            try LoRAExtraction.checkCompatible(model: ft, base: b)
            let targetList = targets.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
            var lastPercent = -1
            let result = try LoRAExtraction.extract(model: ft, base: b, options: LoRAExtraction.Options(rank: rank, targets: targetList, baseModelName: base),
                                                    to: URL(fileURLWithPath: output), progress: { done, total, _ in
                let percent = done * 100 / total
                if percent / 10 != lastPercent / 10 || done == total {
                    lastPercent = percent
                    stderr.write(Data("factored \(done)/\(total) layers (\(percent)%)\n".utf8))
                }
            })
            let kept = result.layers.filter { !$0.skipped }
            if verbose {
                for l in result.layers {
                    print(l.skipped ? "\(l.module)  unchanged, skipped" : String(format: "%@  relative error %.3g", l.module, l.relativeError))
                }
            }
            let total2 = kept.reduce(0.0) { $0 + $1.deltaNorm * $1.deltaNorm }
            let lost2 = kept.reduce(0.0) { $0 + pow($1.deltaNorm * $1.relativeError, 2) }
            let worst = kept.max { $0.relativeError < $1.relativeError }!
            print(String(format: "extracted %d layers at rank %d into %@ (%d unchanged, skipped); relative error %.3g overall, worst %.3g (%@)",
                         kept.count, rank, output, result.layers.count - kept.count, total2 > 0 ? (lost2 / total2).squareRoot() : 0,
                         worst.relativeError, worst.module))
            let others = result.notCaptured.filter { !$0.linear }, outside = result.notCaptured.filter(\.linear)
            for (name, diff, _) in others.prefix(verbose ? others.count : 8) {
                print(String(format: "not captured: %@ differs by up to %.3g (a LoRA adapter holds linear layers only)", name, diff))
            }
            if others.count > 8 && !verbose { print("not captured: \(others.count - 8) more tensors (--verbose lists them)") }
            if let worst = outside.max(by: { $0.maxDifference < $1.maxDifference }) {
                print(String(format: "not captured: %d linear weights outside --targets differ (up to %.3g, %@); add them to --targets to extract them",
                             outside.count, worst.maxDifference, worst.name))
            }
            if !result.unmatched.isEmpty {
                print("in one model only: " + result.unmatched.prefix(6).joined(separator: ", ") + (result.unmatched.count > 6 ? ", ..." : ""))
            }
        } catch let e as LoRAError {
            throw CLIError(e.message)
        } catch let e as ModelFileError {
            throw CLIError("\(e)")
        } catch let e as SafeTensorsError {
            throw CLIError("\(e)")
        } catch let e as GGUFError {
            throw CLIError("\(e)")
        }
    }
}
