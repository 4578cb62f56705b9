import Foundation

/// Turns text into token ids and back.
///
/// Implementations follow Hugging Face `tokenizers` (the pipeline normaliser → pre-tokenizer →
/// model → post-processor → decoder, with added tokens matched in the raw text first) or, for
/// vocabularies read from GGUF files, llama.cpp. `encode` then `decode` gives the text back
/// whenever the vocabulary can spell it (byte-level BPE always can; WordPiece lowercases and
/// strips accents).
///
/// See Also: `BPETokenizer`, `WordPieceTokenizer`, `UnigramTokenizer`, `loadTokenizer(contentsOf:)`,
/// `StreamingDecoder`.
public protocol Tokenizer: Sendable {
    /// The ids of `text`. With `addSpecialTokens`, the post-processor's tokens (BOS, `[CLS]` …
    /// `[SEP]`) are added as the tokenizer's configuration says. Added and special tokens written
    /// in `text` are always recognised as such.
    func encode(_ text: String, addSpecialTokens: Bool) -> [Int]

    /// The text of `ids`. With `skipSpecialTokens`, tokens marked special are left out.
    /// Ids outside the vocabulary are skipped.
    func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String

    /// The UTF-8 bytes that `decode` turns into text, before ill-formed sequences are replaced
    /// by U+FFFD. A sequence's bytes begin with the bytes of any prefix of it decoded alone
    /// (up to SentencePiece's dropped leading space), which is what `StreamingDecoder` relies on.
    func decodedBytes(_ ids: [Int], skipSpecialTokens: Bool) -> [UInt8]

    /// Number of ids, added tokens included (one more than the largest id).
    var vocabularySize: Int { get }
    var bos: Int? { get }
    var eos: Int? { get }
    var pad: Int? { get }
    var unk: Int? { get }

    /// The token's string as the vocabulary writes it (byte-level BPE shows a space as "Ġ",
    /// SentencePiece as "▁"); nil for ids outside the vocabulary.
    func token(for id: Int) -> String?
    /// The id of a token written as the vocabulary writes it.
    func id(for token: String) -> Int?

    /// Tokens matched in the text before anything else (special tokens and user-added ones).
    var addedTokens: [AddedToken] { get }
}

extension Tokenizer {
    /// The BOS id when this tokenizer puts one in front of an encoding with special tokens (as
    /// llama.cpp and transformers do for Llama and Gemma vocabularies), else nil.
    public var addedBOS: Int? {
        guard let bos, encode("a", addSpecialTokens: true).first == bos else { return nil }
        return bos
    }

    /// The ids of `text`, special tokens added (Hugging Face's default).
    public func encode(_ text: String) -> [Int] { encode(text, addSpecialTokens: true) }

    /// The text of `ids`, special tokens kept (Hugging Face's default).
    public func decode(_ ids: [Int]) -> String { decode(ids, skipSpecialTokens: false) }

    public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        String(decoding: decodedBytes(ids, skipSpecialTokens: skipSpecialTokens), as: UTF8.self)
    }

    /// True when `id` is an added token marked special.
    public func isSpecial(_ id: Int) -> Bool {
        addedTokens.contains { $0.id == id && $0.special }
    }
}

/// A token matched in the raw text before normalisation and pre-tokenization (HF's
/// `added_tokens`): special tokens such as `<|im_start|>` and user-added words.
public struct AddedToken: Sendable, Equatable {
    public var id: Int
    public var content: String
    /// Special tokens are dropped by `decode(_:skipSpecialTokens: true)`.
    public var special: Bool
    /// Only matched when not inside a word (no letter or digit on either side).
    public var singleWord: Bool
    /// Whitespace before the token is swallowed by it.
    public var lstrip: Bool
    /// Whitespace after the token is swallowed by it.
    public var rstrip: Bool
    /// Matched in the normalised text rather than the raw text.
    public var normalized: Bool

    public init(id: Int, content: String, special: Bool = true, singleWord: Bool = false,
                lstrip: Bool = false, rstrip: Bool = false, normalized: Bool = false) {
        self.id = id
        self.content = content
        self.special = special
        self.singleWord = singleWord
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.normalized = normalized
    }
}

/// Why a tokenizer could not be built: the file, the place in it (a JSON path such as
/// `model.merges[12]`, or a GGUF key) and what was wrong.
public struct TokenizerError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let path: String
    public let message: String

    public init(file: String, path: String, _ message: String) {
        self.file = file
        self.path = path
        self.message = message
    }

    public var description: String {
        path.isEmpty ? "\(file): \(message)" : "\(file): \(path): \(message)"
    }
}
