import Foundation
import LatheIO
import LatheTensor
import LatheText

/// Writes Hugging Face folders of the Llama family as GGUF files the way llama.cpp's converter
/// (`convert_hf_to_gguf.py`, class `LlamaModel`) writes them, with the tensor types of
/// llama-quantize (``GGUFTypeRules``), so that llama.cpp loads them:
///
/// - tensors renamed to llama.cpp's names (`model.layers.3.self_attn.q_proj.weight` →
///   `blk.3.attn_q.weight`, ...), in the converter's order (the shards by name, each shard's
///   tensors by name); q and k rows permuted for adjacent-pair RoPE, as the converter's
///   `LlamaModel.permute` does (the inverse of ``DecoderModel``'s `pairsToHalves`); norms and
///   other 1-D tensors F32; a tied `lm_head.weight`, if the folder has one, left out (llama.cpp
///   then uses `token_embd` as the output, as it does for any tied model);
/// - `general.*` keys (architecture, type, name: the folder's name, size_label) and `llama.*`
///   keys as llama.cpp's loader reads them (block_count,
///   context_length, embedding_length, feed_forward_length, attention.head_count(_kv),
///   rope.freq_base, attention.layer_norm_rms_epsilon, attention.key/value_length when
///   config.json has head_dim, vocab_size, rope.dimension_count, linear rope scaling);
/// - the tokenizer, when `tokenizer.json` is byte-level BPE: ``GGUFVocabulary``.
///
/// Not supported yet (a clear error): other architectures, Llama 3.1's rope scaling (llama.cpp
/// needs a `rope_freqs` tensor), MLP biases, tokenizers other than byte-level BPE.
public enum GGUFExport {
    /// Writes the Hugging Face folder `folder` as the GGUF file `url`; `progress` is called
    /// after each tensor. Peak memory: one tensor as float32 plus its GGUF bytes, and the mapped
    /// safetensors files.
    @discardableResult
    public static func write(huggingFaceFolder folder: URL, to url: URL, rules: GGUFTypeRules,
                             progress: ((GGUFWrittenTensor) -> Void)? = nil) throws -> [GGUFWrittenTensor] {
        let configURL = folder.appendingPathComponent("config.json")
        guard let bytes = try? Data(contentsOf: configURL) else {
            throw ModelFileError(file: configURL.path, message: "cannot read config.json (is \(folder.path) a Hugging Face model folder?)")
        }
        let json: JSONValue
        do { json = try JSONParser.parse([UInt8](bytes)) } catch { throw ModelFileError(file: configURL.path, message: "not valid JSON: \(error)") }
        let type = json["model_type"]?.stringValue ?? "?"
        guard type == "llama" else {
            throw ModelFileError(file: configURL.path, message: "model_type '\(type)' cannot be written as GGUF yet (supported: llama)")
        }
        let config = try DecoderConfig.huggingFace(json, file: configURL.path)
        if case .llama3? = config.ropeScaling {
            throw ModelFileError(file: configURL.path, message: "Llama 3.1 rope scaling needs llama.cpp's rope_freqs tensor, which Lathe does not write yet")
        }
        if json["mlp_bias"]?.boolValue == true {
            throw ModelFileError(file: configURL.path, message: "MLP biases (mlp_bias: true) have no place in llama.cpp's llama architecture")
        }
        if let act = json["hidden_act"]?.stringValue, act != "silu" {
            throw ModelFileError(file: configURL.path, message: "hidden_act '\(act)': llama.cpp's llama architecture uses SiLU")
        }
        if GGUFFile.sameFile(url.path, folder.path) {
            throw ModelFileError(file: url.path, message: "the output is the input folder")
        }
        let vocabulary = try GGUFVocabulary(huggingFaceFolder: folder, vocabularySize: config.vocabularySize)

        // Tensors in the converter's order, renamed; tied lm_head left out.
        let files = try DecoderModel.weightFiles(folder).sorted { $0.lastPathComponent < $1.lastPathComponent }
        let weights = try ShardedSafeTensors(files)
        var plan: [(hf: String, gguf: String, shape: [Int])] = []
        for file in weights.files {
            for name in file.tensorNames.sorted() {
                if name.hasSuffix(".rotary_emb.inv_freq") { continue }
                if name == "lm_head.weight", config.tieWordEmbeddings { continue }
                guard let gguf = ggufName(huggingFace: name) else {
                    throw ModelFileError(file: file.header.path, message: "tensor \(name) has no place in llama.cpp's llama architecture")
                }
                plan.append((name, gguf, file.shape(of: name) ?? []))
            }
        }
        for required in ["token_embd.weight", "output_norm.weight"] where !plan.contains(where: { $0.gguf == required }) {
            throw ModelFileError(file: folder.path, message: "no tensor for \(required)")
        }
        let sourceTensors = plan.map { GGUFTypeRules.Tensor(name: $0.gguf, dimensions: $0.shape.reversed(), type: .f32) }
        var types = try rules.types(for: sourceTensors, layers: config.layers)
        // The converter writes every 1-D tensor and norm as F32.
        for (i, t) in sourceTensors.enumerated() where t.dimensions.count < 2 || t.name.hasSuffix("_norm.weight") { types[i] = .f32 }

        let parameters = plan.reduce(0) { $0 + $1.shape.reduce(1, *) }
        let metadata = self.metadata(config: config, json: json, name: folder.standardizedFileURL.lastPathComponent,
                                     parameters: parameters, fileType: rules.fileType) + vocabulary.metadata
            + [GGUFKeyValue(key: "general.quantization_version", value: .uint32(2))]
        let descriptors = zip(plan, types).map { GGUFTensorDescriptor(name: $0.gguf, shape: $0.shape, type: $1) }
        var written: [GGUFWrittenTensor] = []
        try GGUFWriter.write(to: url, metadata: metadata, tensors: descriptors) { i, buffer in
            let (hf, gguf, shape) = plan[i]
            var values = try weights.float32Tensor(named: hf).contiguous().scalars
            guard values.count == shape.reduce(1, *) else {
                throw ModelFileError(file: folder.path, message: "tensor \(hf) has \(values.count) values for its shape \(shape)")
            }
            if hf.hasSuffix("self_attn.q_proj.weight") || hf.hasSuffix("self_attn.q_proj.bias") {
                values = try halvesToPairs(values, rows: shape[0], heads: config.heads, name: hf)
            } else if hf.hasSuffix("self_attn.k_proj.weight") || hf.hasSuffix("self_attn.k_proj.bias") {
                values = try halvesToPairs(values, rows: shape[0], heads: config.kvHeads, name: hf)
            }
            let type = types[i]
            values.withUnsafeBufferPointer { type.quantize($0, rowLength: shape.last ?? 1, into: buffer) }
            let record = GGUFWrittenTensor(name: gguf, dimensions: shape.reversed(), from: .f32, to: type, byteCount: buffer.count, copied: false)
            written.append(record)
            progress?(record)
        }
        return written
    }

    /// llama.cpp's name of a Llama tensor (its converter's map: gguf-py's `tensor_mapping.py`).
    public static func ggufName(huggingFace name: String) -> String? {
        let fixed = ["model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"]
        if let n = fixed[name] { return n }
        let parts = name.split(separator: ".", maxSplits: 3)
        guard parts.count == 4, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]), layer >= 0 else { return nil }
        let map = ["input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                   "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                   "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
                   "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
                   "self_attn.v_proj.bias": "attn_v.bias", "self_attn.o_proj.bias": "attn_output.bias",
                   "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"]
        return map[String(parts[3])].map { "blk.\(layer).\($0)" }
    }

    /// gguf-py's size label: the parameter count in K, M, B or T with at least two significant
    /// digits (`135M`, `1.2B`, `7.2K`).
    static func sizeLabel(_ n: Int) -> String {
        let x = Double(n)
        let (scaled, suffix) = x > 1e12 ? (x * 1e-12, "T") : x > 1e9 ? (x * 1e-9, "B") : x > 1e6 ? (x * 1e-6, "M") : (x * 1e-3, "K")
        let r = Int(scaled.rounded()), digits = r == 0 ? 0 : String(r).count
        return String(format: "%.\(max(2 - digits, 0))f", scaled) + suffix
    }

    /// Reorders the rows of a q or k projection (weight `[rows, cols]` or bias `[rows]`,
    /// row-major) from rotate-half order to adjacent pairs: within each head, row `j * half + i`
    /// moves to `2i + j` (llama.cpp's converter's `permute`: reshape to `[heads, 2, half, ...]`
    /// and swap the middle axes).
    package static func halvesToPairs(_ values: [Float], rows: Int, heads: Int, name: String) throws -> [Float] {
        guard heads > 0, rows % heads == 0, (rows / heads) % 2 == 0 else {
            throw ModelFileError(file: name, message: "\(rows) rows cannot be split into \(heads) heads of an even size")
        }
        let headDim = rows / heads, half = headDim / 2, rest = values.count / rows
        var out = [Float](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for h in 0..<heads {
                    for j in 0..<2 {
                        for i in 0..<half {
                            let from = (h * headDim + j * half + i) * rest, to = (h * headDim + 2 * i + j) * rest
                            for e in 0..<rest { dst[to + e] = src[from + e] }
                        }
                    }
                }
            }
        }
        return out
    }

    /// The `general.*` and `llama.*` keys, in the converter's order.
    static func metadata(config c: DecoderConfig, json: JSONValue, name: String, parameters: Int, fileType: GGUFFileType) -> [GGUFKeyValue] {
        let a = "llama"
        var m: [GGUFKeyValue] = [
            .init(key: "general.architecture", value: .string(a)),
            .init(key: "general.type", value: .string("model")),
            .init(key: "general.name", value: .string(name)),
            .init(key: "general.size_label", value: .string(sizeLabel(parameters))),
            .init(key: "\(a).block_count", value: .uint32(UInt32(c.layers))),
            .init(key: "\(a).context_length", value: .uint32(UInt32(c.maxPositions))),
            .init(key: "\(a).embedding_length", value: .uint32(UInt32(c.hiddenSize))),
            .init(key: "\(a).feed_forward_length", value: .uint32(UInt32(c.intermediateSize))),
            .init(key: "\(a).attention.head_count", value: .uint32(UInt32(c.heads))),
            .init(key: "\(a).attention.head_count_kv", value: .uint32(UInt32(c.kvHeads))),
        ]
        if case .linear(let factor)? = c.ropeScaling {
            m.append(.init(key: "\(a).rope.scaling.type", value: .string("linear")))
            m.append(.init(key: "\(a).rope.scaling.factor", value: .float32(Float(factor))))
        }
        m.append(.init(key: "\(a).rope.freq_base", value: .float32(Float(c.ropeTheta))))
        m.append(.init(key: "\(a).attention.layer_norm_rms_epsilon", value: .float32(c.rmsNormEps)))
        if json["head_dim"]?.intValue != nil {
            m.append(.init(key: "\(a).attention.key_length", value: .uint32(UInt32(c.headDim))))
            m.append(.init(key: "\(a).attention.value_length", value: .uint32(UInt32(c.headDim))))
        }
        m.append(.init(key: "general.file_type", value: .uint32(fileType.id)))
        m.append(.init(key: "\(a).vocab_size", value: .uint32(UInt32(c.vocabularySize))))
        m.append(.init(key: "\(a).rope.dimension_count", value: .uint32(UInt32(c.headDim))))
        return m
    }
}

/// A Hugging Face byte-level BPE tokenizer as GGUF `tokenizer.ggml.*` keys, as llama.cpp's
/// converter writes it (`_set_vocab_gpt2` and gguf-py's `SpecialVocab`):
///
/// - `tokens`: the vocabulary by id, `config.json`'s `vocab_size` long (ids no token has are
///   `[PAD<id>]`, type unused); `token_type`: 3 (control) for added tokens marked special or
///   looking special (`<|...|>`, `<unused...>`, `<pad>`, `<mask>`), 4 (user-defined) for other
///   added tokens, 1 (normal) for the rest; `merges` as `"a b"` (spaces inside a part written as
///   U+0120, as gguf-py does);
/// - `pre`: the llama.cpp pre-tokenizer that tokenizes a check text (digits, contractions in
///   both cases, punctuation runs, emoji, several scripts) exactly as `tokenizer.json` does,
///   among `gpt-2`, `llama-bpe`, `qwen2` and `smollm`, trying first the one tokenizer.json's
///   `pre_tokenizer` spells (llama.cpp's converter identifies it by hashing the ids of its own
///   check text; this finds the same family for these pre-tokenizers and refuses the others);
/// - `bos`/`eos`/`unknown`/`padding_token_id` from `tokenizer_config.json`'s `*_token` (looked
///   up among the added tokens), else `config.json`'s `*_token_id`; `add_bos_token` and
///   `add_eos_token` from the post-processor (ByteLevel: false; TemplateProcessing: whether its
///   single-sequence template starts with BOS and ends with EOS, so false for a bare `$A`; the
///   converter writes nothing there), else `tokenizer_config.json`'s;
///   `add_space_prefix` from `tokenizer_config.json`'s `add_prefix_space`; the chat template from
///   `tokenizer_config.json` or `chat_template.jinja`.
///
/// Any other `tokenizer.json` (SentencePiece BPE with byte fallback, Unigram, WordPiece), or
/// none, is an error saying the tokenizer cannot be written yet.
public struct GGUFVocabulary: Sendable {
    public var tokens: [String]
    public var tokenTypes: [Int32]
    public var merges: [String]
    public var pre: String
    public var bos: Int?, eos: Int?, unk: Int?, pad: Int?
    public var addBOS: Bool?, addEOS: Bool?, addSpacePrefix: Bool?
    public var chatTemplate: String?

    /// The pre-tokenizers tried, in order.
    public static let preCandidates = ["gpt-2", "llama-bpe", "qwen2", "smollm"]

    /// Text on which llama.cpp's byte-level pre-tokenizers disagree: digit runs, contractions in
    /// both cases, punctuation runs, emoji, several scripts. It has no runs of whitespace, which
    /// llama.cpp splits differently from Hugging Face's tokenizers whatever the pre-tokenizer.
    public static let checkText = "rocket 🚀 (normal) 😶‍🌫️ (joined emoji) ✅ 🦙🦙 7 77 777 7777 77777 777777 7777777 77777777 "
        + "1.5 1..5 1...5 ភាសាខ្មែរ😁 ?我要在apple上班42天～ ------======= текст на български ''''''``````\"\"\"\"......!!!!!!?????? "
        + "I've said 'ok' she's here, 'RE you sure? 'M fine, 'D you like tea? We'Ve go'T a'lL 'S 't 'll ALL-CAPS "
        + "CamelCase snake_case x86_64 3x4 2nd\ttab\nline Ünïcödé naïve café 0 00 000 0000 1,000,000 2024 007 3.14159"

    /// Reads `folder`'s `tokenizer.json` (and `tokenizer_config.json`, `config.json`,
    /// `chat_template.jinja`); `vocabularySize` is config.json's `vocab_size`.
    public init(huggingFaceFolder folder: URL, vocabularySize: Int) throws {
        let tokenizerURL = folder.appendingPathComponent("tokenizer.json")
        func bad(_ m: String) -> ModelFileError { ModelFileError(file: tokenizerURL.path, message: m) }
        guard let data = try? Data(contentsOf: tokenizerURL) else {
            throw ModelFileError(file: folder.path, message: "no tokenizer.json: the tokenizer cannot be written to GGUF (Lathe writes byte-level BPE tokenizer.json vocabularies)")
        }
        let json: JSONValue
        do { json = try JSONParser.parse([UInt8](data)) } catch { throw bad("not valid JSON: \(error)") }
        let model = json["model"]
        let isByteLevel = Self.mentionsByteLevel(json["pre_tokenizer"]) || json["decoder"]?["type"]?.stringValue == "ByteLevel"
        guard model?["type"]?.stringValue == "BPE", isByteLevel, model?["byte_fallback"]?.boolValue != true else {
            let kind = model?["type"]?.stringValue ?? "unknown"
            throw bad("the tokenizer (\(kind)\(kind == "BPE" ? " without a byte-level pre-tokenizer" : "")) cannot be written to GGUF yet: Lathe writes byte-level BPE vocabularies only")
        }
        guard let vocab = model?["vocab"]?.objectMembers else { throw bad("model.vocab is missing") }
        var byID = [String?](repeating: nil, count: vocabularySize)
        func place(_ token: String, _ id: Int) throws {
            guard id >= 0, id < vocabularySize else {
                throw bad("token \(GGUFValue.string(token)) has id \(id), outside config.json's vocab_size \(vocabularySize)")
            }
            byID[id] = token
        }
        for (token, value) in vocab {
            guard let id = value.intValue else { throw bad("model.vocab[\(token)] is not an integer") }
            try place(token, id)
        }
        var types = [Int32](repeating: 1, count: vocabularySize)
        var addedContents: [(content: String, id: Int)] = []
        for entry in json["added_tokens"]?.arrayValue ?? [] {
            guard let id = entry["id"]?.intValue, let content = entry["content"]?.stringValue else { throw bad("an added token has no id or content") }
            try place(content, id)
            types[id] = (entry["special"]?.boolValue ?? false) || Self.looksSpecial(content) ? 3 : 4
            addedContents.append((content, id))
        }
        tokens = byID.enumerated().map { i, t in
            if let t { return t }
            types[i] = 5
            return "[PAD\(i)]"
        }
        tokenTypes = types
        // Merges: "a b" strings, or [a, b] pairs (tokenizers >= 0.20) joined with a space.
        var merges: [String] = []
        for (i, m) in (model?["merges"]?.arrayValue ?? []).enumerated() {
            if let s = m.stringValue {
                merges.append(s)
            } else if let pair = m.arrayValue, pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue {
                func escaped(_ s: String) -> String { String(String.UnicodeScalarView(s.unicodeScalars.map { $0 == " " ? "\u{120}" : $0 })) }
                merges.append(escaped(a) + " " + escaped(b))
            } else {
                throw bad("model.merges[\(i)] is neither \"a b\" nor [a, b]")
            }
        }
        self.merges = merges

        // Special tokens and flags.
        let tokenizerConfig = Self.readJSON(folder.appendingPathComponent("tokenizer_config.json"))
        let modelConfig = Self.readJSON(folder.appendingPathComponent("config.json"))
        func special(_ kind: String) -> Int? {
            let entry = tokenizerConfig?["\(kind)_token"]
            if let content = entry?.stringValue ?? entry?["content"]?.stringValue,
               let id = addedContents.first(where: { $0.content == content })?.id {
                return id
            }
            if let id = modelConfig?["\(kind)_token_id"]?.intValue, id >= 0, id < vocabularySize { return id }
            return nil
        }
        (bos, eos, unk, pad) = (special("bos"), special("eos"), special("unk"), special("pad"))
        var addBOS: Bool?, addEOS: Bool?
        let post = json["post_processor"]
        for processor in post?["processors"]?.arrayValue ?? (post.map { [$0] } ?? []) {
            switch processor["type"]?.stringValue {
            case "ByteLevel"?:
                addBOS = addBOS ?? false
                addEOS = addEOS ?? false
            case "TemplateProcessing"?:
                let single = processor["single"]?.arrayValue ?? []
                func specialID(_ item: JSONValue?) -> Int? {
                    guard let content = item?["SpecialToken"]?["id"]?.stringValue else { return nil }
                    return addedContents.first { $0.content == content }?.id ?? vocab.first { $0.key == content }?.value.intValue
                }
                if !single.isEmpty {
                    let first = specialID(single.first), last = specialID(single.last)
                    addBOS = first != nil && first == bos
                    addEOS = last != nil && last == eos
                }
            default: break
            }
        }
        if addBOS == nil { addBOS = tokenizerConfig?["add_bos_token"]?.boolValue }
        if addEOS == nil { addEOS = tokenizerConfig?["add_eos_token"]?.boolValue }
        (self.addBOS, self.addEOS) = (addBOS, addEOS)
        addSpacePrefix = tokenizerConfig?["add_prefix_space"]?.boolValue
        if let template = tokenizerConfig?["chat_template"]?.stringValue {
            chatTemplate = template
        } else if let text = try? String(contentsOf: folder.appendingPathComponent("chat_template.jinja"), encoding: .utf8) {
            chatTemplate = text
        }

        // The pre-tokenizer: the candidate that tokenizes the check text as tokenizer.json does.
        let reference: any Tokenizer
        do { reference = try loadTokenizer(contentsOf: tokenizerURL) } catch { throw bad("Lathe cannot read this tokenizer: \(error)") }
        let want = reference.encode(Self.checkText, addSpecialTokens: false)
        var found: String?
        // The family tokenizer.json's pre-tokenizer spells first, then the others.
        let guess = Self.preGuess(json["pre_tokenizer"])
        for candidate in (guess.map { [$0] } ?? []) + Self.preCandidates {
            guard let t = try? BPETokenizer(ggufModel: "gpt2", pre: candidate, tokens: tokens, merges: merges, tokenTypes: tokenTypes,
                                           bos: bos, eos: eos, unk: unk, pad: pad, addBOS: false, addEOS: false) else { continue }
            if t.encode(Self.checkText, addSpecialTokens: false) == want {
                found = candidate
                break
            }
        }
        guard let found else {
            throw bad("the pre-tokenizer matches none of llama.cpp's \(Self.preCandidates.joined(separator: ", ")): the tokenizer cannot be written to GGUF yet")
        }
        pre = found
    }

    /// The `tokenizer.*` keys, in the converter's order.
    public var metadata: [GGUFKeyValue] {
        var m: [GGUFKeyValue] = []
        if let addSpacePrefix { m.append(.init(key: "tokenizer.ggml.add_space_prefix", value: .bool(addSpacePrefix))) }
        m += [
            .init(key: "tokenizer.ggml.model", value: .string("gpt2")),
            .init(key: "tokenizer.ggml.pre", value: .string(pre)),
            .init(key: "tokenizer.ggml.tokens", value: .array(.string(tokens))),
            .init(key: "tokenizer.ggml.token_type", value: .array(.int32(tokenTypes))),
            .init(key: "tokenizer.ggml.merges", value: .array(.string(merges))),
        ]
        for (key, id) in [("bos", bos), ("eos", eos), ("unknown", unk), ("padding", pad)] {
            if let id { m.append(.init(key: "tokenizer.ggml.\(key)_token_id", value: .uint32(UInt32(id)))) }
        }
        if let addBOS { m.append(.init(key: "tokenizer.ggml.add_bos_token", value: .bool(addBOS))) }
        if let addEOS { m.append(.init(key: "tokenizer.ggml.add_eos_token", value: .bool(addEOS))) }
        if let chatTemplate { m.append(.init(key: "tokenizer.chat_template", value: .string(chatTemplate))) }
        return m
    }

    /// The llama.cpp pre-tokenizer that tokenizer.json's `pre_tokenizer` spells: GPT-2's
    /// ByteLevel regex alone (`gpt-2`), digits apart then ByteLevel (`smollm`), or a Split regex
    /// that groups up to three digits (`llama-bpe`) or takes them one by one (`qwen2`) before a
    /// regex-free ByteLevel.
    static func preGuess(_ v: JSONValue?) -> String? {
        guard let v else { return nil }
        let parts = v["type"]?.stringValue == "Sequence" ? (v["pretokenizers"]?.arrayValue ?? []) : [v]
        let types = parts.map { $0["type"]?.stringValue ?? "" }
        if types == ["ByteLevel"], parts[0]["use_regex"]?.boolValue ?? true { return "gpt-2" }
        if types == ["Digits", "ByteLevel"], parts[0]["individual_digits"]?.boolValue == true { return "smollm" }
        if types == ["Split", "ByteLevel"], let regex = parts[0]["pattern"]?["Regex"]?.stringValue {
            if regex.contains("\\p{N}{1,3}") { return "llama-bpe" }
            if regex.contains("\\p{N}|") { return "qwen2" }
        }
        return nil
    }

    static func mentionsByteLevel(_ v: JSONValue?) -> Bool {
        guard let v else { return false }
        if v["type"]?.stringValue == "ByteLevel" { return true }
        return (v["pretokenizers"]?.arrayValue ?? []).contains { mentionsByteLevel($0) }
    }

    /// gguf-py's `does_token_look_special`.
    static func looksSpecial(_ t: String) -> Bool {
        ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].contains(t) || (t.hasPrefix("<|") && t.hasSuffix("|>"))
            || (t.hasPrefix("<｜") && t.hasSuffix("｜>")) || (t.hasPrefix("<unused") && t.hasSuffix(">"))
    }

    static func readJSON(_ url: URL) -> JSONValue? {
        guard let data = try? Data(contentsOf: url) else { return nil }
        return try? JSONParser.parse([UInt8](data))
    }
}
