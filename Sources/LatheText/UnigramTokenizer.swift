import Foundation

/// SentencePiece's Unigram model: each pre-tokenized piece is cut into the vocabulary entries
/// whose log-probabilities (scores) sum highest (Viterbi). A character no entry covers scores
/// `min(score) - 10` as the unknown token; consecutive unknowns are fused into one, and with
/// byte fallback spelled as `<0xNN>` tokens instead.
public struct UnigramTokenizer: Tokenizer {
    let vocabulary: Vocabulary
    let scores: [Double]
    let trie: ScalarTrie
    let unknownID: Int?
    let unknownScore: Double
    let byteFallback: [Int32]?
    let pipeline: Pipeline

    public var bos: Int?
    public var eos: Int?
    public var pad: Int?
    public var unk: Int? { unknownID }
    public var addedTokens: [AddedToken] { pipeline.added.tokens }
    public var vocabularySize: Int { vocabulary.count }

    /// Reads a `tokenizer.json` whose model is Unigram.
    public init(tokenizerJSON url: URL) throws(TokenizerError) {
        try self.init(TokenizerJSON(url: url))
    }

    /// Parses the text of a `tokenizer.json` whose model is Unigram.
    public init(tokenizerJSON bytes: [UInt8], source: String = "tokenizer.json") throws(TokenizerError) {
        try self.init(TokenizerJSON(bytes: bytes, source: source))
    }

    init(_ file: TokenizerJSON) throws(TokenizerError) {
        let type = try file.modelType()
        guard type == "Unigram" else { throw file.error("model.type", "expected Unigram, found \"\(type)\"") }
        let model = file.root["model"]!
        let list = try file.array(model["vocab"], "model.vocab")
        var tokens: [String?] = []
        var scores: [Double] = []
        var ids: TokenIDs = TokenIDs()
        for (i, entry) in list.enumerated() {
            let p = "model.vocab[\(i)]"
            guard let pair = entry.arrayValue, pair.count == 2 else { throw file.error(p, "expected [piece, score]") }
            let piece = try file.string(pair[0], "\(p)[0]")
            guard let score = pair[1].doubleValue, score.isFinite else { throw file.error("\(p)[1]", "expected a finite number") }
            tokens.append(piece)
            scores.append(score)
            if ids[piece] == nil { ids[piece] = Int32(i) }
        }
        var unknown: Int?
        if let u = model["unk_id"], !u.isNull {
            guard let id = u.nonNegativeInt, id < list.count else { throw file.error("model.unk_id", "not an id of model.vocab") }
            unknown = id
        }
        let pipeline = try file.pipeline(modelVocabulary: tokens.count)
        let byteFallback = try file.bool(model["byte_fallback"], "model.byte_fallback", default: false)
        self.init(tokens: tokens, scores: scores, ids: ids, unknown: unknown, byteFallback: byteFallback, pipeline: pipeline)
        bos = file.guessBOS(pipeline.added.tokens, pipeline)
        eos = file.guessEOS(pipeline.added.tokens)
        pad = file.padID() ?? vocabulary.id(for: "<pad>")
    }

    init(tokens: [String?], scores: [Double], ids: TokenIDs, unknown: Int?, byteFallback: Bool, pipeline: Pipeline) {
        vocabulary = Vocabulary(tokens: tokens, ids: ids, added: pipeline.added.tokens)
        self.scores = scores
        var trie = ScalarTrie()
        let added = Set(pipeline.added.tokens.map(\.id))
        for (i, t) in tokens.enumerated() where !added.contains(i) && i != unknown {
            if let t, !t.isEmpty, byteFallbackValue(Array(t.utf8)) == nil { trie.insert(Array(t.unicodeScalars), id: Int32(i)) }
        }
        self.trie = trie
        unknownID = unknown
        unknownScore = (scores.min() ?? 0) - 10
        self.byteFallback = byteFallback
            ? (0..<256).map { ids["<0x" + String(UInt8($0), radix: 16, uppercase: true).leftPadded(2) + ">"] ?? -1 }
            : nil
        self.pipeline = pipeline
    }

    public func token(for id: Int) -> String? { vocabulary.token(for: id) }
    public func id(for token: String) -> Int? { vocabulary.id(for: token) }

    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int] {
        var ids: [Int] = []
        pipeline.run(text, piece: { tokenize($0, into: &ids) }, token: { ids.append($0) })
        return pipeline.postProcess(ids, addSpecialTokens: addSpecialTokens)
    }

    public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        String(decoding: pipeline.decode(vocabulary.strings(ids, skipSpecialTokens: skipSpecialTokens), exact: true), as: UTF8.self)
    }

    public func decodedBytes(_ ids: [Int], skipSpecialTokens: Bool) -> [UInt8] {
        pipeline.decode(vocabulary.strings(ids, skipSpecialTokens: skipSpecialTokens), exact: false)
    }

    /// Viterbi over the piece: `best[i]` is the best score of `piece[..<i]`, reached by a token
    /// starting at `from[i]`. Ties keep the first candidate (the shorter token). Every position
    /// is reached (by a token or the unknown one), even when sums of scores overflow to -inf.
    func tokenize(_ piece: ArraySlice<Unicode.Scalar>, into ids: inout [Int]) {
        let s = Array(piece)
        let n = s.count
        guard n > 0 else { return }
        var best = [Double](repeating: -.infinity, count: n + 1)
        var from = [Int](repeating: -1, count: n + 1)
        var tokenAt = [Int32](repeating: -1, count: n + 1)
        best[0] = 0
        for i in 0..<n where i == 0 || from[i] >= 0 {
            var coveredOne = false
            trie.forEachPrefix(of: s, from: i) { end, id in
                if end == i + 1 { coveredOne = true }
                let score = best[i] + scores[Int(id)]
                if score > best[end] || from[end] < 0 {
                    best[end] = score
                    from[end] = i
                    tokenAt[end] = id
                }
            }
            if !coveredOne {
                let score = best[i] + unknownScore
                if score > best[i + 1] || from[i + 1] < 0 {
                    best[i + 1] = score
                    from[i + 1] = i
                    tokenAt[i + 1] = -1
                }
            }
        }
        var path: [(Range<Int>, Int32)] = []
        var e = n
        while e > 0 {
            path.append((from[e]..<e, tokenAt[e]))
            e = from[e]
        }
        var unknownRun: [Unicode.Scalar] = []
        func flushUnknown() {
            guard !unknownRun.isEmpty else { return }
            if let fb = byteFallback {
                let bytes = Array(makeString(unknownRun).utf8)
                if bytes.allSatisfy({ fb[Int($0)] >= 0 }) {
                    for b in bytes { ids.append(Int(fb[Int(b)])) }
                    unknownRun.removeAll()
                    return
                }
            }
            if let u = unknownID { ids.append(u) }
            unknownRun.removeAll()
        }
        for (r, id) in path.reversed() {
            if id < 0 {
                unknownRun.append(contentsOf: s[r])
            } else {
                flushUnknown()
                ids.append(Int(id))
            }
        }
        flushUnknown()
    }
}

/// A trie over Unicode scalars, for finding every vocabulary entry that starts at a position.
struct ScalarTrie: Sendable {
    private var children: [[UInt32: Int32]] = [[:]]
    private var values: [Int32] = [-1]

    mutating func insert(_ key: [Unicode.Scalar], id: Int32) {
        var node = 0
        for c in key {
            if let next = children[node][c.value] {
                node = Int(next)
            } else {
                children.append([:])
                values.append(-1)
                children[node][c.value] = Int32(children.count - 1)
                node = children.count - 1
            }
        }
        if values[node] < 0 { values[node] = id }
    }

    /// Calls `body(end, id)` for each entry equal to `s[start..<end]`, shortest first.
    func forEachPrefix(of s: [Unicode.Scalar], from start: Int, _ body: (Int, Int32) -> Void) {
        var node = 0
        var i = start
        while i < s.count, let next = children[node][s[i].value] {
            node = Int(next)
            i += 1
            if values[node] >= 0 { body(i, values[node]) }
        }
    }
}
