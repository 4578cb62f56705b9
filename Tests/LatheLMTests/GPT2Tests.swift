import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// A tiny random GPT-2 (Tools/reference/make_llm_fixtures.py: gpt2-tiny) as a Hugging Face folder
/// and as a GGUF file in llama.cpp's layout, against the logits of `transformers`.
final class GPT2Tests: XCTestCase {
    let folder = fixturesDirectory.appendingPathComponent("llm/gpt2-tiny")
    var gguf: URL { folder.appendingPathComponent("model.gguf") }

    struct Expected {
        var prompt: [Int], promptLogits: [[Float]], decode: [Int], decodeLogits: [[Float]], text: String, textIDs: [Int]
    }

    func expected() throws -> Expected {
        let json = try JSONParser.parse([UInt8](Data(contentsOf: folder.appendingPathComponent("expected.json"))))
        func ids(_ key: String) -> [Int] { json[key]?.arrayValue?.compactMap(\.intValue) ?? [] }
        func rows(_ key: String) -> [[Float]] { json[key]?.arrayValue?.map { $0.arrayValue?.compactMap { $0.doubleValue.map(Float.init) } ?? [] } ?? [] }
        return Expected(prompt: ids("prompt"), promptLogits: rows("prompt_logits"), decode: ids("decode"), decodeLogits: rows("decode_logits"),
                        text: json["text"]?.stringValue ?? "", textIDs: ids("text_ids"))
    }

    func maxAbs(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count, "\(a.count) vs \(b.count)")
        return zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    /// The prompt's logits and each cached decoding step's within 1e-4 of transformers'; the
    /// whole sequence without a cache within 1e-5 of the cached steps.
    func check(_ model: any LanguageModel, _ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let e = try expected()
        XCTAssertEqual(e.prompt.count, 7)
        let cache = model.makeCache(capacity: 16)
        let prompt = model.logits(e.prompt, cache: cache, lastOnly: false)
        XCTAssertEqual(prompt.shape, [e.prompt.count, model.vocabularySize], file: file, line: line)
        XCTAssertLessThan(maxAbs(prompt.scalars, e.promptLogits.flatMap { $0 }), 1e-4, "\(label) prompt", file: file, line: line)
        var cached: [Float] = []
        for (i, id) in e.decode.enumerated() {
            let row = model.logits([id], cache: cache, lastOnly: false).scalars
            XCTAssertLessThan(maxAbs(row, e.decodeLogits[i]), 1e-4, "\(label) decode step \(i)", file: file, line: line)
            cached += row
        }
        XCTAssertEqual(cache.length, e.prompt.count + e.decode.count, file: file, line: line)
        let all = e.prompt + e.decode
        let whole = model.logits(all, cache: model.makeCache(capacity: all.count), lastOnly: false).scalars.suffix(e.decode.count * model.vocabularySize)
        XCTAssertLessThan(maxAbs(Array(whole), cached), 1e-5, "\(label) with and without the cache", file: file, line: line)
        let last = model.logits(e.prompt, cache: model.makeCache(capacity: 8), lastOnly: true)
        XCTAssertEqual(last.shape, [1, model.vocabularySize], file: file, line: line)
        XCTAssertLessThan(maxAbs(last.scalars, e.promptLogits.last!), 1e-4, "\(label) last row", file: file, line: line)
    }

    func testHuggingFaceFolderGivesTransformersLogits() throws {
        let model = try GPT2Model.load(huggingFaceFolder: folder)
        try check(model, "folder")
        let c = model.config
        XCTAssertEqual([c.vocabularySize, c.hiddenSize, c.intermediateSize, c.layers, c.heads, c.maxPositions], [100, 64, 256, 2, 4, 64])
        XCTAssertEqual(c.activation, "gelu_new")
        XCTAssertTrue(c.tieWordEmbeddings)
        XCTAssertEqual(c.bosTokenID, 99)
        XCTAssertEqual(c.eosTokenIDs, [99])
    }

    func testGGUFGivesTransformersLogitsAndTheFoldersWeights() throws {
        let model = try GPT2Model.load(gguf: gguf)
        try check(model, "GGUF")
        let fromFolder = try GPT2Model.load(huggingFaceFolder: folder)
        XCTAssertEqual(model.config, fromFolder.config)
        let a = model.stateDict(), b = fromFolder.stateDict()
        XCTAssertEqual(Set(a.keys), Set(b.keys))
        for (k, v) in a { XCTAssertEqual(v.scalars, b[k]?.scalars, k) }
    }

    /// The module's names are Hugging Face's; its matrices are [out, in]; huggingFaceTensors()
    /// gives back exactly the file's tensors and huggingFaceConfig reads back to the config.
    func testHuggingFaceTensorsAndConfigRoundTrip() throws {
        let model = try GPT2Model.load(huggingFaceFolder: folder)
        let keys = model.stateKeys
        XCTAssertEqual(keys.first, "transformer.wte.weight")
        for k in ["transformer.wpe.weight", "transformer.h.0.ln_1.weight", "transformer.h.0.attn.c_attn.bias", "transformer.h.1.ln_2.bias",
                  "transformer.h.1.mlp.c_proj.weight", "transformer.ln_f.bias"] {
            XCTAssertTrue(keys.contains(k), k)
        }
        XCTAssertFalse(keys.contains("lm_head.weight"), "a tied head is the embedding, not a second matrix")
        XCTAssertEqual(model.stateDict()["transformer.h.0.attn.c_attn.weight"]?.shape, [192, 64], "Linear's [out, in]")

        let file = try SafeTensors.read(contentsOf: folder.appendingPathComponent("model.safetensors")).tensors
        let exported = model.huggingFaceTensors()
        XCTAssertEqual(exported.map(\.0).sorted(), file.keys.sorted())
        for (k, t) in exported {
            XCTAssertEqual(t.shape, file[k]?.shape, k)
            XCTAssertEqual(t.scalars, file[k]?.scalars, k)
        }
        let config = try GPT2Config.huggingFace(model.huggingFaceConfig, file: "exported")
        XCTAssertEqual(config, model.config)
        XCTAssertEqual(model.huggingFaceConfig["n_inner"], .null)
        let again = try GPT2Model(config: config, huggingFaceWeights: Dictionary(uniqueKeysWithValues: exported))
        let ids = try expected().prompt
        XCTAssertEqual(again.logits(ids).scalars, model.logits(ids).scalars)
    }

    /// HuggingFaceWriter writes the folder's model, and the GGUF file's, back as the fixture's
    /// tensors and a config that reads back to the same model.
    func testHuggingFaceWriterRoundTrips() throws {
        let file = try SafeTensors.read(contentsOf: folder.appendingPathComponent("model.safetensors")).tensors
        let ids = try expected().prompt
        for source in [folder, gguf] {
            let kind = try PretrainedModel.loadModel(source.path)
            guard case .gpt2(let original) = kind else { return XCTFail("\(source.path): \(kind)") }
            let dir = try temporaryDirectory()
            let files = try HuggingFaceWriter.write(kind, tokenizerSource: source, to: dir)
            XCTAssertEqual(Array(files.map(\.lastPathComponent).prefix(3)), ["config.json", "generation_config.json", "model.safetensors"])
            let written = try SafeTensors.read(contentsOf: dir.appendingPathComponent("model.safetensors")).tensors
            XCTAssertEqual(Set(written.keys), Set(file.keys), source.path)
            for (k, t) in written { XCTAssertEqual(t.scalars, file[k]?.scalars, "\(source.path) \(k)") }
            let reloaded = try GPT2Model.load(huggingFaceFolder: dir)
            XCTAssertEqual(reloaded.config, original.config)
            XCTAssertEqual(reloaded.logits(ids).scalars, original.logits(ids).scalars)
            let config = try JSONParser.parse([UInt8](Data(contentsOf: dir.appendingPathComponent("config.json"))))
            XCTAssertEqual(config["layer_norm_epsilon"], .number("1e-05"))
            XCTAssertEqual(config["dtype"]?.stringValue, "float32")
        }
    }

    /// The original `gpt2` file's names (no `transformer.` prefix), its attention-mask buffers
    /// and a stored copy of the tied head load; an untied head is used when the config says so.
    func testOldNamesBuffersAndHeads() throws {
        let model = try GPT2Model.load(huggingFaceFolder: folder)
        let ids = try expected().prompt
        let reference = model.logits(ids).scalars
        let file = try SafeTensors.read(contentsOf: folder.appendingPathComponent("model.safetensors")).tensors
        var old: [String: Tensor] = [:]
        for (k, v) in file { old[String(k.dropFirst("transformer.".count))] = v }
        for i in 0..<2 {
            old["h.\(i).attn.bias"] = Tensor.ones([1, 1, 64, 64])
            old["h.\(i).attn.masked_bias"] = Tensor([-1e4], shape: [])
        }
        old["lm_head.weight"] = file["transformer.wte.weight"]
        XCTAssertEqual(try GPT2Model(config: model.config, huggingFaceWeights: old).logits(ids).scalars, reference)

        var untied = model.config
        untied.tieWordEmbeddings = false
        let head = try GPT2Model(config: untied, huggingFaceWeights: old)
        XCTAssertTrue(head.stateKeys.contains("lm_head.weight"))
        XCTAssertLessThan(maxAbs(head.logits(ids).scalars, reference), 1e-6)
        old["lm_head.weight"] = nil
        XCTAssertThrowsError(try GPT2Model(config: untied, huggingFaceWeights: old)) { error in
            XCTAssertTrue("\(error)".contains("missing tensor lm_head.weight"), "\(error)")
        }
        var both = file
        both["wpe.weight"] = file["transformer.wpe.weight"]
        XCTAssertThrowsError(try GPT2Model(config: model.config, huggingFaceWeights: both)) { error in
            XCTAssertTrue("\(error)".contains("transformer.wpe.weight is in the file both with and without"), "\(error)")
        }
        var extra = file
        extra["transformer.h.0.attn.q_proj.weight"] = Tensor.ones([2])
        XCTAssertThrowsError(try GPT2Model(config: model.config, huggingFaceWeights: extra)) { error in
            XCTAssertTrue("\(error)".contains("1 tensor(s) a GPT-2 does not use: transformer.h.0.attn.q_proj.weight"), "\(error)")
        }
        var transposed = file
        transposed["transformer.h.0.mlp.c_fc.weight"] = file["transformer.h.0.mlp.c_fc.weight"]!.T.contiguous()
        XCTAssertThrowsError(try GPT2Model(config: model.config, huggingFaceWeights: transposed)) { error in
            XCTAssertTrue("\(error)".contains("transformer.h.0.mlp.c_fc.weight has shape [256, 64], the config implies [64, 256]"), "\(error)")
        }
    }

    func testBadConfigsAreClearErrors() throws {
        let dir = try temporaryDirectory()
        try FileManager.default.copyItem(at: folder.appendingPathComponent("model.safetensors"), to: dir.appendingPathComponent("model.safetensors"))
        let config = try String(contentsOf: folder.appendingPathComponent("config.json"), encoding: .utf8)
        for (from, to, message) in [
            ("\"n_head\": 4,", "", "config.json: n_head is missing or not an integer"),
            ("\"n_head\": 4", "\"n_head\": 5", "n_embd 64 is not a multiple of n_head 5"),
            ("\"n_head\": 4", "\"n_head\": 4.5", "n_head is missing or not an integer"),
            ("\"n_layer\": 2", "\"n_layer\": 0", "n_layer is 0; expected a positive size up to 2^24"),
            ("\"n_positions\": 64", "\"n_positions\": 99999999999", "n_positions is 99999999999; expected a positive size up to 2^24"),
            ("\"n_embd\": 64", "\"n_embd\": 4000000", "parameters, more than the limit of 6.87e+10 (2^36)"),
            ("\"n_inner\": null", "\"n_inner\": 128", "transformer.h.0.mlp.c_fc.weight has shape [64, 256], the config implies [64, 128]"),
            ("\"model_type\": \"gpt2\"", "\"model_type\": \"gpt_neo\"", "model_type 'gpt_neo' is not gpt2"),
            ("\"activation_function\": \"gelu_new\"", "\"activation_function\": \"relu\"", "activation_function 'relu' is not supported"),
            ("\"layer_norm_epsilon\": 1e-05", "\"layer_norm_epsilon\": -1", "layer_norm_epsilon must be positive"),
            ("\"scale_attn_by_inverse_layer_idx\": false", "\"scale_attn_by_inverse_layer_idx\": true",
             "scale_attn_by_inverse_layer_idx is true; Lathe's GPT-2 supports only false"),
            ("\"reorder_and_upcast_attn\": false", "\"reorder_and_upcast_attn\": true", "reorder_and_upcast_attn is true"),
            ("\"eos_token_id\": 99", "\"eos_token_id\": 100", "eos_token_id 100 is outside the vocabulary (100 tokens)"),
            ("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false", "missing tensor lm_head.weight"),
        ] {
            XCTAssertTrue(config.contains(from), from)
            try config.replacingOccurrences(of: from, with: to).write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try GPT2Model.load(huggingFaceFolder: dir)) { error in
                XCTAssertTrue("\(error)".contains(message), "\(from) → \(to): \(error)")
            }
        }
        try "[1, 2]".write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try GPT2Model.load(huggingFaceFolder: dir)) { XCTAssertTrue("\($0)".contains("expected a JSON object"), "\($0)") }
    }

    /// GGUF metadata that does not fit the tensors, or is absurd, is an error naming the file.
    func testBadGGUFMetadataIsAClearError() throws {
        let bytes = [UInt8](try Data(contentsOf: gguf))
        let dir = try temporaryDirectory()
        /// The file with the u32 value of `key` replaced.
        func patched(_ key: String, _ value: UInt32) throws -> URL {
            let k = Array(key.utf8)
            guard let at = (0...(bytes.count - k.count)).first(where: { bytes[$0..<($0 + k.count)].elementsEqual(k) }) else {
                XCTFail("\(key) is not in the fixture (was Tools/reference/make_llm_fixtures.py changed?)")
                throw GPT2FixtureError.missingKey(key)
            }
            var b = bytes
            XCTAssertEqual(b[at + k.count], 4, "\(key) is a u32")
            for i in 0..<4 { b[at + k.count + 4 + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
            let url = dir.appendingPathComponent("\(key).gguf")
            try Data(b).write(to: url)
            return url
        }
        for (key, value, message) in [("gpt2.attention.head_count", UInt32(5), "n_embd 64 is not a multiple of n_head 5"),
                                      ("gpt2.block_count", 3, "missing tensor transformer.h.2.ln_1.weight"),
                                      ("gpt2.context_length", 32, "transformer.wpe.weight has shape [64, 64], the config implies [32, 64]"),
                                      ("gpt2.embedding_length", 1 << 30, "n_embd is 1073741824; expected a positive size up to 2^24")] {
            let url = try patched(key, value)
            XCTAssertThrowsError(try GPT2Model.load(gguf: url)) { error in
                XCTAssertTrue("\(error)".contains(url.path), "\(error)")
                XCTAssertTrue("\(error)".contains(message), "\(key): \(error)")
            }
        }
    }

    /// PretrainedModel loads both files as GPT-2 with their tokenizers (the same ids as Hugging
    /// Face's tokenizer), and generate and perplexity run on them.
    func testPretrainedDispatchTokenizersGenerateAndPerplexity() throws {
        let e = try expected()
        for path in [folder.path, gguf.path] {
            let loaded = try PretrainedModel.load(path)
            guard case .gpt2 = loaded.kind else { return XCTFail("\(path): \(loaded.kind)") }
            XCTAssertThrowsError(try loaded.decoder()) { XCTAssertTrue("\($0)".contains("this is a GPT-2"), "\($0)") }
            XCTAssertThrowsError(try loaded.encoder())
            XCTAssertEqual(loaded.tokenizer.encode(e.text, addSpecialTokens: true), e.textIDs, path)
            XCTAssertEqual(loaded.tokenizer.decode(e.textIDs, skipSpecialTokens: false), e.text, path)
            XCTAssertTrue(loaded.chatStopTokens.contains(99))
            let model = try loaded.languageModel()

            // Greedy generation is the argmax chain of whole-sequence logits.
            let prompt = Array(e.textIDs.prefix(5))
            let r = generate(model, prompt: prompt, options: GenerationOptions(maxTokens: 6, stopTokens: []))
            XCTAssertEqual(r.tokens.count, 6)
            var seq = prompt
            for _ in 0..<6 {
                let rows = model.logits(seq, cache: model.makeCache(capacity: seq.count), lastOnly: true)
                seq.append(Sampling.argmax(rows.scalars))
            }
            XCTAssertEqual(r.tokens, Array(seq.dropFirst(prompt.count)), path)
            // A session continues a longer prompt from its cached prefix (learned positions from the cache's length).
            let session = DecodingSession(model, capacity: 8)
            session.generate(prompt: prompt, options: GenerationOptions(maxTokens: 3, stopTokens: []))
            let longer = prompt + Array(r.tokens.prefix(2)) + [5]
            let resumed = session.generate(prompt: longer, options: GenerationOptions(maxTokens: 4, stopTokens: []))
            XCTAssertEqual(resumed.reusedTokens, prompt.count + 2)
            XCTAssertEqual(resumed.tokens, generate(model, prompt: longer, options: GenerationOptions(maxTokens: 4, stopTokens: [])).tokens)
            // The learned positions bound the generation: 60 fed, 4 more, the fifth predicted from position 63.
            let full = generate(model, prompt: Array(repeating: 3, count: 60), options: GenerationOptions(maxTokens: 10, stopTokens: []))
            XCTAssertEqual(full.tokens.count, 5)
            XCTAssertEqual(full.stop, .contextFull)

            let p = try Perplexity.evaluate(model, tokens: e.textIDs, context: 16, bos: nil)
            XCTAssertEqual(p.chunks, 2)
            XCTAssertTrue(p.perplexity > 1 && p.perplexity.isFinite, "\(p.perplexity)")
            XCTAssertThrowsError(try Perplexity.evaluate(model, tokens: e.textIDs, context: 65, bos: nil))
        }
    }
}

/// A fixture that no longer has what a test patches: the test fails, never skips.
enum GPT2FixtureError: Error { case missingKey(String) }
