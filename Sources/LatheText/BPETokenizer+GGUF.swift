/// GGUF vocabularies: the `tokenizer.ggml.*` arrays, tokenized as llama.cpp does.
extension BPETokenizer {
    /// llama.cpp's token types (`tokenizer.ggml.token_type`).
    public enum GGUFTokenType: Int32, Sendable {
        case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// Builds a tokenizer from the data of a GGUF file's `tokenizer.ggml.*` keys, with no GGUF
    /// parser involved.
    ///
    /// - `ggufModel` (`tokenizer.ggml.model`): `"gpt2"` for byte-level BPE (merges by rank), or
    ///   `"llama"` for SentencePiece BPE (merged by the scores of the merged tokens, characters
    ///   outside the vocabulary spelled as `<0xNN>` tokens).
    /// - `pre` (`tokenizer.ggml.pre`): llama.cpp's name for the pre-tokenizer of a `gpt2` model.
    ///   Supported: the GPT-2 regex (`gpt-2`, `phi-2`, `mpt`, `olmo`, `roberta-bpe`, …); Llama 3's
    ///   (`llama-bpe`, `llama3`, `falcon3`, `pixtral`, …, which also ignore merges for pieces that
    ///   are tokens and add BOS; `dbrx`, `smaug-bpe`, `chatglm-bpe`); Qwen2's (`qwen2`,
    ///   `deepseek-r1-qwen`, `stablelm2`, …); digits apart then GPT-2's (`smollm`, `starcoder`,
    ///   `refact`, `command-r`, …). Others, and the `default` regex cascade, throw.
    /// - `tokens`, `merges` (`"a b"`, split at the first space after the first character),
    ///   `tokenTypes`, `scores`: the arrays. Control, user-defined and unknown tokens are matched
    ///   in the text before anything else (llama.cpp's `parse_special`); control and unknown
    ///   ones are the special tokens `decode(_:skipSpecialTokens: true)` leaves out.
    /// - `addBOS`, `addEOS` (`tokenizer.ggml.add_bos_token`, `add_eos_token`): nil takes
    ///   llama.cpp's default for the model and `pre`. `addSpacePrefix`
    ///   (`tokenizer.ggml.add_space_prefix`, `llama` only, default true): a space in front of
    ///   each text fragment.
    ///
    /// Reference: llama.cpp's `llama-vocab.cpp` and `unicode.cpp`. Whitespace runs follow the
    /// regexes exactly (`"\n\n  "` is one piece), as llama.cpp does.
    public init(ggufModel model: String, pre: String?, tokens: [String], merges: [String] = [],
                tokenTypes: [Int32]? = nil, scores: [Float]? = nil,
                bos: Int? = nil, eos: Int? = nil, unk: Int? = nil, pad: Int? = nil,
                addBOS: Bool? = nil, addEOS: Bool? = nil, addSpacePrefix: Bool? = nil,
                source: String = "GGUF") throws(TokenizerError) {
        func fail(_ key: String, _ message: String) -> TokenizerError {
            TokenizerError(file: source, path: key, message)
        }
        let n = tokens.count
        guard n > 0 else { throw fail("tokenizer.ggml.tokens", "empty") }
        if let t = tokenTypes, t.count < n { throw fail("tokenizer.ggml.token_type", "\(t.count) types for \(n) tokens") }
        if let s = scores, s.count < n { throw fail("tokenizer.ggml.scores", "\(s.count) scores for \(n) tokens") }
        for (key, id) in [("bos_token_id", bos), ("eos_token_id", eos), ("unknown_token_id", unk), ("padding_token_id", pad)] {
            if let id, id < 0 || id >= n { throw fail("tokenizer.ggml.\(key)", "\(id) is outside the \(n) tokens") }
        }
        let typeOf: (Int) -> GGUFTokenType = { i in tokenTypes.map { GGUFTokenType(rawValue: $0[i]) ?? .undefined } ?? .normal }
        var ids: TokenIDs = TokenIDs()
        ids.reserveCapacity(n)
        for (i, t) in tokens.enumerated() where ids[t] == nil { ids[t] = Int32(i) }
        // Control, user-defined and unknown tokens are split out of the text first.
        var added: [AddedToken] = []
        for i in 0..<n {
            let type = typeOf(i)
            guard type == .control || type == .userDefined || type == .unknown, !tokens[i].isEmpty else { continue }
            added.append(AddedToken(id: i, content: tokens[i], special: type != .userDefined))
        }

        switch model {
        case "gpt2":
            guard let (preTokenizer, llama3Like) = BPETokenizer.ggufPreTokenizer(pre) else {
                throw fail("tokenizer.ggml.pre", "unsupported pre-tokenizer \"\(pre ?? "(none)")\" (supported: \(BPETokenizer.ggufPreNames.joined(separator: ", ")))")
            }
            var ranks: [UInt64: UInt64] = [:]
            ranks.reserveCapacity(merges.count)
            for (rank, m) in merges.enumerated() {
                let u = Array(m.unicodeScalars)
                guard u.count >= 3, let space = u[1...].firstIndex(of: " ") else {
                    throw fail("tokenizer.ggml.merges[\(rank)]", "expected \"a b\", found \"\(m)\"")
                }
                let a = makeString(u[..<space]), b = makeString(u[(space + 1)...])
                // llama.cpp tolerates merges it can never apply; so do we.
                guard let ia = ids[a], let ib = ids[b], let im = ids[a + b] else { continue }
                let key = UInt64(UInt32(ia)) << 32 | UInt64(UInt32(ib))
                if ranks[key] == nil { ranks[key] = UInt64(rank) << 32 | UInt64(UInt32(im)) }
            }
            let bosOn = addBOS ?? llama3Like
            let eosOn = addEOS ?? false
            if bosOn, bos == nil { throw fail("tokenizer.ggml.add_bos_token", "true, but tokenizer.ggml.bos_token_id is not set") }
            if eosOn, eos == nil { throw fail("tokenizer.ggml.add_eos_token", "true, but tokenizer.ggml.eos_token_id is not set") }
            let pipeline = Pipeline(normalizer: nil, preTokenizer: preTokenizer, addedTokens: added,
                                    postProcessor: .template(before: bosOn ? [bos!] : [], after: eosOn ? [eos!] : []),
                                    decoder: .byteLevel)
            self.init(tokens: tokens, rule: .ranks(ranks), byteLevel: true, byteFallback: false, unknown: unk,
                      fuseUnknown: false, ignoreMerges: llama3Like, pipeline: pipeline, bos: bos, eos: eos, pad: pad)
        case "llama":
            guard let scores else { throw fail("tokenizer.ggml.scores", "missing (a SentencePiece vocabulary needs its scores)") }
            let spacePrefix = addSpacePrefix ?? true
            let bosOn = addBOS ?? true
            let eosOn = addEOS ?? false
            if bosOn, bos == nil { throw fail("tokenizer.ggml.add_bos_token", "true, but tokenizer.ggml.bos_token_id is not set") }
            if eosOn, eos == nil { throw fail("tokenizer.ggml.add_eos_token", "true, but tokenizer.ggml.eos_token_id is not set") }
            let escape = Normalizer.replace(pattern: " ", content: "\u{2581}")
            var decoder: [TokenDecoder] = [.replace(pattern: "\u{2581}", content: " "), .byteFallback, .fuse]
            if spacePrefix { decoder.append(.strip(content: " ", start: 1, stop: 0)) }
            // As Llama 2's tokenizer.json writes it: "▁" in front, then spaces escaped.
            let pipeline = Pipeline(normalizer: spacePrefix ? .sequence([.prepend("\u{2581}"), escape]) : escape,
                                    preTokenizer: nil, addedTokens: added,
                                    postProcessor: .template(before: bosOn ? [bos!] : [], after: eosOn ? [eos!] : []),
                                    decoder: .sequence(decoder))
            // Merges may only produce ordinary tokens.
            var mergeScores = scores
            for i in 0..<n where typeOf(i) == .control || typeOf(i) == .unknown || typeOf(i) == .byte {
                mergeScores[i] = -.infinity
            }
            self.init(tokens: tokens, rule: .scores(mergeScores), byteLevel: false, byteFallback: true, unknown: unk,
                      fuseUnknown: false, ignoreMerges: false, pipeline: pipeline, bos: bos, eos: eos, pad: pad)
        default:
            throw fail("tokenizer.ggml.model", "unsupported tokenizer model \"\(model)\" (supported: gpt2, llama)")
        }
    }

    static let ggufGPT2 = ["gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
                           "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais",
                           "trillion", "granite-docling", "exaone4"]
    static let ggufLlama3 = ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"]
    static let ggufLlama3Regex = ["dbrx", "smaug-bpe", "chatglm-bpe", "glm4"]
    static let ggufQwen2 = ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2", "megrez", "hunyuan", "solar-open"]
    static let ggufSmolLM = ["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b", "mellum2"]
    static var ggufPreNames: [String] { ggufGPT2 + ggufLlama3 + ggufLlama3Regex + ggufQwen2 + ggufSmolLM }

    /// The pre-tokenizer llama.cpp uses for `pre`, and whether it is Llama 3's (ignore merges,
    /// BOS added).
    static func ggufPreTokenizer(_ pre: String?) -> (PreTokenizer, Bool)? {
        guard let pre else { return nil }
        let byteLevel = PreTokenizer.byteLevel(addPrefixSpace: false, useRegex: false)
        if ggufGPT2.contains(pre) { return (.byteLevel(addPrefixSpace: false, useRegex: true), false) }
        if ggufLlama3.contains(pre) || ggufLlama3Regex.contains(pre) {
            return (.sequence([.splitRegex(.llama3(maxDigits: 3), behavior: .isolated, invert: false), byteLevel]),
                    ggufLlama3.contains(pre))
        }
        if ggufQwen2.contains(pre) {
            return (.sequence([.splitRegex(.qwen2, behavior: .isolated, invert: false), byteLevel]), false)
        }
        if ggufSmolLM.contains(pre) {
            return (.sequence([.digits(individualDigits: true), .byteLevel(addPrefixSpace: false, useRegex: true)]), false)
        }
        return nil
    }
}
