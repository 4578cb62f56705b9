import Foundation
import LatheTensor
import LatheText

/// A text as a sequence of character ids, for character-level language models: a
/// ``CharacterTokenizer`` (the text's distinct Unicode scalars, sorted by code point; id `i` is
/// `vocabulary[i]`) and the text encoded with it. Splits share their parent's tokenizer.
public struct CharCorpus: Sendable {
    /// The character tokenizer (a `Tokenizer`, so generation and the text tools take it).
    public let tokenizer: CharacterTokenizer
    /// The text as ids.
    public let ids: [Int32]
    /// The characters, sorted; a character's id is its index here.
    public var vocabulary: [Unicode.Scalar] { tokenizer.vocabulary }

    /// Builds the vocabulary from `text` and encodes it.
    public init(text: String) {
        let tokenizer = CharacterTokenizer(characterSetOf: text)
        guard case .success(let ids) = tokenizer.ids(of: text) else { preconditionFailure("CharCorpus: the text's own characters") }
        self.init(tokenizer: tokenizer, ids: ids)
    }

    /// A corpus of `ids` under `tokenizer`.
    public init(tokenizer: CharacterTokenizer, ids: [Int32]) {
        precondition(ids.allSatisfy { $0 >= 0 && Int($0) < tokenizer.vocabularySize }, "CharCorpus: ids must be in 0..<\(tokenizer.vocabularySize)")
        (self.tokenizer, self.ids) = (tokenizer, ids)
    }

    /// The plays bundled with Lathe (20 plays from the Open Shakespeare / Project Gutenberg
    /// texts, 2.65 million characters; see `Resources/README.md`).
    public static func shakespeare() throws -> CharCorpus {
        CharCorpus(text: try shakespeareText())
    }

    /// The bundled plays as one string (plain text, for tokenizers and perplexity).
    public static func shakespeareText() throws -> String {
        let url = try BundledResource.url("shakespeare.txt.gz")
        return try FileBytes.withContents(of: url, hint: "rebuild the package") { String(decoding: $0, as: UTF8.self) }
    }

    /// Number of distinct characters.
    public var vocabSize: Int { vocabulary.count }
    /// Length of the text in characters.
    public var count: Int { ids.count }
    /// The text itself.
    public var text: String { decode(ids.map(Int.init)) }

    /// True when every character of `text` is in the vocabulary.
    public func canEncode(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy { tokenizer.id(of: $0) != nil }
    }

    /// The ids of `text`'s characters. Every character must be in the vocabulary (check with
    /// ``canEncode(_:)``).
    public func encode(_ text: String) -> [Int] {
        switch tokenizer.ids(of: text) {
        case .success(let ids): return ids.map(Int.init)
        case .failure(let missing): preconditionFailure("CharCorpus.encode: \(missing)")
        }
    }

    /// The text of `ids` (each in `0..<vocabSize`).
    public func decode(_ ids: [Int]) -> String {
        for i in ids { precondition(i >= 0 && i < vocabulary.count, "CharCorpus.decode: id \(i) is outside 0..<\(vocabulary.count)") }
        return tokenizer.decode(ids)
    }

    /// The first `1 - validationFraction` of the text for training and the rest for validation,
    /// both with this corpus's vocabulary.
    public func split(validationFraction: Double) -> (train: CharCorpus, validation: CharCorpus) {
        precondition(validationFraction >= 0 && validationFraction <= 1,
                     "CharCorpus.split: validationFraction must be in [0, 1], got \(validationFraction)")
        let cut = ids.count - Int((Double(ids.count) * validationFraction).rounded())
        return (CharCorpus(tokenizer: tokenizer, ids: Array(ids[..<cut])),
                CharCorpus(tokenizer: tokenizer, ids: Array(ids[cut...])))
    }

    /// `size` windows of `context` ids at random offsets: `x` int64 `[size, context]` and `y`
    /// the same windows shifted by one (the next character of each position).
    public func batch(size: Int, context: Int, generator: inout RandomGenerator) -> (x: Tensor, y: Tensor) {
        precondition(size > 0 && context > 0, "CharCorpus.batch: size and context must be positive")
        precondition(ids.count > context, "CharCorpus.batch: text of \(ids.count) characters is too short for context \(context)")
        let starts = Tensor.randint([size], low: 0, high: ids.count - context, generator: &generator).intScalars
        return windows(starts: starts, context: context)
    }

    /// Consecutive non-overlapping windows covering the text in order (as many as fit:
    /// `(count - 1) / context`), grouped into batches of `batchSize` (the last may be smaller).
    /// Deterministic: use on the validation split for comparable losses.
    public func evaluationBatches(context: Int, batchSize: Int) -> [(x: Tensor, y: Tensor)] {
        precondition(context > 0 && batchSize > 0, "CharCorpus.evaluationBatches: context and batchSize must be positive")
        let windowCount = Swift.max(0, (ids.count - 1) / context)
        return stride(from: 0, to: windowCount, by: batchSize).map { first in
            let starts = (first..<Swift.min(first + batchSize, windowCount)).map { $0 * context }
            return windows(starts: starts, context: context)
        }
    }

    func windows(starts: [Int], context: Int) -> (x: Tensor, y: Tensor) {
        let b = starts.count
        var x = [Int64](repeating: 0, count: b * context), y = x
        ids.withUnsafeBufferPointer { src in
            x.withUnsafeMutableBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    for (r, s) in starts.enumerated() {
                        for t in 0..<context {
                            xp[r * context + t] = Int64(src[s + t])
                            yp[r * context + t] = Int64(src[s + t + 1])
                        }
                    }
                }
            }
        }
        return (x.withUnsafeBytes { Tensor(bytes: $0, shape: [b, context], dtype: .int64) },
                y.withUnsafeBytes { Tensor(bytes: $0, shape: [b, context], dtype: .int64) })
    }
}
