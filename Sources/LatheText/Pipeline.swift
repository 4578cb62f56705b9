/// The stages every tokenizer shares (HF's `Tokenizer` without its model): added tokens,
/// normaliser, pre-tokenizer, post-processor and decoder.
struct Pipeline: Sendable {
    var normalizer: Normalizer?
    var preTokenizer: PreTokenizer?
    var added: AddedVocabulary
    var postProcessor: PostProcessor?
    var decoder: TokenDecoder?

    init(normalizer: Normalizer?, preTokenizer: PreTokenizer?, addedTokens: [AddedToken],
         postProcessor: PostProcessor?, decoder: TokenDecoder?) {
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.added = AddedVocabulary(addedTokens, normalizer: normalizer)
        self.postProcessor = postProcessor
        self.decoder = decoder
    }

    /// Cuts `text` into added tokens (passed to `token`) and pre-tokenized pieces of normalised
    /// text (passed to `piece`), in order.
    func run(_ text: String, piece: (ArraySlice<Unicode.Scalar>) -> Void, token: (Int) -> Void) {
        func pretokenize(_ scalars: some Sequence<Unicode.Scalar>, isFirst: Bool) {
            var pieces = Pieces(scalars, isFirst: isFirst)
            preTokenizer?.apply(&pieces)
            for p in 0..<pieces.count { piece(pieces.scalars[pieces.range(p)]) }
        }
        if added.isEmpty {
            if let normalizer {
                pretokenize(normalizer.apply(text).unicodeScalars, isFirst: true)
            } else {
                pretokenize(text.unicodeScalars, isFirst: true)
            }
            return
        }
        for seg in added.segments(text, normalizer: normalizer) {
            switch seg {
            case .token(let id): token(id)
            case .text(let s, let isFirst): pretokenize(s, isFirst: isFirst)
            }
        }
    }

    /// The post-processor applied when `addSpecialTokens` is set.
    func postProcess(_ ids: [Int], addSpecialTokens: Bool) -> [Int] {
        guard addSpecialTokens, let postProcessor else { return ids }
        return postProcessor.apply(ids)
    }

    /// Decodes the tokens' strings (UTF-8) with the decoder; without one, HF joins them with spaces.
    func decode(_ tokens: [[UInt8]], exact: Bool) -> [UInt8] {
        guard let decoder else { return Array(tokens.joined(separator: [0x20])) }
        return decoder.decodeChain(tokens, exact: exact).flatMap { $0 }
    }
}

/// The id table shared by the models: token strings by id (added tokens included), their
/// UTF-8 bytes for decoding, and the ids of special tokens.
struct Vocabulary: Sendable {
    let tokens: [String?]
    let utf8: [[UInt8]]
    let ids: TokenIDs
    let addedIDs: [TokenKey: Int]
    let special: Set<Int>

    init(tokens: [String?], ids: TokenIDs, added: [AddedToken]) {
        var tokens = tokens
        let maxAdded = added.map(\.id).max() ?? -1
        if maxAdded >= tokens.count { tokens += Array(repeating: nil, count: maxAdded + 1 - tokens.count) }
        for t in added { tokens[t.id] = t.content }
        self.tokens = tokens
        utf8 = tokens.map { Array(($0 ?? "").utf8) }
        self.ids = ids
        addedIDs = Dictionary(added.map { (TokenKey($0.content), $0.id) }, uniquingKeysWith: { a, _ in a })
        special = Set(added.filter(\.special).map(\.id))
    }

    var count: Int { tokens.count }

    func token(for id: Int) -> String? { id >= 0 && id < tokens.count ? tokens[id] : nil }

    func id(for token: String) -> Int? { addedIDs[TokenKey(token)] ?? ids[token].map(Int.init) }

    /// The UTF-8 of each id's token, out-of-range ids and (optionally) special tokens left out.
    func strings(_ ids: [Int], skipSpecialTokens: Bool) -> [[UInt8]] {
        ids.compactMap { id in
            guard id >= 0, id < tokens.count, tokens[id] != nil else { return nil }
            if skipSpecialTokens, special.contains(id) { return nil }
            return utf8[id]
        }
    }
}

/// A token string hashed and compared by its UTF-8 bytes. Swift's `String` equality is
/// canonical equivalence, under which "é" and "e\u{301}" are one dictionary key; vocabularies
/// keep them apart, as HF and llama.cpp do.
struct TokenKey: Hashable, Sendable {
    let string: String
    init(_ s: String) { string = s }
    static func == (a: TokenKey, b: TokenKey) -> Bool { a.string.utf8.elementsEqual(b.string.utf8) }
    func hash(into h: inout Hasher) {
        var s = string
        s.withUTF8 { h.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}

/// Token string → id, with byte-exact keys (`TokenKey`).
struct TokenIDs: Sendable {
    private var map: [TokenKey: Int32] = [:]

    init() {}

    subscript(_ s: String) -> Int32? {
        get { map[TokenKey(s)] }
        set { map[TokenKey(s)] = newValue }
    }

    mutating func reserveCapacity(_ n: Int) { map.reserveCapacity(n) }
    var count: Int { map.count }
    var pairs: [(String, Int32)] { map.map { ($0.key.string, $0.value) } }
}
