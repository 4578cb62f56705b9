import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// Writing models as GGUF: re-quantising a GGUF file (gpt2-tiny) into every file type reads
/// back with logits close to the source's and the tensor types llama-quantize would choose;
/// a Hugging Face Llama folder written as GGUF loads with the folder's logits (and
/// transformers'), and its tokenizer tokenizes as tokenizer.json does.
final class GGUFExportTests: XCTestCase {
    let gpt2 = fixturesDirectory.appendingPathComponent("llm/gpt2-tiny/model.gguf")
    var temporary: URL!

    override func setUpWithError() throws {
        temporary = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-ggufx-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: temporary)
    }

    func maxAbs(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }

    let ids = [99, 5, 17, 42, 8, 63, 12, 90, 3, 77, 31]

    func testRequantizedGPT2ReadsBackCloseToTheSource() throws {
        let source = try GGUFFile(contentsOf: gpt2)
        let reference = try { let m = try GPT2Model.load(gguf: source); return m.logits(ids, cache: m.makeCache(capacity: 16), lastOnly: false) }().scalars
        let scale = reference.map { abs($0) }.max()!
        // Largest logit error relative to the largest logit, per file type (measured, with room).
        // (A random model's logits are small and flat, so these look large; measured: q8_0 0.014,
        // q5_0 0.095, q4_0 0.17, q4_k_m 0.10, q6_k under 0.03.)
        let bounds: [GGUFFileType: Float] = [.f32: 0, .f16: 2e-3, .bf16: 1e-2, .q8_0: 0.03, .q5_0: 0.15, .q5_1: 0.18, .q4_0: 0.25,
                                             .q4_1: 0.25, .q4_K_S: 0.2, .q4_K_M: 0.2, .q5_K_S: 0.2, .q5_K_M: 0.15, .q6_K: 0.05]
        for fileType in GGUFFileType.allCases {
            let url = temporary.appendingPathComponent("gpt2-\(fileType.rawValue).gguf")
            var seen: [GGUFWrittenTensor] = []
            let written = try source.requantize(to: url, rules: GGUFTypeRules(fileType: fileType)) { seen.append($0) }
            XCTAssertEqual(written, seen)
            let file = try GGUFFile(contentsOf: url)
            XCTAssertEqual(file.warnings, [])
            // Metadata copied; the file type set; the quantisation version added.
            XCTAssertEqual(try file.int("general.file_type"), Int(fileType.id))
            XCTAssertEqual(try file.int("general.quantization_version"), 2)
            for kv in source.metadata where kv.key != "general.file_type" { XCTAssertEqual(file.value(kv.key), kv.value, kv.key) }
            XCTAssertEqual(file.tensorNames, source.tensorNames)
            let model = try GPT2Model.load(gguf: file)
            let logits = model.logits(ids, cache: model.makeCache(capacity: 16), lastOnly: false).scalars
            let error = maxAbs(logits, reference) / scale
            XCTAssertLessThanOrEqual(error, bounds[fileType]!, fileType.rawValue)
            // Types: 1-D tensors and position_embd keep F32.
            for info in file.tensors where info.dimensions.count == 1 || info.name == "position_embd.weight" {
                XCTAssertEqual(info.type, .f32, "\(fileType.rawValue) \(info.name)")
            }
            let types = Dictionary(uniqueKeysWithValues: file.tensors.map { ($0.name, $0.type) })
            switch fileType {
            case .q4_0:
                // The tied embedding is the output: Q6_K, which rows of 64 cannot hold -> Q8_0.
                XCTAssertEqual(types["token_embd.weight"], .q8_0)
                XCTAssertEqual(types["blk.0.attn_qkv.weight"], .q4_0)
                XCTAssertEqual(types["blk.1.ffn_down.weight"], .q4_0)
            case .q4_K_M:
                // Rows of 64: Q4_K -> Q5_0, Q5_K (attn_qkv) -> Q5_1; ffn_down's rows of 256 take Q4_K,
                // and Q6_K in the layers use_more_bits picks (of 2: layer 1).
                XCTAssertEqual(types["blk.0.ffn_up.weight"], .q5_0)
                XCTAssertEqual(types["blk.0.attn_qkv.weight"], .q5_1)
                XCTAssertEqual(types["blk.0.ffn_down.weight"], .q4_K)
                XCTAssertEqual(types["blk.1.ffn_down.weight"], .q6_K)
            case .f16:
                XCTAssertEqual(types["token_embd.weight"], .f16)
            default: break
            }
            if fileType == .f32 {
                XCTAssertTrue(written.allSatisfy(\.copied), "an F32 file to F32 copies every tensor")
                XCTAssertEqual(Array(try Data(contentsOf: url)).count, file.fileSize)
            }
        }
    }

    /// Re-quantising to the type a tensor already has copies it byte for byte; quantising twice
    /// to Q8_0 gives the same bytes (ggml's encoder is idempotent on its own output for Q8_0).
    func testSameTypeCopiesAndOverridesApply() throws {
        let source = try GGUFFile(contentsOf: gpt2)
        let q8 = temporary.appendingPathComponent("q8.gguf"), again = temporary.appendingPathComponent("again.gguf")
        try source.requantize(to: q8, rules: GGUFTypeRules(fileType: .q8_0))
        let written = try GGUFFile(contentsOf: q8).requantize(to: again, rules: GGUFTypeRules(fileType: .q8_0))
        XCTAssertTrue(written.allSatisfy(\.copied))
        let a = try GGUFFile(contentsOf: q8), b = try GGUFFile(contentsOf: again)
        for name in a.tensorNames { XCTAssertEqual(Array(try a.tensorData(named: name)), Array(try b.tensorData(named: name)), name) }

        let pure = temporary.appendingPathComponent("pure.gguf")
        try source.requantize(to: pure, rules: GGUFTypeRules(fileType: .q4_0, pure: true, tokenEmbeddingType: .f16))
        let p = try GGUFFile(contentsOf: pure)
        XCTAssertEqual(p.tensorInfo(named: "token_embd.weight")?.type, .f16)
        XCTAssertEqual(p.tensorInfo(named: "blk.0.ffn_down.weight")?.type, .q4_0)
        // An override that does not fit the rows is an error, not a silent fallback.
        XCTAssertThrowsError(try source.requantize(to: pure, rules: GGUFTypeRules(fileType: .q8_0, tokenEmbeddingType: .q6_K))) {
            XCTAssertTrue("\($0)".contains("not whole Q6_K blocks"), "\($0)")
        }
    }

    /// Converting a few rows at a time gives the same bytes as whole tensors.
    func testSlabsGiveTheSameBytes() throws {
        let source = try GGUFFile(contentsOf: gpt2)
        for fileType in [GGUFFileType.q4_K_M, .q8_0, .bf16] {
            let whole = temporary.appendingPathComponent("whole.gguf"), slabs = temporary.appendingPathComponent("slabs.gguf")
            try source.requantize(to: whole, rules: GGUFTypeRules(fileType: fileType))
            _ = try source.requantize(to: slabs, rules: GGUFTypeRules(fileType: fileType), slabElements: 3 * 256)
            XCTAssertEqual(Array(try Data(contentsOf: whole)), Array(try Data(contentsOf: slabs)), fileType.rawValue)
        }
    }

    func testOutputEqualsInputIsAnError() throws {
        let copy = temporary.appendingPathComponent("m.gguf")
        try FileManager.default.copyItem(at: gpt2, to: copy)
        let file = try GGUFFile(contentsOf: copy)
        for target in [copy, temporary.appendingPathComponent("./m.gguf")] {
            XCTAssertThrowsError(try file.requantize(to: target, rules: GGUFTypeRules(fileType: .q8_0))) {
                XCTAssertTrue("\($0)".contains("the output is the input file"), "\($0)")
            }
        }
        XCTAssertEqual(Array(try Data(contentsOf: copy)), Array(try Data(contentsOf: gpt2)))
    }

    /// llama-quantize's choices on a Llama-shaped list of tensors (names only, no data).
    func testTypeRulesFollowLlamaQuantize() throws {
        func tensors(rows: Int, layers: Int, tied: Bool) -> [GGUFTypeRules.Tensor] {
            var t = [GGUFTypeRules.Tensor(name: "token_embd.weight", dimensions: [rows, 1000], type: .f16)]
            // In the converter's string order (blk.10 before blk.2), as SmolLM2's file has them.
            for i in (0..<layers).map(String.init).sorted() {
                for n in ["attn_norm", "ffn_down", "ffn_gate", "ffn_up", "ffn_norm", "attn_k", "attn_output", "attn_q", "attn_v"] {
                    t.append(.init(name: "blk.\(i).\(n).weight", dimensions: n.hasSuffix("norm") ? [rows] : [rows, rows], type: n.hasSuffix("norm") ? .f32 : .f16))
                }
            }
            t.append(.init(name: "output_norm.weight", dimensions: [rows], type: .f32))
            if !tied { t.append(.init(name: "output.weight", dimensions: [rows, 1000], type: .f16)) }
            return t
        }
        let layers = 16
        let t = tensors(rows: 512, layers: layers, tied: false)
        func typeMap(_ rules: GGUFTypeRules, _ t: [GGUFTypeRules.Tensor]) throws -> [String: GGMLType] {
            Dictionary(uniqueKeysWithValues: zip(t.map(\.name), try rules.types(for: t, layers: layers)))
        }
        let km = try typeMap(GGUFTypeRules(fileType: .q4_K_M), t)
        XCTAssertEqual(km["output.weight"], .q6_K)
        XCTAssertEqual(km["token_embd.weight"], .q4_K)
        XCTAssertEqual(km["blk.0.attn_norm.weight"], .f32)
        // use_more_bits(i, 16): i < 2, i >= 14, (i - 2) % 3 == 2 -> 0, 1, 4, 7, 10, 13, 14, 15.
        let heavy = Set([0, 1, 4, 7, 10, 13, 14, 15])
        for i in 0..<layers {
            XCTAssertEqual(km["blk.\(i).ffn_down.weight"], heavy.contains(i) ? .q6_K : .q4_K, "ffn_down \(i)")
            XCTAssertEqual(km["blk.\(i).attn_v.weight"], heavy.contains(i) ? .q6_K : .q4_K, "attn_v \(i)")
            XCTAssertEqual(km["blk.\(i).attn_q.weight"], .q4_K)
        }
        let ks = try typeMap(GGUFTypeRules(fileType: .q4_K_S), t)
        XCTAssertEqual((0..<layers).filter { ks["blk.\($0).attn_v.weight"] == .q5_K }, [0, 1, 2, 3])
        XCTAssertEqual((0..<layers).filter { ks["blk.\($0).ffn_down.weight"] == .q5_K }, [0, 1])
        let q8 = try typeMap(GGUFTypeRules(fileType: .q8_0), t)
        XCTAssertEqual(q8["output.weight"], .q8_0)
        let q4 = try typeMap(GGUFTypeRules(fileType: .q4_0), tensors(rows: 576, layers: layers, tied: true))
        XCTAssertEqual(q4["token_embd.weight"], .q8_0, "tied, rows of 576: Q6_K falls back to Q8_0")
        XCTAssertEqual(q4["blk.3.ffn_down.weight"], .q4_0)
        let q4untied = try typeMap(GGUFTypeRules(fileType: .q4_0), t)
        XCTAssertEqual(q4untied["output.weight"], .q6_K)
        XCTAssertEqual(q4untied["token_embd.weight"], .q4_0)
        // Gemma 3 270M's widths (640, ffn_down 2048 wide): Q4_K -> Q5_0 where 256 does not divide.
        let gemma = [GGUFTypeRules.Tensor(name: "blk.0.attn_q.weight", dimensions: [640, 1024], type: .f32),
                     GGUFTypeRules.Tensor(name: "blk.0.ffn_down.weight", dimensions: [2048, 640], type: .f32),
                     GGUFTypeRules.Tensor(name: "blk.0.attn_output.weight", dimensions: [1024, 640], type: .f32)]
        XCTAssertEqual(try GGUFTypeRules(fileType: .q4_K_M).types(for: gemma, layers: 18), [.q5_0, .q6_K, .q4_K])
        let f16 = try typeMap(GGUFTypeRules(fileType: .f16), t)
        XCTAssertEqual(f16["output.weight"], .f16)
        XCTAssertEqual(f16["blk.0.ffn_norm.weight"], .f32)
    }

    // MARK: - Hugging Face folders

    /// llama-tiny (vocab 96) with its embedding padded to the 560 tokens of the bpe-smollm test
    /// vocabulary (so the folder has a byte-level BPE tokenizer.json); the first 96 logits are
    /// the fixture's.
    func makeLlamaFolder(tokenizer: Bool = true) throws -> URL {
        let source = fixturesDirectory.appendingPathComponent("llm/llama-tiny")
        let folder = temporary.appendingPathComponent("llama-bpe")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let st = try MappedSafeTensors(contentsOf: source.appendingPathComponent("model.safetensors"))
        var tensors: [String: Tensor] = [:]
        for name in st.tensorNames { tensors[name] = try st.float32Tensor(named: name) }
        let embed = tensors["model.embed_tokens.weight"]!
        var rng = SplitMixLM(seed: 3)
        let extra = (0..<(560 - 96) * 64).map { _ in rng.uniform() * 0.04 - 0.02 }
        tensors["model.embed_tokens.weight"] = Tensor(embed.scalars + extra, shape: [560, 64])
        try SafeTensors.write(tensors, metadata: ["format": "pt"], to: folder.appendingPathComponent("model.safetensors"))
        var config = try String(contentsOf: source.appendingPathComponent("config.json"), encoding: .utf8)
        config = config.replacingOccurrences(of: "\"vocab_size\": 96", with: "\"vocab_size\": 560")
        try config.write(to: folder.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        if tokenizer {
            try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("text/bpe-smollm.json"),
                                             to: folder.appendingPathComponent("tokenizer.json"))
            let tc = #"{"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>", "add_prefix_space": false, "#
                + #""chat_template": "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"}"#
            try tc.write(to: folder.appendingPathComponent("tokenizer_config.json"), atomically: true, encoding: .utf8)
        }
        return folder
    }

    func testHuggingFaceLlamaFolderAsGGUF() throws {
        let folder = try makeLlamaFolder()
        let hf = try DecoderModel.load(huggingFaceFolder: folder)
        let prompt = [1, 17, 40, 5, 88, 2, 63]
        let want = hf.logits(prompt).scalars
        // The fixture's transformers logits for its own 96 tokens.
        let expected = try JSONParser.parse([UInt8](Data(contentsOf: fixturesDirectory.appendingPathComponent("llm/llama-tiny/expected.json"))))
        let ePrompt = expected["prompt"]!.arrayValue!.compactMap(\.intValue)
        let eLogits = expected["prompt_logits"]!.arrayValue!.map { $0.arrayValue!.compactMap { $0.doubleValue.map(Float.init) } }

        for (fileType, bound) in [(GGUFFileType.f32, Float(1e-5)), (.f16, 2e-3), (.q8_0, 0.04)] {
            let url = temporary.appendingPathComponent("llama-\(fileType.rawValue).gguf")
            let written = try GGUFExport.write(huggingFaceFolder: folder, to: url, rules: GGUFTypeRules(fileType: fileType))
            let file = try GGUFFile(contentsOf: url)
            XCTAssertEqual(file.warnings, [])
            // The converter's order: tensors by Hugging Face name (blk.0 ..., then output_norm).
            XCTAssertEqual(file.tensorNames.first, "token_embd.weight")
            XCTAssertEqual(file.tensorNames.last, "output_norm.weight")
            XCTAssertEqual(Array(file.tensorNames[1...9]), ["blk.0.attn_norm.weight", "blk.0.ffn_down.weight", "blk.0.ffn_gate.weight",
                                                            "blk.0.ffn_up.weight", "blk.0.ffn_norm.weight", "blk.0.attn_k.weight",
                                                            "blk.0.attn_output.weight", "blk.0.attn_q.weight", "blk.0.attn_v.weight"])
            XCTAssertFalse(file.tensorNames.contains("output.weight"), "tied")
            XCTAssertEqual(written.count, file.tensors.count)
            for info in file.tensors where info.dimensions.count == 1 { XCTAssertEqual(info.type, .f32, info.name) }
            XCTAssertEqual(file.tensorInfo(named: "blk.1.ffn_up.weight")?.type, fileType.defaultType)
            XCTAssertEqual(try file.string("general.architecture"), "llama")
            XCTAssertEqual(try file.int("llama.block_count"), 2)
            XCTAssertEqual(try file.int("llama.attention.head_count_kv"), 2)
            XCTAssertEqual(try file.int("llama.attention.key_length"), 16)
            XCTAssertEqual(try file.int("llama.rope.dimension_count"), 16)
            XCTAssertEqual(try file.float("llama.rope.freq_base"), 100_000)
            XCTAssertEqual(try file.int("llama.vocab_size"), 560)
            XCTAssertEqual(try file.int("general.file_type"), Int(fileType.id))
            XCTAssertEqual(try file.string("tokenizer.ggml.pre"), "smollm")
            XCTAssertEqual(try file.int("tokenizer.ggml.bos_token_id"), 1)
            XCTAssertEqual(try file.int("tokenizer.ggml.eos_token_id"), 2)
            XCTAssertEqual(try file.bool("tokenizer.ggml.add_space_prefix"), false)
            XCTAssertNotNil(try file.string("tokenizer.chat_template"))

            let model = try DecoderModel.load(gguf: file)
            XCTAssertEqual(model.config.ropeLayout, .pairs)
            let got = model.logits(prompt).scalars
            let scale = want.map { abs($0) }.max()!
            XCTAssertLessThanOrEqual(maxAbs(got, want) / scale, bound, fileType.rawValue)
            if fileType == .f32 {
                let rows = model.logits(ePrompt).scalars
                let first96 = (0..<ePrompt.count).flatMap { Array(rows[$0 * 560..<$0 * 560 + 96]) }
                XCTAssertLessThan(maxAbs(first96, eLogits.flatMap { $0 }), 1e-4, "transformers' logits")
                // The tokenizer written to the file tokenizes as tokenizer.json does.
                let json = try loadTokenizer(contentsOf: folder.appendingPathComponent("tokenizer.json"))
                let gguf = try PretrainedModel.ggufTokenizer(file)
                let cases = try JSONParser.parse([UInt8](Data(contentsOf: fixturesDirectory.appendingPathComponent("text/bpe-smollm.cases.json"))))
                // Runs of whitespace are split differently by llama.cpp and Hugging Face (LLM.md).
                let texts = (cases["cases"]?.arrayValue ?? []).compactMap { $0["text"]?.stringValue }.filter { text in
                    !zip(text.unicodeScalars, text.unicodeScalars.dropFirst()).contains { $0.properties.isWhitespace && $1.properties.isWhitespace }
                }
                XCTAssertGreaterThan(texts.count, 20)
                for text in texts + [GGUFVocabulary.checkText] {
                    XCTAssertEqual(gguf.encode(text, addSpecialTokens: false), json.encode(text, addSpecialTokens: false), text)
                }
            }
        }
    }

    /// SmolLM2's GGUF file written as a Hugging Face folder (tokenizer.json included) and that
    /// folder written as GGUF again: the same tensors in the same order, byte for byte, as
    /// converting the GGUF file directly, and the same vocabulary (pre-tokenizer found: smollm).
    func testSmolLM2ThroughAFolderAndBack() throws {
        let smol = try fetchedModel("SmolLM2-135M-Instruct.Q4_1.gguf")
        let source = try GGUFFile(contentsOf: smol)
        let folder = temporary.appendingPathComponent("smollm2-hf")
        try HuggingFaceWriter.write(try PretrainedModel.load(smol.path), to: folder)
        let direct = temporary.appendingPathComponent("direct.gguf"), back = temporary.appendingPathComponent("back.gguf")
        try source.requantize(to: direct, rules: GGUFTypeRules(fileType: .q8_0))
        try GGUFExport.write(huggingFaceFolder: folder, to: back, rules: GGUFTypeRules(fileType: .q8_0))
        let a = try GGUFFile(contentsOf: direct), b = try GGUFFile(contentsOf: back)
        XCTAssertEqual(b.tensorNames, a.tensorNames, "the converter's order is the original file's")
        for name in a.tensorNames {
            XCTAssertEqual(b.tensorInfo(named: name)?.type, a.tensorInfo(named: name)?.type, name)
            XCTAssertTrue(try a.tensorData(named: name).elementsEqual(try b.tensorData(named: name)), name)
        }
        for key in ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
                    "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
                    "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.chat_template",
                    "llama.block_count", "llama.context_length", "llama.embedding_length", "llama.feed_forward_length",
                    "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.freq_base",
                    "llama.attention.layer_norm_rms_epsilon", "llama.vocab_size", "llama.rope.dimension_count", "general.file_type"] {
            XCTAssertEqual(b.value(key), a.value(key), key)
        }
    }

    func testHuggingFaceFoldersThatCannotBeWrittenAreClearErrors() throws {
        let out = temporary.appendingPathComponent("x.gguf")
        let noTokenizer = try makeLlamaFolder(tokenizer: false)
        XCTAssertThrowsError(try GGUFExport.write(huggingFaceFolder: noTokenizer, to: out, rules: GGUFTypeRules(fileType: .f16))) {
            XCTAssertTrue("\($0)".contains("the tokenizer cannot be written to GGUF"), "\($0)")
        }
        // A SentencePiece-style BPE tokenizer.json (byte fallback, no byte-level pre-tokenizer).
        try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("text/spm-bpe.json"),
                                         to: noTokenizer.appendingPathComponent("tokenizer.json"))
        XCTAssertThrowsError(try GGUFExport.write(huggingFaceFolder: noTokenizer, to: out, rules: GGUFTypeRules(fileType: .f16))) {
            XCTAssertTrue("\($0)".contains("cannot be written to GGUF yet"), "\($0)")
        }
        for name in ["llama3-tiny", "qwen2-tiny", "gemma3-tiny"] {
            XCTAssertThrowsError(try GGUFExport.write(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/\(name)"), to: out,
                                                      rules: GGUFTypeRules(fileType: .f16)), name) {
                XCTAssertTrue("\($0)".contains("rope_freqs") || "\($0)".contains("cannot be written as GGUF yet"), "\(name): \($0)")
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }

    func testHalvesToPairsInvertsPairsToHalves() throws {
        let values = (0..<(3 * 8 * 5)).map(Float.init)
        let pairs = try GGUFExport.halvesToPairs(values, rows: 24, heads: 3, name: "q")
        // Head 0, rows: halves order [0..3 | 4..7] -> pairs order 0, 4, 1, 5, 2, 6, 3, 7.
        XCTAssertEqual(stride(from: 0, to: 40, by: 5).map { pairs[$0] / 5 }, [0, 4, 1, 5, 2, 6, 3, 7])
        let back = DecoderModel.pairsToHalves(Tensor(pairs, shape: [24, 5]), heads: 3)
        XCTAssertEqual(back.scalars, values)
    }
}

struct SplitMixLM {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func uniform() -> Float {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Float((z ^ (z >> 31)) >> 40) / Float(1 << 24)
    }
}
