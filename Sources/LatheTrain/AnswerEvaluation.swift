import Foundation
import LatheLM
import LatheNN
import LatheTensor

/// A fine-tuning recipe's model evaluated on its held-out questions (`lathe finetune --eval-only`):
/// the loss on the answer tokens and the exact-match accuracy of greedy answers.
///
/// The weights are the base model, a PEFT adapter folder on it, or a full fine-tune's state dict
/// (`model.safetensors`, Hugging Face names). With an adapter or none the model runs as stored (a
/// GGUF file's quantized layers stay quantized: the fast decode kernel); a full fine-tune was
/// trained on float32 weights and is evaluated in float32 (``isFloat32``).
public final class AnswerEvaluation {
    /// Which weights to evaluate.
    public enum Weights: Sendable, Equatable {
        case base
        /// An adapter: a PEFT or mlx-lm folder, or a llama.cpp `.gguf` adapter.
        case adapter(String)
        /// A safetensors state dict of every weight (a full fine-tune's `model.safetensors`).
        case full(String)

        /// What a path names: a `.safetensors` file of full weights, else an adapter folder.
        public static func at(_ path: String) -> Weights {
            PretrainedModel.isDirectory(path) || !path.hasSuffix(".safetensors") ? .adapter(path) : .full(path)
        }

        /// The recipe's own output: `OUTPUT/model.safetensors` for `adapter: full`, else `OUTPUT/adapter`.
        public static func output(of recipe: FineTuneRecipe) -> Weights {
            let output = URL(fileURLWithPath: recipe.output)
            return recipe.adapter == .full ? .full(output.appendingPathComponent("model.safetensors").path)
                : .adapter(output.appendingPathComponent("adapter").path)
        }
    }

    public let recipe: FineTuneRecipe
    public let weights: Weights
    public let pretrained: PretrainedModel
    public let model: DecoderModel
    /// Whether every weight is float32 (a full fine-tune, loaded as it was trained).
    public let isFloat32: Bool
    /// The weights in words: "base model", "LoRA adapter DIR (N layers)", "full fine-tune FILE (float32)".
    public let label: String
    public let sft: SFTTokenizer
    /// The jsonl file of the questions, its format, and the questions (at most `limit`).
    public let file: String
    public let format: SFTFormat
    public let questions: [SFTQuestion]
    let limit: Int?

    /// Loads the model, the weights and the questions of `split` (`test`: `data.test`, `valid`: `data.valid`).
    /// - Throws: ``RecipeError`` for a split the recipe lacks, ``ModelFileError`` or the adapter's
    ///   error for weights that do not load, ``SFTDataError`` for bad data.
    public init(recipe: FineTuneRecipe, weights: Weights, split: String = "test", limit: Int? = nil) throws {
        let file: String
        switch split {
        case "test":
            guard let f = recipe.data.test else { throw RecipeError(file: "recipe", key: "data.test", message: "the recipe has no data.test file (or evaluate the valid split)") }
            file = f
        case "valid":
            guard let f = recipe.data.valid else { throw RecipeError(file: "recipe", key: "data.valid", message: "the recipe has no data.valid file") }
            file = f
        default: throw RecipeError(file: "recipe", key: nil, message: "the split must be test or valid, not '\(split)'")
        }
        precondition(limit == nil || limit! >= 1, "AnswerEvaluation: limit must be at least 1")
        if let threads = recipe.threads { ThreadPool.threadCount = threads }
        (self.recipe, self.weights, self.file, self.limit) = (recipe, weights, file, limit)
        switch weights {
        case .base:
            pretrained = try PretrainedModel.load(recipe.model)
            model = try pretrained.decoder()
            (isFloat32, label) = (false, "base model")
        case .adapter(let folder):
            // An adapter trained on the dequantised weights applies unchanged to the quantized layers,
            // as `lathe generate --adapter` runs it.
            pretrained = try PretrainedModel.load(recipe.model)
            model = try pretrained.decoder()
            let (config, format) = try model.loadAdapter(at: URL(fileURLWithPath: folder))
            (isFloat32, label) = (false, "\(format.rawValue) \(config.useDoRA ? "DoRA" : "LoRA") adapter \(folder) (\(model.loraLayers.count) layers)")
        case .full(let path):
            guard FileManager.default.fileExists(atPath: path) else {
                throw ModelFileError(file: path, message: "no such file (the weights of a full fine-tune: train with adapter: full first)")
            }
            pretrained = try PretrainedModel.loadForTraining(recipe.model)
            model = try pretrained.decoder()
            do { try model.load(contentsOf: URL(fileURLWithPath: path)) } catch {
                throw ModelFileError(file: path, message: "not the full weights of \(recipe.model): \(error)")
            }
            (isFloat32, label) = (true, "full fine-tune \(path) (float32)")
        }
        model.eval()
        let template = pretrained.chatTemplate == nil ? nil : try pretrained.parsedChatTemplate()
        sft = SFTTokenizer(tokenizer: pretrained.tokenizer, template: template,
                           options: SFTOptions(format: recipe.data.format, maskPrompt: recipe.data.maskPrompt, maxLength: recipe.data.maxLength))
        (format, questions) = try sft.questions(URL(fileURLWithPath: file), limit: limit)
    }

    /// Mean loss (and perplexity) on the labelled tokens of the same examples, packed as for training.
    public func loss() throws -> FineTuneEvaluation {
        var warnings: [String] = []
        let examples = try sft.read(URL(fileURLWithPath: file), warnings: &warnings).examples.prefix(limit ?? Int.max)
        let pad = pretrained.tokenizer.pad ?? pretrained.tokenizer.eos ?? 0
        let rows = recipe.data.packing ? SFTPacking.pack(Array(examples), length: recipe.data.maxLength, pad: pad)
            : examples.map { SFTPacking.single($0, length: $0.ids.count, pad: pad) }
        return FineTuner.evaluate(model, rows: rows, batchSize: recipe.training.batchSize, pad: pad, segments: recipe.data.packing)
    }

    /// Greedy answers to ``questions`` (`batchSize` decoded together), scored as `eval.match` says.
    public func accuracy(batchSize: Int = 8, onProgress: ((Int, Int) -> Void)? = nil) -> AnswerAccuracy {
        sft.accuracy(of: model, on: questions, stopTokens: pretrained.chatStopTokens, maxTokens: recipe.evaluation.maxTokens,
                     match: recipe.evaluation.match, batchSize: batchSize, onProgress: onProgress)
    }
}
