import Foundation
import LatheIO

/// Loads a Hugging Face `tokenizer.json`, choosing the tokenizer type from `model.type`
/// (`BPE`, `WordPiece` or `Unigram`).
///
/// `url` is the file or a model folder holding it. In a folder, a `tokenizer_config.json`
/// beside it names the BOS, EOS, padding and unknown tokens (`bos_token`, …), which
/// `tokenizer.json` itself does not; without one they are guessed from the post-processor and
/// well-known names. Truncation and padding settings are not applied (`encode` returns the ids
/// of the whole text). Unknown or unsupported stages are errors naming the file and JSON path.
public func loadTokenizer(contentsOf url: URL) throws(TokenizerError) -> any Tokenizer {
    var isDirectory: ObjCBool = false
    let folder = FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
    let file = try TokenizerJSON(url: folder ? url.appendingPathComponent("tokenizer.json") : url)
    var config: TokenizerConfig?
    let configURL = folder ? url.appendingPathComponent("tokenizer_config.json")
                           : url.deletingLastPathComponent().appendingPathComponent("tokenizer_config.json")
    if FileManager.default.fileExists(atPath: configURL.path) { config = try TokenizerConfig(url: configURL) }
    switch try file.modelType() {
    case "BPE":
        var t = try BPETokenizer(file)
        config?.apply(to: t.vocabulary, bos: &t.bos, eos: &t.eos, pad: &t.pad)
        return t
    case "WordPiece":
        var t = try WordPieceTokenizer(file)
        config?.apply(to: t.vocabulary, bos: &t.bos, eos: &t.eos, pad: &t.pad)
        return t
    case "Unigram":
        var t = try UnigramTokenizer(file)
        config?.apply(to: t.vocabulary, bos: &t.bos, eos: &t.eos, pad: &t.pad)
        return t
    case let other: throw file.error("model.type", "unsupported model type \"\(other)\" (supported: BPE, WordPiece, Unigram)")
    }
}

/// The token names of a `tokenizer_config.json` (each a string or `{"content": …}`).
struct TokenizerConfig {
    var bos: String?, eos: String?, pad: String?

    init(url: URL) throws(TokenizerError) {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TokenizerError(file: url.path, path: "", "cannot read the file: \(error.localizedDescription)")
        }
        let root: JSONValue
        do { root = try JSONParser.parse([UInt8](data)) } catch {
            throw TokenizerError(file: url.path, path: "", "not valid JSON: \(error)")
        }
        func name(_ key: String) -> String? { root[key]?.stringValue ?? root[key]?["content"]?.stringValue }
        bos = name("bos_token")
        eos = name("eos_token")
        pad = name("pad_token")
    }

    func apply(to vocabulary: Vocabulary, bos: inout Int?, eos: inout Int?, pad: inout Int?) {
        if let b = self.bos.flatMap(vocabulary.id(for:)) { bos = b }
        if let e = self.eos.flatMap(vocabulary.id(for:)) { eos = e }
        if let p = self.pad.flatMap(vocabulary.id(for:)) { pad = p }
    }
}

extension BPETokenizer {
    /// Reads a `tokenizer.json` whose model is BPE.
    public init(tokenizerJSON url: URL) throws(TokenizerError) {
        try self.init(TokenizerJSON(url: url))
    }

    /// Parses the text of a `tokenizer.json` whose model is BPE; `source` names it in errors.
    public init(tokenizerJSON bytes: [UInt8], source: String = "tokenizer.json") throws(TokenizerError) {
        try self.init(TokenizerJSON(bytes: bytes, source: source))
    }

    init(_ file: TokenizerJSON) throws(TokenizerError) {
        let type = try file.modelType()
        guard type == "BPE" else { throw file.error("model.type", "expected BPE, found \"\(type)\"") }
        let model = file.root["model"]!
        let (tokens, ids) = try file.vocabulary(model["vocab"], "model.vocab")
        if let d = model["dropout"], !d.isNull, (d.doubleValue ?? 1) != 0 {
            throw file.error("model.dropout", "BPE dropout is not supported (it is for training)")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = model[key], !v.isNull, v.stringValue != "" {
                throw file.error("model.\(key)", "not supported")
            }
        }
        guard let mergeList = model["merges"]?.arrayValue else { throw file.error("model.merges", "missing or not an array") }
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(mergeList.count)
        for (rank, m) in mergeList.enumerated() {
            let path = "model.merges[\(rank)]"
            let a: String, b: String
            if let s = m.stringValue {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw file.error(path, "expected \"a b\", found \"\(s)\"") }
                (a, b) = (String(parts[0]), String(parts[1]))
            } else if let pair = m.arrayValue, pair.count == 2, let x = pair[0].stringValue, let y = pair[1].stringValue {
                (a, b) = (x, y)
            } else {
                throw file.error(path, "expected a string \"a b\" or an array [a, b], found \(m.kindName)")
            }
            guard let ia = ids[a] else { throw file.error(path, "token \"\(a)\" is not in model.vocab") }
            guard let ib = ids[b] else { throw file.error(path, "token \"\(b)\" is not in model.vocab") }
            guard let im = ids[a + b] else { throw file.error(path, "merged token \"\(a + b)\" is not in model.vocab") }
            merges[UInt64(UInt32(ia)) << 32 | UInt64(UInt32(ib))] = UInt64(rank) << 32 | UInt64(UInt32(im))
        }
        var unknown: Int?
        if let u = model["unk_token"], !u.isNull {
            let name = try file.string(u, "model.unk_token")
            unknown = ids[name].map(Int.init)
        }
        let pipeline = try file.pipeline()
        let byteLevel = pipeline.preTokenizer?.isByteLevel ?? false
        let added = pipeline.added.tokens
        self.init(tokens: tokens, rule: .ranks(merges), byteLevel: byteLevel,
                  byteFallback: try file.bool(model["byte_fallback"], "model.byte_fallback", default: false),
                  unknown: unknown,
                  fuseUnknown: try file.bool(model["fuse_unk"], "model.fuse_unk", default: false),
                  ignoreMerges: try file.bool(model["ignore_merges"], "model.ignore_merges", default: false),
                  pipeline: pipeline,
                  bos: file.guessBOS(added, pipeline), eos: file.guessEOS(added), pad: file.padID())
    }
}

/// A parsed `tokenizer.json` and the helpers that read it with JSON paths in errors.
struct TokenizerJSON {
    let source: String
    let root: JSONValue

    init(url: URL) throws(TokenizerError) {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TokenizerError(file: url.path, path: "", "cannot read the file: \(error.localizedDescription)")
        }
        try self.init(bytes: [UInt8](data), source: url.path)
    }

    init(bytes: [UInt8], source: String) throws(TokenizerError) {
        self.source = source
        do { root = try JSONParser.parse(bytes) } catch {
            throw TokenizerError(file: source, path: "", "not valid JSON: \(error)")
        }
        guard case .object = root else { throw TokenizerError(file: source, path: "", "expected a JSON object") }
        guard root["model"]?.objectMembers != nil else { throw TokenizerError(file: source, path: "model", "missing or not an object") }
    }

    func error(_ path: String, _ message: String) -> TokenizerError {
        TokenizerError(file: source, path: path, message)
    }

    func modelType() throws(TokenizerError) -> String {
        let model = root["model"]!
        if let t = model["type"] { return try string(t, "model.type") }
        // Older files leave the type out; tell the models apart by their fields.
        if model["merges"] != nil { return "BPE" }
        if model["continuing_subword_prefix"] != nil || model["max_input_chars_per_word"] != nil { return "WordPiece" }
        if model["vocab"]?.arrayValue != nil { return "Unigram" }
        throw error("model.type", "missing, and the model's fields do not say which it is")
    }

    func string(_ v: JSONValue?, _ path: String) throws(TokenizerError) -> String {
        guard let v else { throw error(path, "missing") }
        guard let s = v.stringValue else { throw error(path, "expected a string, found \(v.kindName)") }
        return s
    }

    func bool(_ v: JSONValue?, _ path: String, default d: Bool) throws(TokenizerError) -> Bool {
        guard let v, !v.isNull else { return d }
        guard let b = v.boolValue else { throw error(path, "expected a boolean, found \(v.kindName)") }
        return b
    }

    func int(_ v: JSONValue?, _ path: String) throws(TokenizerError) -> Int {
        guard let v else { throw error(path, "missing") }
        guard let i = v.intValue else { throw error(path, "expected an integer, found \(v.kindName)") }
        return i
    }

    func array(_ v: JSONValue?, _ path: String) throws(TokenizerError) -> [JSONValue] {
        guard let v else { throw error(path, "missing") }
        guard let a = v.arrayValue else { throw error(path, "expected an array, found \(v.kindName)") }
        return a
    }

    func scalar(_ v: JSONValue?, _ path: String) throws(TokenizerError) -> Unicode.Scalar {
        let s = try string(v, path)
        guard s.unicodeScalars.count == 1, let c = s.unicodeScalars.first else {
            throw error(path, "expected one character, found \"\(s)\"")
        }
        return c
    }

    /// A `{token: id}` object as an id-indexed table and a lookup.
    func vocabulary(_ v: JSONValue?, _ path: String) throws(TokenizerError) -> ([String?], TokenIDs) {
        guard let members = v?.objectMembers else { throw error(path, "missing or not an object") }
        var ids: TokenIDs = TokenIDs()
        ids.reserveCapacity(members.count)
        var maxID = -1
        for (k, value) in members {
            guard let id = value.nonNegativeInt, id < Int(Int32.max) else {
                throw error("\(path)[\"\(k)\"]", "expected a non-negative integer id, found \(value.kindName)")
            }
            ids[k] = Int32(id)
            maxID = max(maxID, id)
        }
        guard maxID < 16 * (members.count + 1024) else { throw error(path, "ids up to \(maxID) for \(members.count) tokens") }
        var tokens = [String?](repeating: nil, count: maxID + 1)
        for (k, id) in ids.pairs { tokens[Int(id)] = k }
        return (tokens, ids)
    }

    func addedTokens() throws(TokenizerError) -> [AddedToken] {
        guard let list = root["added_tokens"], !list.isNull else { return [] }
        var out: [AddedToken] = []
        for (i, t) in try array(list, "added_tokens").enumerated() {
            let p = "added_tokens[\(i)]"
            guard let id = t["id"]?.nonNegativeInt else { throw error("\(p).id", "missing or not a non-negative integer") }
            // Ids index a table: refuse absurd ones rather than allocate for them.
            guard id < 1 << 24 else { throw error("\(p).id", "\(id) is too large for a token id") }
            let content = try string(t["content"], "\(p).content")
            guard !content.isEmpty else { throw error("\(p).content", "empty") }
            out.append(AddedToken(
                id: id, content: content,
                special: try bool(t["special"], "\(p).special", default: false),
                singleWord: try bool(t["single_word"], "\(p).single_word", default: false),
                lstrip: try bool(t["lstrip"], "\(p).lstrip", default: false),
                rstrip: try bool(t["rstrip"], "\(p).rstrip", default: false),
                normalized: try bool(t["normalized"], "\(p).normalized", default: false)))
        }
        return out
    }

    func pipeline() throws(TokenizerError) -> Pipeline {
        let normalizer = try parseNormalizer(root["normalizer"], "normalizer")
        let pre = try parsePreTokenizer(root["pre_tokenizer"], "pre_tokenizer")
        return Pipeline(normalizer: normalizer, preTokenizer: pre, addedTokens: try addedTokens(),
                        postProcessor: try parsePostProcessor(root["post_processor"], "post_processor"),
                        decoder: try parseDecoder(root["decoder"], "decoder"))
    }

    private func type(_ v: JSONValue, _ path: String) throws(TokenizerError) -> String {
        guard v.objectMembers != nil else { throw error(path, "expected an object, found \(v.kindName)") }
        return try string(v["type"], "\(path).type")
    }

    /// A `{"String": s}` pattern's string, or the regex of `{"Regex": r}` (second element true).
    private func pattern(_ v: JSONValue?, _ path: String) throws(TokenizerError) -> (String, isRegex: Bool) {
        if let s = v?["String"] { return (try string(s, "\(path).String"), false) }
        if let r = v?["Regex"] { return (try string(r, "\(path).Regex"), true) }
        throw error(path, "expected {\"String\": …} or {\"Regex\": …}")
    }

    func parseNormalizer(_ v: JSONValue?, _ path: String) throws(TokenizerError) -> Normalizer? {
        guard let v, !v.isNull else { return nil }
        switch try type(v, path) {
        case "BertNormalizer":
            let lower = try bool(v["lowercase"], "\(path).lowercase", default: true)
            return .bert(cleanText: try bool(v["clean_text"], "\(path).clean_text", default: true),
                         handleChineseCharacters: try bool(v["handle_chinese_chars"], "\(path).handle_chinese_chars", default: true),
                         stripAccents: try bool(v["strip_accents"], "\(path).strip_accents", default: lower),
                         lowercase: lower)
        case "Lowercase": return .lowercase
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "StripAccents": return .stripAccents
        case "Strip":
            return .strip(left: try bool(v["strip_left"], "\(path).strip_left", default: true),
                          right: try bool(v["strip_right"], "\(path).strip_right", default: true))
        case "Replace":
            let (p, isRegex) = try pattern(v["pattern"], "\(path).pattern")
            guard !isRegex else { throw error("\(path).pattern.Regex", "regex replacement (\"\(p)\") is not supported") }
            return .replace(pattern: p, content: try string(v["content"], "\(path).content"))
        case "Prepend": return .prepend(try string(v["prepend"], "\(path).prepend"))
        case "Precompiled":
            // An empty charsmap is the identity; a real one needs SentencePiece's normaliser.
            if let m = v["precompiled_charsmap"], !m.isNull, m.stringValue != "" {
                throw error("\(path).precompiled_charsmap", "SentencePiece's precompiled normaliser is not supported")
            }
            return nil
        case "Sequence":
            var list: [Normalizer] = []
            for (i, n) in try array(v["normalizers"], "\(path).normalizers").enumerated() {
                if let x = try parseNormalizer(n, "\(path).normalizers[\(i)]") { list.append(x) }
            }
            return .sequence(list)
        case let other:
            throw error("\(path).type", "unsupported normalizer \"\(other)\" (supported: BertNormalizer, Lowercase, NFC, NFD, NFKC, NFKD, StripAccents, Strip, Replace, Prepend, Sequence)")
        }
    }

    private func behavior(_ v: JSONValue?, _ path: String) throws(TokenizerError) -> SplitBehavior {
        let s = try string(v, path)
        guard let b = SplitBehavior(rawValue: s) else { throw error(path, "unknown split behavior \"\(s)\"") }
        return b
    }

    private func prependScheme(_ v: JSONValue, _ path: String) throws(TokenizerError) -> PrependScheme {
        if let s = v["prepend_scheme"], !s.isNull {
            let name = try string(s, "\(path).prepend_scheme")
            guard let p = PrependScheme(rawValue: name) else { throw error("\(path).prepend_scheme", "unknown scheme \"\(name)\"") }
            return p
        }
        return try bool(v["add_prefix_space"], "\(path).add_prefix_space", default: true) ? .always : .never
    }

    func parsePreTokenizer(_ v: JSONValue?, _ path: String) throws(TokenizerError) -> PreTokenizer? {
        guard let v, !v.isNull else { return nil }
        switch try type(v, path) {
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: try bool(v["add_prefix_space"], "\(path).add_prefix_space", default: true),
                              useRegex: try bool(v["use_regex"], "\(path).use_regex", default: true))
        case "Split":
            let (p, isRegex) = try pattern(v["pattern"], "\(path).pattern")
            let b = try behavior(v["behavior"], "\(path).behavior")
            let invert = try bool(v["invert"], "\(path).invert", default: false)
            guard isRegex else { return .splitString(p, behavior: b, invert: invert) }
            guard let sp = SplitPattern(regex: p) else {
                throw error("\(path).pattern.Regex", "unsupported split regex \"\(p)\" (supported: the GPT-2, Llama 3 and Qwen2 patterns)")
            }
            return .splitRegex(sp, behavior: b, invert: invert)
        case "Digits":
            return .digits(individualDigits: try bool(v["individual_digits"], "\(path).individual_digits", default: false))
        case "Metaspace":
            return .metaspace(replacement: try scalar(v["replacement"], "\(path).replacement"),
                              prependScheme: try prependScheme(v, path),
                              split: try bool(v["split"], "\(path).split", default: true))
        case "BertPreTokenizer": return .bert
        case "WhitespaceSplit": return .whitespaceSplit
        case "Whitespace": return .whitespace
        case "Punctuation":
            let b = v["behavior"].map { _ in () } == nil ? SplitBehavior.isolated : try behavior(v["behavior"], "\(path).behavior")
            return .punctuation(behavior: b)
        case "Sequence":
            let items = try array(v["pretokenizers"], "\(path).pretokenizers")
            var list: [PreTokenizer] = []
            for (i, p) in items.enumerated() {
                guard let x = try parsePreTokenizer(p, "\(path).pretokenizers[\(i)]") else { continue }
                if list.last?.isByteLevel == true {
                    throw error("\(path).pretokenizers[\(i)]", "a pre-tokenizer after ByteLevel is not supported")
                }
                list.append(x)
            }
            return .sequence(list)
        case let other:
            throw error("\(path).type", "unsupported pre-tokenizer \"\(other)\" (supported: ByteLevel, Split, Digits, Metaspace, BertPreTokenizer, WhitespaceSplit, Whitespace, Punctuation, Sequence)")
        }
    }

    func parsePostProcessor(_ v: JSONValue?, _ path: String) throws(TokenizerError) -> PostProcessor? {
        guard let v, !v.isNull else { return nil }
        switch try type(v, path) {
        case "TemplateProcessing":
            var before: [Int] = [], after: [Int] = []
            var seenSequence = false
            for (i, item) in try array(v["single"], "\(path).single").enumerated() {
                let p = "\(path).single[\(i)]"
                if item["Sequence"] != nil { seenSequence = true; continue }
                guard let special = item["SpecialToken"] else { throw error(p, "expected SpecialToken or Sequence") }
                let name = try string(special["id"], "\(p).SpecialToken.id")
                guard let entry = v["special_tokens"]?[name] else {
                    throw error("\(path).special_tokens", "no entry for \"\(name)\"")
                }
                var ids: [Int] = []
                for (k, x) in try array(entry["ids"], "\(path).special_tokens[\"\(name)\"].ids").enumerated() {
                    ids.append(try int(x, "\(path).special_tokens[\"\(name)\"].ids[\(k)]"))
                }
                if seenSequence { after += ids } else { before += ids }
            }
            return .template(before: before, after: after)
        case "BertProcessing", "RobertaProcessing":
            func id(_ key: String) throws(TokenizerError) -> Int {
                let pair = try array(v[key], "\(path).\(key)")
                guard pair.count == 2 else { throw error("\(path).\(key)", "expected [token, id]") }
                return try int(pair[1], "\(path).\(key)[1]")
            }
            return .template(before: [try id("cls")], after: [try id("sep")])
        case "ByteLevel":
            return PostProcessor.none
        case "Sequence":
            var list: [PostProcessor] = []
            for (i, p) in try array(v["processors"], "\(path).processors").enumerated() {
                if let x = try parsePostProcessor(p, "\(path).processors[\(i)]") { list.append(x) }
            }
            return .sequence(list)
        case let other:
            throw error("\(path).type", "unsupported post-processor \"\(other)\" (supported: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence)")
        }
    }

    func parseDecoder(_ v: JSONValue?, _ path: String) throws(TokenizerError) -> TokenDecoder? {
        guard let v, !v.isNull else { return nil }
        switch try type(v, path) {
        case "ByteLevel": return .byteLevel
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Strip":
            return .strip(content: try scalar(v["content"], "\(path).content"),
                          start: try int(v["start"], "\(path).start"), stop: try int(v["stop"], "\(path).stop"))
        case "Replace":
            let (p, isRegex) = try pattern(v["pattern"], "\(path).pattern")
            guard !isRegex else { throw error("\(path).pattern.Regex", "regex replacement is not supported") }
            return .replace(pattern: p, content: try string(v["content"], "\(path).content"))
        case "Metaspace":
            return .metaspace(replacement: try scalar(v["replacement"], "\(path).replacement"),
                              prependScheme: try prependScheme(v, path))
        case "WordPiece":
            return .wordPiece(prefix: v["prefix"].map { $0.stringValue ?? "##" } ?? "##",
                              cleanup: try bool(v["cleanup"], "\(path).cleanup", default: true))
        case "BPEDecoder":
            return .bpe(suffix: v["suffix"]?.stringValue ?? "</w>")
        case "Sequence":
            var list: [TokenDecoder] = []
            for (i, d) in try array(v["decoders"], "\(path).decoders").enumerated() {
                if let x = try parseDecoder(d, "\(path).decoders[\(i)]") { list.append(x) }
            }
            return .sequence(list)
        case let other:
            throw error("\(path).type", "unsupported decoder \"\(other)\" (supported: ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace, WordPiece, BPEDecoder, Sequence)")
        }
    }

    /// `tokenizer.json` does not name BOS and EOS (`tokenizer_config.json` does); take the
    /// post-processor's first token, else a well-known name.
    func guessBOS(_ added: [AddedToken], _ pipeline: Pipeline) -> Int? {
        if case .template(let before, _)? = pipeline.postProcessor, let first = before.first { return first }
        return firstAdded(added, ["<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>", "<|endoftext|>"])
    }

    func guessEOS(_ added: [AddedToken]) -> Int? {
        firstAdded(added, ["<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>", "<|eot_id|>", "<|im_end|>"])
    }

    func firstAdded(_ added: [AddedToken], _ names: [String]) -> Int? {
        for n in names { if let t = added.first(where: { $0.content == n }) { return t.id } }
        return nil
    }

    func padID() -> Int? { root["padding"]?["pad_id"]?.nonNegativeInt }
}
