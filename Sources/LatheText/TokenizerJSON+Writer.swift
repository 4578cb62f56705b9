import Foundation
import LatheIO

/// Writing a BPE tokenizer as Hugging Face files: `tokenizer.json` (the `tokenizers` library's
/// format, which `loadTokenizer(contentsOf:)`, HF `tokenizers` and `transformers`' `AutoTokenizer`
/// read), `tokenizer_config.json` and `special_tokens_map.json`.
///
/// Every stage is written as the pipeline it is: a vocabulary read from a GGUF file becomes
/// what Hugging Face's own files for such models hold. Byte-level BPE (`tokenizer.ggml.model`
/// `gpt2`) gets the pre-tokenizer of its `pre` name (`ByteLevel` with the GPT-2 regex, `Digits`
/// then `ByteLevel` for SmolLM's, or `Split` with the Llama 3 or Qwen2 regex then `ByteLevel`),
/// the file's merges (less those that can never apply, which llama.cpp tolerates and
/// `tokenizers` does not) and `ignore_merges` for Llama 3's names. SentencePiece BPE (`llama`)
/// gets the `Replace(" ", "▁")` normaliser (after `Prepend("▁")` with `add_space_prefix`),
/// `byte_fallback`, the decoder `Replace`, `ByteFallback`, `Fuse` (and `Strip` of the prefix
/// space), and merges derived from the scores: every split of a token into two tokens, best
/// merged score first, as `transformers` derives them for a GGUF file without merges. Control
/// and unknown tokens are special added tokens, user-defined ones plain added tokens; BOS and
/// EOS are added by a `TemplateProcessing` post-processor where the file says so.
///
/// Read back, the files give the tokenizer's ids. The one case that can differ: Hugging Face
/// merges by rank, llama.cpp by score with ties going to the leftmost pair, so two different
/// merges of equal score that compete in one word may be taken in another order. Real
/// vocabularies score their mergeable tokens apart (Gemma 3's, Llama 2's).
extension BPETokenizer {
    /// The tokenizer as the text of a Hugging Face `tokenizer.json`.
    ///
    /// Token strings that occur twice in the vocabulary keep their first id (a JSON object
    /// holds each key once); the later ids decode to nothing.
    public func tokenizerJSON() -> String {
        var out = "{\n"
        out.reserveCapacity(64 * vocabulary.count)
        func member(_ key: String, _ value: JSONValue) {
            out += "  " + JSONWriter.quoted(key) + ": "
            out += JSONWriter.serialize(value).replacingOccurrences(of: "\n", with: "\n  ")
            out += ",\n"
        }
        member("version", .string("1.0"))
        member("truncation", .null)
        member("padding", .null)  // `encode` pads nothing; tokenizer_config.json names the pad token
        member("added_tokens", .array(addedTokens.map { t in
            .object([("id", .int(t.id)), ("content", .string(t.content)), ("single_word", .bool(t.singleWord)),
                     ("lstrip", .bool(t.lstrip)), ("rstrip", .bool(t.rstrip)), ("normalized", .bool(t.normalized)),
                     ("special", .bool(t.special))])
        }))
        member("normalizer", pipeline.normalizer?.huggingFaceJSON ?? .null)
        member("pre_tokenizer", pipeline.preTokenizer?.huggingFaceJSON ?? .null)
        member("post_processor", pipeline.postProcessor.map { $0.huggingFaceJSON(name: specialTokenName) } ?? .null)
        member("decoder", pipeline.decoder?.huggingFaceJSON ?? .null)

        out += "  \"model\": {\n"
        let fields: [(String, JSONValue)] = [
            ("type", .string("BPE")), ("dropout", .null),
            ("unk_token", unknownID.flatMap { vocabulary.token(for: Int($0)) }.map(JSONValue.string) ?? .null),
            ("continuing_subword_prefix", .null), ("end_of_word_suffix", .null),
            ("fuse_unk", .bool(fuseUnknown)), ("byte_fallback", .bool(byteFallback != nil)), ("ignore_merges", .bool(ignoreMerges)),
        ]
        for (k, v) in fields { out += "    " + JSONWriter.quoted(k) + ": " + JSONWriter.serialize(v, indent: nil) + ",\n" }
        let model = modelVocabulary()
        out += "    \"vocab\": {"
        var first = true
        for (id, token) in model.enumerated() {
            guard let token else { continue }
            out += first ? "\n      " : ",\n      "
            first = false
            out += JSONWriter.quoted(token) + ": " + String(id)
        }
        out += first ? "},\n" : "\n    },\n"
        out += "    \"merges\": ["
        first = true
        for (a, b) in merges(model) {
            out += first ? "\n      [" : ",\n      ["
            first = false
            out += JSONWriter.quoted(model[Int(a)]!) + ", " + JSONWriter.quoted(model[Int(b)]!) + "]"
        }
        out += first ? "]\n" : "\n    ]\n"
        out += "  }\n}\n"
        return out
    }

    /// `tokenizer_config.json`: the special tokens by name, `add_bos_token` and `add_eos_token`
    /// (when the post-processor adds nothing but BOS and EOS), the chat template, the model's
    /// context length as `model_max_length`, and `PreTrainedTokenizerFast` as the class, so that
    /// `transformers` takes `tokenizer.json` as it is.
    public func tokenizerConfigJSON(chatTemplate: String? = nil, modelMaxLength: Int? = nil) -> JSONValue {
        var m: [(key: String, value: JSONValue)] = []
        if let (addBOS, addEOS) = addsOnlyBOSAndEOS {
            m.append(("add_bos_token", .bool(addBOS)))
            m.append(("add_eos_token", .bool(addEOS)))
        }
        m += namedSpecialTokens.map { (key: $0.0, value: .string($0.1)) }
        if let chatTemplate { m.append(("chat_template", .string(chatTemplate))) }
        m.append(("clean_up_tokenization_spaces", .bool(false)))
        if let modelMaxLength { m.append(("model_max_length", .int(modelMaxLength))) }
        m.append(("tokenizer_class", .string("PreTrainedTokenizerFast")))
        return .object(m)
    }

    /// `special_tokens_map.json`: BOS, EOS, unknown and padding tokens by name (the file older
    /// `transformers` versions and other tools read).
    public func specialTokensMapJSON() -> JSONValue {
        .object(namedSpecialTokens.map { (key: $0.0, value: .string($0.1)) })
    }

    private var namedSpecialTokens: [(String, String)] {
        [("bos_token", bos), ("eos_token", eos), ("pad_token", pad), ("unk_token", unk)].compactMap { key, id in
            id.flatMap { token(for: $0) }.map { (key, $0) }
        }
    }

    /// Whether BOS and EOS are added, when the post-processor adds at most BOS before and EOS
    /// after (what `add_bos_token` and `add_eos_token` can say); nil otherwise.
    private var addsOnlyBOSAndEOS: (Bool, Bool)? {
        var before: [Int] = [], after: [Int] = []
        func collect(_ p: PostProcessor) {
            switch p {
            case .template(let b, let a): before += b; after += a
            case .none: break
            case .sequence(let list): list.forEach(collect)
            }
        }
        if let p = pipeline.postProcessor { collect(p) }
        guard before.isEmpty || (before.count == 1 && before[0] == bos),
              after.isEmpty || (after.count == 1 && after[0] == eos) else { return nil }
        return (!before.isEmpty, !after.isEmpty)
    }

    private func specialTokenName(_ id: Int) -> String { token(for: id) ?? "[\(id)]" }

    /// The model's token strings by id, each string at its first id only (what `ids` maps it to).
    func modelVocabulary() -> [String?] {
        var model = [String?](repeating: nil, count: vocabulary.count)
        for (t, id) in vocabulary.ids.pairs { model[Int(id)] = t }
        return model
    }

    /// The merges as pairs of ids, best first.
    func merges(_ model: [String?]) -> [(Int32, Int32)] {
        switch rule {
        case .ranks(let ranks):
            // Pairs the loader kept, in rank order (ranks of dropped merges leave gaps).
            return ranks.sorted { $0.value >> 32 < $1.value >> 32 }
                .map { (Int32(truncatingIfNeeded: $0.key >> 32), Int32(truncatingIfNeeded: $0.key & 0xFFFF_FFFF)) }
        case .scores(let scores):
            return BPETokenizer.mergesFromScores(model: model, ids: vocabulary.ids, scores: scores)
        }
    }

    /// Every way of writing a mergeable token as two tokens, ordered by the merged token's
    /// score (higher first), then its id, then the ids of the two (as the tokenizer.json files HF
    /// makes of sentencepiece models order them). A token whose score is -inf (control, unknown
    /// and byte tokens) is never a merge's result.
    static func mergesFromScores(model: [String?], ids: TokenIDs, scores: [Float]) -> [(Int32, Int32)] {
        var found: [(score: Float, merged: Int32, a: Int32, b: Int32)] = []
        for (id, token) in model.enumerated() {
            guard let token, id < scores.count, scores[id] > -.infinity else { continue }
            let scalars = Array(token.unicodeScalars)
            guard scalars.count > 1 else { continue }
            for cut in 1..<scalars.count {
                guard let a = ids[makeString(scalars[..<cut])], let b = ids[makeString(scalars[cut...])] else { continue }
                found.append((scores[id], Int32(id), a, b))
            }
        }
        found.sort { x, y in
            if x.score != y.score { return x.score > y.score }
            if x.merged != y.merged { return x.merged < y.merged }
            return x.a != y.a ? x.a < y.a : x.b < y.b
        }
        return found.map { ($0.a, $0.b) }
    }
}

extension Normalizer {
    /// The normaliser as `tokenizer.json` writes it.
    var huggingFaceJSON: JSONValue {
        func typed(_ type: String, _ fields: [(key: String, value: JSONValue)] = []) -> JSONValue {
            .object([(key: "type", value: .string(type))] + fields)
        }
        switch self {
        case .bert(let clean, let chinese, let strip, let lower):
            return typed("BertNormalizer", [("clean_text", .bool(clean)), ("handle_chinese_chars", .bool(chinese)),
                                            ("strip_accents", .bool(strip)), ("lowercase", .bool(lower))])
        case .lowercase: return typed("Lowercase")
        case .nfc: return typed("NFC")
        case .nfd: return typed("NFD")
        case .nfkc: return typed("NFKC")
        case .nfkd: return typed("NFKD")
        case .stripAccents: return typed("StripAccents")
        case .strip(let left, let right): return typed("Strip", [("strip_left", .bool(left)), ("strip_right", .bool(right))])
        case .replace(let pattern, let content):
            return typed("Replace", [("pattern", .object([("String", .string(pattern))])), ("content", .string(content))])
        case .prepend(let prefix): return typed("Prepend", [("prepend", .string(prefix))])
        case .sequence(let list): return typed("Sequence", [("normalizers", .array(list.map(\.huggingFaceJSON)))])
        }
    }
}

extension PreTokenizer {
    /// The pre-tokenizer as `tokenizer.json` writes it.
    var huggingFaceJSON: JSONValue {
        func typed(_ type: String, _ fields: [(key: String, value: JSONValue)] = []) -> JSONValue {
            .object([(key: "type", value: .string(type))] + fields)
        }
        switch self {
        case .byteLevel(let addPrefixSpace, let useRegex):
            return typed("ByteLevel", [("add_prefix_space", .bool(addPrefixSpace)), ("trim_offsets", .bool(true)),
                                       ("use_regex", .bool(useRegex))])
        case .splitRegex(let pattern, let behavior, let invert):
            return typed("Split", [("pattern", .object([("Regex", .string(pattern.regex))])),
                                   ("behavior", .string(behavior.rawValue)), ("invert", .bool(invert))])
        case .splitString(let delimiter, let behavior, let invert):
            return typed("Split", [("pattern", .object([("String", .string(delimiter))])),
                                   ("behavior", .string(behavior.rawValue)), ("invert", .bool(invert))])
        case .digits(let individual): return typed("Digits", [("individual_digits", .bool(individual))])
        case .metaspace(let replacement, let scheme, let split):
            return typed("Metaspace", [("replacement", .string(String(replacement))), ("prepend_scheme", .string(scheme.rawValue)),
                                       ("split", .bool(split))])
        case .bert: return typed("BertPreTokenizer")
        case .whitespaceSplit: return typed("WhitespaceSplit")
        case .whitespace: return typed("Whitespace")
        case .punctuation(let behavior): return typed("Punctuation", [("behavior", .string(behavior.rawValue))])
        case .sequence(let list): return typed("Sequence", [("pretokenizers", .array(list.map(\.huggingFaceJSON)))])
        }
    }
}

extension PostProcessor {
    /// The post-processor as `tokenizer.json` writes it; `name` names the special tokens.
    func huggingFaceJSON(name: (Int) -> String) -> JSONValue {
        switch self {
        case .template(let before, let after):
            func special(_ id: Int, _ typeID: Int) -> JSONValue {
                .object([("SpecialToken", .object([("id", .string(name(id))), ("type_id", .int(typeID))]))])
            }
            func sequence(_ s: String, _ typeID: Int) -> JSONValue {
                .object([("Sequence", .object([("id", .string(s)), ("type_id", .int(typeID))]))])
            }
            let single = before.map { special($0, 0) } + [sequence("A", 0)] + after.map { special($0, 0) }
            let pair = single + before.map { special($0, 1) } + [sequence("B", 1)] + after.map { special($0, 1) }
            var specials: [(key: String, value: JSONValue)] = []
            for id in before + after where !specials.contains(where: { $0.key == name(id) }) {
                specials.append((name(id), .object([("id", .string(name(id))), ("ids", .array([.int(id)])),
                                                    ("tokens", .array([.string(name(id))]))])))
            }
            return .object([("type", .string("TemplateProcessing")), ("single", .array(single)), ("pair", .array(pair)),
                            ("special_tokens", .object(specials))])
        case .none:
            return .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(true)), ("trim_offsets", .bool(false)),
                            ("use_regex", .bool(true))])
        case .sequence(let list):
            return .object([("type", .string("Sequence")), ("processors", .array(list.map { $0.huggingFaceJSON(name: name) }))])
        }
    }
}

extension TokenDecoder {
    /// The decoder as `tokenizer.json` writes it.
    var huggingFaceJSON: JSONValue {
        func typed(_ type: String, _ fields: [(key: String, value: JSONValue)] = []) -> JSONValue {
            .object([(key: "type", value: .string(type))] + fields)
        }
        switch self {
        case .byteLevel:
            return typed("ByteLevel", [("add_prefix_space", .bool(true)), ("trim_offsets", .bool(true)), ("use_regex", .bool(true))])
        case .byteFallback: return typed("ByteFallback")
        case .fuse: return typed("Fuse")
        case .strip(let content, let start, let stop):
            return typed("Strip", [("content", .string(String(content))), ("start", .int(start)), ("stop", .int(stop))])
        case .replace(let pattern, let content):
            return typed("Replace", [("pattern", .object([("String", .string(pattern))])), ("content", .string(content))])
        case .metaspace(let replacement, let scheme):
            return typed("Metaspace", [("replacement", .string(String(replacement))), ("prepend_scheme", .string(scheme.rawValue)),
                                       ("split", .bool(true))])
        case .wordPiece(let prefix, let cleanup): return typed("WordPiece", [("prefix", .string(prefix)), ("cleanup", .bool(cleanup))])
        case .bpe(let suffix): return typed("BPEDecoder", [("suffix", .string(suffix))])
        case .sequence(let list): return typed("Sequence", [("decoders", .array(list.map(\.huggingFaceJSON)))])
        }
    }
}
