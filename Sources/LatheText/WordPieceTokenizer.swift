import Foundation

/// WordPiece (BERT, all-MiniLM-L6-v2): each pre-tokenized word is cut greedily into the
/// longest vocabulary entries from the left, pieces after the first written with the
/// continuing prefix (`##`). A word with a part no entry covers, or longer than
/// `maxInputCharsPerWord` characters, becomes the unknown token.
///
/// From a `tokenizer.json` the usual pipeline is BERT's: `Normalizer.bert` (clean text, CJK
/// characters apart, accents stripped, lower case), `PreTokenizer.bert` (whitespace and
/// punctuation), `[CLS] … [SEP]` added, `TokenDecoder.wordPiece`.
public struct WordPieceTokenizer: Tokenizer {
    let vocabulary: Vocabulary
    let unknownID: Int
    let prefix: String
    let maxInputCharsPerWord: Int
    /// The most scalars of a vocabulary entry: no longer piece is looked up.
    let longestToken: Int
    let pipeline: Pipeline

    public var bos: Int?
    public var eos: Int?
    public var pad: Int?
    public var unk: Int? { unknownID }
    public var addedTokens: [AddedToken] { pipeline.added.tokens }
    public var vocabularySize: Int { vocabulary.count }

    /// Reads a `tokenizer.json` whose model is WordPiece.
    public init(tokenizerJSON url: URL) throws(TokenizerError) {
        try self.init(TokenizerJSON(url: url))
    }

    /// Parses the text of a `tokenizer.json` whose model is WordPiece.
    public init(tokenizerJSON bytes: [UInt8], source: String = "tokenizer.json") throws(TokenizerError) {
        try self.init(TokenizerJSON(bytes: bytes, source: source))
    }

    init(_ file: TokenizerJSON) throws(TokenizerError) {
        let type = try file.modelType()
        guard type == "WordPiece" else { throw file.error("model.type", "expected WordPiece, found \"\(type)\"") }
        let model = file.root["model"]!
        let (tokens, ids) = try file.vocabulary(model["vocab"], "model.vocab")
        let unkName = model["unk_token"]?.stringValue ?? "[UNK]"
        guard let u = ids[unkName] else { throw file.error("model.unk_token", "\"\(unkName)\" is not in model.vocab") }
        let maxChars = model["max_input_chars_per_word"]?.nonNegativeInt ?? 100
        let pipeline = try file.pipeline(modelVocabulary: tokens.count)
        vocabulary = Vocabulary(tokens: tokens, ids: ids, added: pipeline.added.tokens)
        unknownID = Int(u)
        prefix = model["continuing_subword_prefix"]?.stringValue ?? "##"
        maxInputCharsPerWord = maxChars
        longestToken = tokens.reduce(0) { max($0, $1?.unicodeScalars.count ?? 0) }
        self.pipeline = pipeline
        if case .template(let before, let after)? = pipeline.postProcessor {
            bos = before.first
            eos = after.last
        }
        pad = file.padID() ?? vocabulary.id(for: "[PAD]")
    }

    public func token(for id: Int) -> String? { vocabulary.token(for: id) }
    public func id(for token: String) -> Int? { vocabulary.id(for: token) }

    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int] {
        var ids: [Int] = []
        pipeline.run(text, piece: { word in tokenize(word, into: &ids) }, token: { ids.append($0) })
        return pipeline.postProcess(ids, addSpecialTokens: addSpecialTokens)
    }

    public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        String(decoding: decodedBytes(ids, skipSpecialTokens: skipSpecialTokens), as: UTF8.self)
    }

    public func decodedBytes(_ ids: [Int], skipSpecialTokens: Bool) -> [UInt8] {
        pipeline.decode(vocabulary.strings(ids, skipSpecialTokens: skipSpecialTokens), exact: true)
    }

    func tokenize(_ word: ArraySlice<Unicode.Scalar>, into ids: inout [Int]) {
        guard word.count <= maxInputCharsPerWord else { ids.append(unknownID); return }
        let chars = Array(word)
        var found: [Int] = []
        var start = 0
        // The UTF-8 of the candidates: the prefix (after the first piece), then the scalars from
        // `start`; `ends[k]` is where the candidate of k + 1 scalars ends.
        var bytes: [UInt8] = []
        var ends: [Int] = []
        while start < chars.count {
            // Longest first; a piece longer than every entry cannot match (this keeps a long
            // word, as `max_input_chars_per_word` may allow, from costing cubic time).
            var end = min(chars.count, start + longestToken)
            bytes.removeAll(keepingCapacity: true)
            ends.removeAll(keepingCapacity: true)
            if start > 0 { bytes.append(contentsOf: prefix.utf8) }
            for c in chars[start..<end] {
                forEachUTF8Byte(c) { bytes.append($0) }
                ends.append(bytes.count)
            }
            var match: Int32?
            while start < end {
                if let id = vocabulary.ids[String(decoding: bytes[..<ends[end - start - 1]], as: UTF8.self)] {
                    match = id
                    break
                }
                end -= 1
            }
            guard let match else { ids.append(unknownID); return }
            found.append(Int(match))
            start = end
        }
        ids.append(contentsOf: found)
    }
}
