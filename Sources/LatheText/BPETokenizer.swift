/// Byte-pair encoding: GPT-2-style byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM2) and
/// SentencePiece-style BPE over characters with `<0xNN>` byte fallback (Llama 2, Gemma).
///
/// Each pre-tokenized piece starts as one symbol per byte (byte-level) or per character, and
/// adjacent symbols are merged best-first: by merge rank (the line of `merges`, lower first),
/// or for SentencePiece vocabularies read from GGUF by the score of the merged token (higher
/// first); ties go to the leftmost pair. With `ignoreMerges` (Llama 3) a piece that is itself
/// a token is taken whole.
///
/// Build one from a `tokenizer.json` (`init(tokenizerJSON:)`) or from the `tokenizer.ggml.*`
/// arrays of a GGUF file (`init(ggufModel:pre:tokens:merges:…)`).
public struct BPETokenizer: Tokenizer {
    /// How symbols are merged.
    enum MergeRule: Sendable {
        /// By rank: `merges` maps a pair to (rank << 32 | merged id).
        case ranks([UInt64: UInt64])
        /// By the merged token's score (llama.cpp's SentencePiece tokenizer).
        case scores([Float])
    }

    let vocabulary: Vocabulary
    let rule: MergeRule
    let byteLevel: Bool
    /// Byte-level: the id of each byte's character (-1 when missing).
    let byteSymbols: [Int32]
    /// Character-level: ids of the one-character tokens.
    let charSymbols: [UInt32: Int32]
    /// Ids of `<0xNN>` tokens (-1 when missing), when byte fallback is on.
    let byteFallback: [Int32]?
    let unknownID: Int32?
    let fuseUnknown: Bool
    let ignoreMerges: Bool
    let pipeline: Pipeline

    /// Beginning/end of sequence and padding ids. `tokenizer.json` does not say which tokens
    /// these are (`tokenizer_config.json` does): they are taken from the post-processor or
    /// well-known names, and can be set.
    public var bos: Int?
    public var eos: Int?
    public var pad: Int?
    public var unk: Int? { unknownID.map(Int.init) }
    public var addedTokens: [AddedToken] { pipeline.added.tokens }
    public var vocabularySize: Int { vocabulary.count }

    /// Assembles a tokenizer. `tokens[id]` is the token string (nil for unused ids), `rule`
    /// the merge order; `unknown`, `byteFallback`, `fuseUnknown` and `ignoreMerges` as in HF.
    init(tokens: [String?], rule: MergeRule, byteLevel: Bool, byteFallback: Bool, unknown: Int?,
         fuseUnknown: Bool, ignoreMerges: Bool, pipeline: Pipeline,
         bos: Int?, eos: Int?, pad: Int?) {
        var ids: TokenIDs = TokenIDs()
        ids.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() { if let t, ids[t] == nil { ids[t] = Int32(i) } }
        vocabulary = Vocabulary(tokens: tokens, ids: ids, added: pipeline.added.tokens)
        self.rule = rule
        self.byteLevel = byteLevel
        byteSymbols = (0..<256).map { ids[String(ByteLevel.characters[$0])] ?? -1 }
        var chars: [UInt32: Int32] = [:]
        for (t, id) in ids.pairs {
            var it = t.unicodeScalars.makeIterator()
            if let c = it.next(), it.next() == nil { chars[c.value] = id }
        }
        charSymbols = chars
        self.byteFallback = byteFallback
            ? (0..<256).map { ids["<0x" + String(UInt8($0), radix: 16, uppercase: true).leftPadded(2) + ">"] ?? -1 }
            : nil
        unknownID = unknown.map(Int32.init)
        self.fuseUnknown = fuseUnknown
        self.ignoreMerges = ignoreMerges
        self.pipeline = pipeline
        self.bos = bos
        self.eos = eos
        self.pad = pad
    }

    public func token(for id: Int) -> String? { vocabulary.token(for: id) }
    public func id(for token: String) -> Int? { vocabulary.id(for: token) }

    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int] {
        var ids: [Int] = []
        ids.reserveCapacity(text.utf8.count / 3)
        var engine = MergeEngine()
        var symbols: [Int32] = []
        var pairs: [UInt64: UInt64] = [:]
        pipeline.run(text, piece: { piece in
            tokenize(piece, into: &ids, engine: &engine, symbols: &symbols, pairs: &pairs)
        }, token: { ids.append($0) })
        return pipeline.postProcess(ids, addSpecialTokens: addSpecialTokens)
    }

    public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        let bytes = pipeline.decode(vocabulary.strings(ids, skipSpecialTokens: skipSpecialTokens), exact: true)
        return String(decoding: bytes, as: UTF8.self)
    }

    public func decodedBytes(_ ids: [Int], skipSpecialTokens: Bool) -> [UInt8] {
        pipeline.decode(vocabulary.strings(ids, skipSpecialTokens: skipSpecialTokens), exact: false)
    }

    /// Appends the ids of one pre-tokenized piece. `pairs` caches the score rule's pair
    /// lookups (which concatenate strings) across the pieces of one text.
    func tokenize(_ piece: ArraySlice<Unicode.Scalar>, into ids: inout [Int], engine: inout MergeEngine,
                  symbols: inout [Int32], pairs: inout [UInt64: UInt64]) {
        symbols.removeAll(keepingCapacity: true)
        if ignoreMerges {
            let whole = byteLevel ? ByteLevel.string(of: makeString(piece).utf8)
                                  : makeString(piece)
            if let id = vocabulary.ids[whole] { ids.append(Int(id)); return }
        }
        var lastWasUnknown = false
        func unknown() {
            guard let u = unknownID else { return }
            if !(fuseUnknown && lastWasUnknown) { symbols.append(u) }
            lastWasUnknown = true
        }
        if byteLevel {
            for c in piece {
                forEachUTF8Byte(c) { b in
                    let id = byteSymbols[Int(b)]
                    if id >= 0 { symbols.append(id); lastWasUnknown = false } else { unknown() }
                }
            }
        } else {
            for c in piece {
                if let id = charSymbols[c.value] {
                    symbols.append(id)
                    lastWasUnknown = false
                } else if let fb = byteFallback, Unicode.UTF8.encode(c)!.allSatisfy({ fb[Int($0)] >= 0 }) {
                    forEachUTF8Byte(c) { symbols.append(fb[Int($0)]) }
                    lastWasUnknown = false
                } else {
                    unknown()
                }
            }
        }
        switch rule {
        case .ranks(let merges):
            engine.merge(&symbols) { a, b in
                guard let v = merges[UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))] else { return nil }
                return (Int64(v >> 32), Int32(truncatingIfNeeded: v & 0xFFFF_FFFF))
            }
        case .scores(let scores):
            let tokens = vocabulary.tokens
            let vocab = vocabulary.ids
            let none = UInt64.max
            engine.merge(&symbols) { a, b in
                let pair = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
                var v = pairs[pair]
                if v == nil {
                    if let ta = tokens[Int(a)], let tb = tokens[Int(b)], let m = vocab[ta + tb], scores[Int(m)] > -.infinity {
                        // The key in the high half (shifted to be non-negative), the merged id in the low.
                        v = UInt64(orderedKey(-scores[Int(m)]) + Int64(Int32.max) + 1) << 32 | UInt64(UInt32(m))
                    } else {
                        v = none
                    }
                    pairs[pair] = v
                }
                guard let v, v != none else { return nil }
                return (Int64(v >> 32), Int32(truncatingIfNeeded: v & 0xFFFF_FFFF))
            }
        }
        for s in symbols { ids.append(Int(s)) }
    }
}

/// An integer that orders like the float (for non-NaN values).
@inline(__always) func orderedKey(_ x: Float) -> Int64 {
    let bits = Int32(bitPattern: x.bitPattern)
    return Int64(bits >= 0 ? bits : bits ^ Int32.max)
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// Calls `body` with each UTF-8 byte of `c`.
@inline(__always) func forEachUTF8Byte(_ c: Unicode.Scalar, _ body: (UInt8) -> Void) {
    let v = c.value
    if v < 0x80 {
        body(UInt8(v))
    } else if v < 0x800 {
        body(UInt8(0xC0 | v >> 6)); body(UInt8(0x80 | v & 0x3F))
    } else if v < 0x10000 {
        body(UInt8(0xE0 | v >> 12)); body(UInt8(0x80 | (v >> 6) & 0x3F)); body(UInt8(0x80 | v & 0x3F))
    } else {
        body(UInt8(0xF0 | v >> 18)); body(UInt8(0x80 | (v >> 12) & 0x3F))
        body(UInt8(0x80 | (v >> 6) & 0x3F)); body(UInt8(0x80 | v & 0x3F))
    }
}

extension BPETokenizer {
    /// A tokenizer from its parts, as `tokenizer.json` would give them.
    ///
    /// - Parameters:
    ///   - vocabulary: token strings by id (byte-level vocabularies write bytes with `ByteLevel`'s
    ///     characters, "Ġ" for a space).
    ///   - merges: the merges, best first; each pair and its concatenation must be tokens.
    ///   - preTokenizer: a `PreTokenizer.byteLevel` stage (alone or last in a sequence) makes the
    ///     model work on UTF-8 bytes; otherwise on characters.
    ///   - byteFallback: characters outside the vocabulary as `<0xNN>` tokens, else `unknown`.
    public init(vocabulary: [String], merges: [(String, String)],
                normalizer: Normalizer? = nil,
                preTokenizer: PreTokenizer? = .byteLevel(addPrefixSpace: false, useRegex: true),
                addedTokens: [AddedToken] = [], postProcessor: PostProcessor? = nil,
                decoder: TokenDecoder? = .byteLevel, byteFallback: Bool = false, unknown: Int? = nil,
                ignoreMerges: Bool = false, bos: Int? = nil, eos: Int? = nil, pad: Int? = nil) throws(TokenizerError) {
        var ids = TokenIDs()
        for (i, t) in vocabulary.enumerated() where ids[t] == nil { ids[t] = Int32(i) }
        var ranks: [UInt64: UInt64] = [:]
        for (rank, (a, b)) in merges.enumerated() {
            guard let ia = ids[a], let ib = ids[b], let im = ids[a + b] else {
                throw TokenizerError(file: "BPETokenizer", path: "merges[\(rank)]", "\"\(a)\", \"\(b)\" or \"\(a + b)\" is not in the vocabulary")
            }
            ranks[UInt64(UInt32(ia)) << 32 | UInt64(UInt32(ib))] = UInt64(rank) << 32 | UInt64(UInt32(im))
        }
        let pipeline = Pipeline(normalizer: normalizer, preTokenizer: preTokenizer, addedTokens: addedTokens,
                                postProcessor: postProcessor, decoder: decoder)
        self.init(tokens: vocabulary, rule: .ranks(ranks), byteLevel: preTokenizer?.isByteLevel ?? false,
                  byteFallback: byteFallback, unknown: unknown, fuseUnknown: false, ignoreMerges: ignoreMerges,
                  pipeline: pipeline, bos: bos, eos: eos, pad: pad)
    }
}
