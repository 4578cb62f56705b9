import Foundation
import LatheLM
import LatheNN

/// A fine-tuning recipe for `lathe finetune`: a pretrained decoder, an adapter, jsonl data, and the
/// optimiser, schedule and training sections of ``Recipe``. Keys are those axolotl and mlx-lm users
/// know; every key is checked, and a wrong one is a ``RecipeError`` naming the key and the file.
///
/// ```yaml
/// model: ~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf
/// adapter: lora            # lora | dora | qlora | full
/// lora: {r: 16, alpha: 32, dropout: 0.05, targets: all-linear, layers: 8, rslora: false}
/// data: {train: train.jsonl, valid: valid.jsonl, test: test.jsonl, format: auto, mask_prompt: true,
///        packing: true, max_length: 512}
/// optimizer: {name: adamw, lr: 2.0e-4}
/// schedule: {name: cosine, warmup_steps: 10}
/// training: {steps: 200, batch_size: 4}
/// output: runs/lora
/// ```
public struct FineTuneRecipe: Sendable, Equatable {
    /// What trains.
    public enum Adapter: String, Sendable, CaseIterable {
        /// LoRA adapters on a float (dequantised) model.
        case lora
        /// DoRA: LoRA with a trained magnitude vector.
        case dora
        /// LoRA adapters on the quantized layers of a GGUF model, kept quantized (QLoRA).
        case qlora
        /// Every parameter.
        case full
    }

    public struct LoRA: Sendable, Equatable {
        public var r = 16
        public var alpha: Double = 32
        public var dropout: Float = 0.05
        /// `all-linear`, a list of module names (`[q_proj, v_proj]`) or a regex string.
        public var targets: LoRAConfig.Targets = .allLinear
        /// The last N decoder layers (a number, as mlx-lm's `num_layers`) or a list of indices; nil: all.
        public var layers: Layers? = nil
        public var rslora = false

        public enum Layers: Sendable, Equatable {
            case last(Int)
            case indices([Int])
        }
    }

    public struct DataSpec: Sendable, Equatable {
        public var train = ""
        /// A validation file; without one, ``validFraction`` of the training examples (if set).
        public var valid: String? = nil
        /// A held-out file for `lathe finetune --eval-only`.
        public var test: String? = nil
        /// nil: detected from the first line.
        public var format: SFTFormat? = nil
        public var maskPrompt: Bool? = nil
        public var packing = true
        public var maxLength = 512
        public var validFraction: Double? = nil
    }

    public struct Training: Sendable, Equatable {
        public var epochs: Int? = nil
        public var steps: Int? = nil
        /// Rows per micro-batch (packed rows of `max_length` tokens with packing).
        public var batchSize = 4
        public var accumulation = 1
        public var clipGradNorm: Float? = 1
        /// Validation every N steps (default: at the end only).
        public var evalEvery: Int? = nil
        /// Checkpoint every N steps (default: at each evaluation, and at the end).
        public var checkpointEvery: Int? = nil
        /// Validation batches per evaluation (nil: the whole validation set).
        public var evalBatches: Int? = nil
        /// A progress line every N steps.
        public var logEvery = 10
    }

    public struct Evaluation: Sendable, Equatable {
        /// Greedy tokens generated per answer (nil: the longest reference answer's tokens + 1).
        public var maxTokens: Int? = nil
        /// How answers are compared (nil: "final-number" when the references have a "####" line, else "first-line").
        public var match: AnswerMatch? = nil
    }

    public var model = ""
    public var adapter = Adapter.lora
    public var lora = LoRA()
    public var data = DataSpec()
    public var optimizer: Recipe.OptimizerSpec
    public var schedule: Recipe.ScheduleSpec
    public var training = Training()
    public var evaluation = Evaluation()
    public var seed: UInt64 = 0
    public var threads: Int? = nil
    public var output = "runs/finetune"

    public init() {
        optimizer = Recipe.OptimizerSpec()
        optimizer.lr = 2e-4
        optimizer.weightDecay = 0
        schedule = Recipe.ScheduleSpec()
        schedule.name = "cosine"
    }

    /// Reads a recipe file, applying `overrides` (`key.path=value`, the value parsed as YAML).
    /// Relative data paths are taken from the current directory; `~` is expanded.
    public static func load(contentsOf url: URL, overrides: [String] = []) throws -> FineTuneRecipe {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw RecipeError(file: url.path, key: nil, message: "cannot read the recipe (does the file exist?)")
        }
        return try parse(text, file: url.path, overrides: overrides)
    }

    public static func parse(_ text: String, file: String = "<recipe>", overrides: [String] = []) throws -> FineTuneRecipe {
        let root = try Recipe.yamlMapping(text, file: file, overrides: overrides)
        return try Reader(file: file).fineTuneRecipe(root)
    }

    /// The LoRA configuration of ``lora`` for a model of `layerCount` layers (nil for full fine-tuning).
    public func loraConfig(layerCount: Int) -> LoRAConfig? {
        guard adapter != .full else { return nil }
        var c = LoRAConfig(targets: lora.targets, rank: lora.r, alpha: lora.alpha, dropout: lora.dropout,
                           useRSLoRA: lora.rslora, useDoRA: adapter == .dora, baseModel: model)
        switch lora.layers {
        case .last(let n)?: c.layers = LoRAConfig.lastLayers(n, of: layerCount)
        case .indices(let i)?: c.layers = i
        case nil: break
        }
        return c
    }
}

extension Reader {
    func path(_ d: [String: Any], _ section: String, _ key: String) throws -> String? {
        try string(d, section, key).map { NSString(string: $0).expandingTildeInPath }
    }

    func fineTuneRecipe(_ root: [String: Any]) throws -> FineTuneRecipe {
        let top: Set<String> = ["model", "adapter", "lora", "data", "optimizer", "schedule", "training", "eval", "seed", "threads", "output"]
        if let unknown = root.keys.sorted().first(where: { !top.contains($0) }) {
            throw fail(unknown, "unknown key (known: \(top.sorted().joined(separator: ", ")))")
        }
        var r = FineTuneRecipe()
        guard let model = try path(root, "", "model"), !model.isEmpty else {
            throw fail("model", "missing: give the model to fine-tune (a .gguf file or a Hugging Face folder)")
        }
        r.model = model
        if let a = try string(root, "", "adapter", oneOf: FineTuneRecipe.Adapter.allCases.map(\.rawValue)) {
            r.adapter = FineTuneRecipe.Adapter(rawValue: a)!
        }

        let l = try section(root, "lora", allowed: ["r", "alpha", "dropout", "targets", "layers", "rslora"])
        if r.adapter == .full, !l.isEmpty { throw fail("lora", "applies to adapter lora, dora or qlora, not full") }
        r.lora.r = try positive(int(l, "lora.", "r"), "lora.r") ?? r.lora.r
        r.lora.alpha = try double(l, "lora.", "alpha") ?? r.lora.alpha
        r.lora.dropout = try float(l, "lora.", "dropout") ?? r.lora.dropout
        if !(0..<1).contains(r.lora.dropout) { throw fail("lora.dropout", "must be in [0, 1), got \(r.lora.dropout)") }
        r.lora.rslora = try bool(l, "lora.", "rslora") ?? r.lora.rslora
        if let t = l["targets"] {
            if let s = t as? String {
                r.lora.targets = s.lowercased() == "all-linear" ? .allLinear : .regex(s)
            } else if let list = t as? [Any], !list.isEmpty, list.allSatisfy({ $0 is String }) {
                r.lora.targets = .names(list.map { $0 as! String })
            } else {
                throw fail("lora.targets", "expected all-linear, a list of module names (e.g. [q_proj, v_proj]) or a regex, got \(describe(t))")
            }
        }
        if let v = l["layers"] {
            if let n = v as? Int {
                guard n >= 1 else { throw fail("lora.layers", "must be at least 1 (the last N layers), got \(n)") }
                r.lora.layers = .last(n)
            } else if let list = v as? [Any], !list.isEmpty, list.allSatisfy({ ($0 as? Int).map { $0 >= 0 } ?? false }) {
                r.lora.layers = .indices(list.map { $0 as! Int })
            } else {
                throw fail("lora.layers", "expected a number (the last N layers) or a list of layer indices, got \(describe(v))")
            }
        }
        do { try r.loraConfig(layerCount: 1 << 20)?.validate() } catch { throw fail("lora", error.message) }

        let d = try section(root, "data", allowed: ["train", "valid", "test", "format", "mask_prompt", "packing", "max_length",
                                                     "valid_fraction"])
        guard let train = try path(d, "data.", "train") else { throw fail("data.train", "missing: give the training jsonl file") }
        r.data.train = train
        r.data.valid = try path(d, "data.", "valid")
        r.data.test = try path(d, "data.", "test")
        let formats = ["auto"] + SFTFormat.allCases.map(\.rawValue) + ["chat", "completion"]
        switch try string(d, "data.", "format", oneOf: formats) {
        case nil, "auto"?: r.data.format = nil
        case "chat"?: r.data.format = .chat
        case "completion"?: r.data.format = .completion
        case let f?: r.data.format = SFTFormat(rawValue: f)
        }
        r.data.maskPrompt = try bool(d, "data.", "mask_prompt")
        r.data.packing = try bool(d, "data.", "packing") ?? r.data.packing
        r.data.maxLength = try positive(int(d, "data.", "max_length"), "data.max_length") ?? r.data.maxLength
        if r.data.maxLength < 2 { throw fail("data.max_length", "must be at least 2 tokens, got \(r.data.maxLength)") }
        r.data.validFraction = try double(d, "data.", "valid_fraction")
        if let f = r.data.validFraction {
            if !(f > 0 && f < 1) { throw fail("data.valid_fraction", "must be between 0 and 1 (exclusive), got \(f)") }
            if r.data.valid != nil { throw fail("data.valid_fraction", "give either data.valid (a file) or data.valid_fraction, not both") }
        }

        r.optimizer = try optimizerSpec(root)
        if root["optimizer"].flatMap({ $0 as? [String: Any] })?["lr"] == nil { r.optimizer.lr = 2e-4 }
        if root["optimizer"].flatMap({ $0 as? [String: Any] })?["weight_decay"] == nil { r.optimizer.weightDecay = 0 }
        if root["schedule"] == nil { r.schedule = FineTuneRecipe().schedule } else { r.schedule = try scheduleSpec(root) }

        let t = try section(root, "training", allowed: ["epochs", "steps", "batch_size", "accumulation", "clip_grad_norm", "eval_every",
                                                         "checkpoint_every", "eval_batches", "log_every"])
        r.training.epochs = try positive(int(t, "training.", "epochs"), "training.epochs")
        r.training.steps = try positive(int(t, "training.", "steps"), "training.steps")
        if (r.training.epochs == nil) == (r.training.steps == nil) {
            throw fail("training", "give exactly one of training.epochs and training.steps")
        }
        r.training.batchSize = try positive(int(t, "training.", "batch_size"), "training.batch_size") ?? r.training.batchSize
        r.training.accumulation = try positive(int(t, "training.", "accumulation"), "training.accumulation") ?? r.training.accumulation
        if (root["training"] as? [String: Any])?["clip_grad_norm"] is NSNull { r.training.clipGradNorm = nil }
        if let c = try float(t, "training.", "clip_grad_norm") {
            if !(c > 0) { throw fail("training.clip_grad_norm", "must be positive, got \(c)") }
            r.training.clipGradNorm = c
        }
        r.training.evalEvery = try positive(int(t, "training.", "eval_every"), "training.eval_every")
        r.training.checkpointEvery = try positive(int(t, "training.", "checkpoint_every"), "training.checkpoint_every")
        r.training.evalBatches = try positive(int(t, "training.", "eval_batches"), "training.eval_batches")
        r.training.logEvery = try positive(int(t, "training.", "log_every"), "training.log_every") ?? r.training.logEvery

        let e = try section(root, "eval", allowed: ["max_tokens", "match"])
        r.evaluation.maxTokens = try positive(int(e, "eval.", "max_tokens"), "eval.max_tokens")
        switch try string(e, "eval.", "match") {
        case nil, "auto"?: r.evaluation.match = nil
        case let m?:
            guard let match = AnswerMatch(rawValue: m) else {
                throw fail("eval.match", "must be auto, first-line or final-number, not '\(m)'")
            }
            r.evaluation.match = match
        }

        r.seed = try int(root, "", "seed").map { UInt64(truncatingIfNeeded: $0) } ?? r.seed
        r.threads = try positive(int(root, "", "threads"), "threads")
        r.output = try path(root, "", "output") ?? r.output
        return r
    }
}
