import Foundation
import LatheIO
import LatheLM

/// A merge set beside the models it came from on one text: the perplexity of each, and how far
/// the merge's next-token distributions are from each parent's.
///
/// Every comparison is ``Perplexity/compare(_:reference:tokens:context:bos:progress:)`` with the
/// merge as the model and a parent as the reference, so the figures are `lathe perplexity
/// MERGED --reference PARENT`'s: llama-perplexity's chunks (the second half of each scored), the
/// mean KL(parent ‖ merge) in nats, and the share of positions where both pick the same top token.
/// At most two models are loaded at once: the merge, and one parent after another.
public struct MergeEvaluation {
    public struct Parent {
        /// The parent as the config names it.
        public var model: String
        /// `perplexity` is the merge's, `referencePerplexity` the parent's.
        public var comparison: KLResult
    }

    /// The merge's perplexity (the same in every comparison: the same tokens and chunks).
    public var merged: PerplexityResult
    public var parents: [Parent]
    /// Tokens per chunk.
    public var context: Int
    /// Tokens of the text used (at most `maxTokens`).
    public var tokens: Int

    /// Loads the merge at `merged` (a Hugging Face folder with its tokenizer, or a GGUF file),
    /// tokenizes `text` with its tokenizer, keeps the first `maxTokens` tokens, and compares the
    /// merge with each of `parents` (folders or GGUF files; their tokenizers are not needed) on
    /// chunks of `context` tokens.
    ///
    /// - Parameter progress: called after each chunk with (parent, chunks done, chunks).
    public static func run(merged: String, parents: [String], text: String, context: Int, maxTokens: Int? = nil,
                           progress: (String, Int, Int) -> Void = { _, _, _ in }) throws -> MergeEvaluation {
        guard !parents.isEmpty else { throw PerplexityError("no parent models to compare the merge with") }
        if let maxTokens, maxTokens < context {
            throw PerplexityError("--eval-tokens \(maxTokens) is less than one chunk of the context (\(context) tokens)")
        }
        for p in parents where p.lowercased().hasSuffix(".safetensors") {
            throw PerplexityError("cannot evaluate \(p): a lone .safetensors file has no config.json; give the Hugging Face folder it belongs to")
        }
        let loaded = try PretrainedModel.load(merged)
        let model = try loaded.languageModel()
        var ids = loaded.tokenizer.encode(text, addSpecialTokens: false)
        if let maxTokens { ids = Array(ids.prefix(maxTokens)) }
        let bos = loaded.tokenizer.addedBOS
        var rows: [Parent] = []
        for p in parents {
            let parent: any LanguageModel
            switch try PretrainedModel.loadModel(p) {
            case .decoder(let d): parent = d
            case .gpt2(let g): parent = g
            case .encoder: throw PerplexityError("\(p) is an encoder (BERT): it has no next-token distribution to compare")
            }
            let r = try Perplexity.compare(model, reference: parent, tokens: ids, context: context, bos: bos) { done, all, _ in progress(p, done, all) }
            rows.append(Parent(model: p, comparison: r))
        }
        return MergeEvaluation(merged: rows[0].comparison.perplexity, parents: rows, context: context, tokens: ids.count)
    }
}
