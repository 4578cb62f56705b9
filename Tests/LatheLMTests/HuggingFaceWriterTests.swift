import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// Writing Hugging Face folders: what Lathe writes reads back as the same model (and, checked by
/// Tools/reference/check_hf_export.py, `transformers` loads it with the same logits).
final class HuggingFaceWriterTests: XCTestCase {
    func fixture(_ name: String) -> URL { fixturesDirectory.appendingPathComponent("llm/\(name)") }

    func maxAbs(_ a: Tensor, _ b: Tensor) -> Float {
        XCTAssertEqual(a.shape, b.shape)
        return zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? 0
    }

    func testEveryFamilyRoundTripsExactly() throws {
        let ids = [3, 17, 5, 42, 8, 1, 60]
        for name in ["llama-tiny", "llama3-tiny", "qwen2-tiny", "qwen3-tiny", "mistral-tiny", "gemma2-tiny", "gemma3-tiny"] {
            let original = try DecoderModel.load(huggingFaceFolder: fixture(name))
            let dir = try temporaryDirectory()
            let files = try HuggingFaceWriter.write(.decoder(original), tokenizerSource: fixture(name), to: dir)
            XCTAssertEqual(files.map(\.lastPathComponent), ["config.json", "generation_config.json", "model.safetensors"], name)
            let reloaded = try DecoderModel.load(huggingFaceFolder: dir)
            XCTAssertEqual(reloaded.config, original.config, name)
            XCTAssertEqual(maxAbs(reloaded.logits(ids), original.logits(ids)), 0, name)
            // The tensors are the source file's, under the same names.
            let source = try SafeTensors.read(contentsOf: fixture(name).appendingPathComponent("model.safetensors"))
            let written = try SafeTensors.read(contentsOf: dir.appendingPathComponent("model.safetensors"))
            XCTAssertEqual(Set(written.tensors.keys), Set(source.tensors.keys).subtracting(["lm_head.weight"]).union(
                original.config.tieWordEmbeddings ? [] : ["lm_head.weight"]), name)
            for (k, t) in written.tensors { XCTAssertEqual(t.scalars, source.tensors[k]!.scalars, "\(name) \(k)") }
            XCTAssertEqual(written.metadata["format"], "pt", "transformers needs format=pt")
        }
    }

    func testShardsAndHalfPrecision() throws {
        let original = try DecoderModel.load(huggingFaceFolder: fixture("qwen2-tiny"))
        let dir = try temporaryDirectory()
        let files = try HuggingFaceWriter.write(.decoder(original), to: dir, options: .init(dtype: .bfloat16, maxShardBytes: 40_000))
        let shards = files.filter { $0.pathExtension == "safetensors" }
        XCTAssertGreaterThan(shards.count, 2)
        XCTAssertEqual(shards.first?.lastPathComponent, "model-00001-of-\(String(format: "%05d", shards.count)).safetensors")
        XCTAssertTrue(files.contains { $0.lastPathComponent == "model.safetensors.index.json" })
        let index = try JSONParser.parse([UInt8](Data(contentsOf: dir.appendingPathComponent("model.safetensors.index.json"))))
        XCTAssertEqual(index["weight_map"]?.objectMembers?.count, original.namedParameters.count)
        XCTAssertEqual(index["metadata"]?["total_size"]?.intValue, original.parameterCount() * 2)
        let config = try JSONParser.parse([UInt8](Data(contentsOf: dir.appendingPathComponent("config.json"))))
        XCTAssertEqual(config["dtype"]?.stringValue, "bfloat16")
        let reloaded = try DecoderModel.load(huggingFaceFolder: dir)
        for (a, b) in zip(reloaded.namedParameters, original.namedParameters) {
            XCTAssertEqual(a.0, b.0)
            XCTAssertEqual(a.1.value.scalars, b.1.value.to(.bfloat16).to(.float32).scalars, a.0)
        }
    }

    /// llama.cpp's converter permutes Llama's q/k rows (`reshape(heads, 2, d/2, -1).swapaxes(1, 2)`)
    /// for adjacent-pair RoPE. A model built that way must match the Hugging Face one, and write
    /// back the Hugging Face rows.
    func testGGUFPairLayoutIsWrittenInHuggingFaceOrder() throws {
        let original = try DecoderModel.load(huggingFaceFolder: fixture("llama3-tiny"))
        var config = original.config
        config.ropeLayout = .pairs
        var weights = Dictionary(uniqueKeysWithValues: original.namedParameters.map { ($0.0, $0.1.value) })
        func permute(_ t: Tensor, heads: Int) -> Tensor {
            let d = t.shape[0] / heads, rest = t.shape[1]
            return t.reshaped([heads, 2, d / 2, rest]).permuted([0, 2, 1, 3]).contiguous().reshaped(t.shape)
        }
        for (k, v) in weights where k.hasSuffix("q_proj.weight") { weights[k] = permute(v, heads: config.heads) }
        for (k, v) in weights where k.hasSuffix("k_proj.weight") { weights[k] = permute(v, heads: config.kvHeads) }
        let pairs = try DecoderModel(config: config, weights: weights)
        let ids = [3, 17, 5, 42, 8]
        XCTAssertLessThan(maxAbs(pairs.logits(ids), original.logits(ids)), 1e-5)
        let dir = try temporaryDirectory()
        try HuggingFaceWriter.write(.decoder(pairs), to: dir)
        let written = try SafeTensors.read(contentsOf: dir.appendingPathComponent("model.safetensors"))
        for (k, p) in original.namedParameters { XCTAssertEqual(written.tensors[k]?.scalars, p.value.scalars, k) }
        let reloaded = try DecoderModel.load(huggingFaceFolder: dir)
        XCTAssertEqual(reloaded.config.ropeLayout, .halves)
        XCTAssertLessThan(maxAbs(reloaded.logits(ids), original.logits(ids)), 1e-5)
    }

    /// GGUF's Gemma norms carry the `+1` Hugging Face adds at run time; the written folder must not.
    func testGGUFGemmaNormsLoseTheBakedOffset() throws {
        let original = try DecoderModel.load(huggingFaceFolder: fixture("gemma3-tiny"))
        var config = original.config
        (config.architecture, config.normOffset) = ("gemma3", 0)
        var weights = Dictionary(uniqueKeysWithValues: original.namedParameters.map { ($0.0, $0.1.value) })
        for (k, v) in weights where k.hasSuffix("norm.weight") { weights[k] = v + 1 }
        let gguf = try DecoderModel(config: config, weights: weights)
        let ids = [3, 17, 5, 42, 8, 9, 10]
        XCTAssertLessThan(maxAbs(gguf.logits(ids), original.logits(ids)), 1e-4)
        let dir = try temporaryDirectory()
        try HuggingFaceWriter.write(.decoder(gguf), to: dir)
        let json = try JSONParser.parse([UInt8](Data(contentsOf: dir.appendingPathComponent("config.json"))))
        XCTAssertEqual(json["model_type"]?.stringValue, "gemma3_text")
        let reloaded = try DecoderModel.load(huggingFaceFolder: dir)
        XCTAssertEqual(reloaded.config.localLayers, original.config.localLayers)
        XCTAssertEqual(reloaded.config.queryScale, original.config.queryScale)
        for (k, p) in original.namedParameters {
            XCTAssertLessThan(maxAbs(reloaded.stateDict()[k]!, p.value), 1e-6, k)
        }
        XCTAssertLessThan(maxAbs(reloaded.logits(ids), original.logits(ids)), 1e-4)
    }

    func testBertRoundTripsAndTokenizerFilesAreCopied() throws {
        let source = fixture("bert-tiny")
        let original = try BertModel.load(huggingFaceFolder: source)
        let dir = try temporaryDirectory()
        try HuggingFaceWriter.write(.encoder(original), tokenizerSource: source, to: dir)
        let reloaded = try BertModel.load(huggingFaceFolder: dir)
        XCTAssertEqual(reloaded.config, original.config)
        let file = try SafeTensors.read(contentsOf: source.appendingPathComponent("model.safetensors"))
        let written = try SafeTensors.read(contentsOf: dir.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(Set(written.tensors.keys), Set(file.tensors.keys.filter { !$0.hasPrefix("pooler.") && $0 != "embeddings.position_ids" }))
        for name in ["tokenizer.json", "vocab.txt", "tokenizer_config.json"] {
            let from = source.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: from.path) else { continue }
            XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent(name)), try Data(contentsOf: from), name)
        }
    }

    /// From a GGUF file the folder gets the tokenizer as tokenizer.json, tokenizer_config.json and
    /// special_tokens_map.json, and loads back (`PretrainedModel.load`) with the same ids.
    func testGGUFTokenizerIsWrittenAsTokenizerJSON() throws {
        let source = try PretrainedModel.load(fixture("gpt2-tiny/model.gguf").path)
        let dir = try temporaryDirectory()
        let files = try HuggingFaceWriter.write(source, to: dir)
        XCTAssertEqual(files.map(\.lastPathComponent), ["config.json", "generation_config.json", "model.safetensors",
                                                        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"])
        let loaded = try PretrainedModel.load(dir.path)
        for text in ["the theory", "Hello, world!  \n\tthe end", "numbers 123 and caf\u{e9}", ""] {
            XCTAssertEqual(loaded.tokenizer.encode(text), source.tokenizer.encode(text), text)
            XCTAssertEqual(loaded.tokenizer.decode(source.tokenizer.encode(text)), source.tokenizer.decode(source.tokenizer.encode(text)), text)
        }
        XCTAssertEqual(loaded.tokenizer.eos, source.tokenizer.eos)
        let config = try JSONParser.parse([UInt8](Data(contentsOf: dir.appendingPathComponent("tokenizer_config.json"))))
        XCTAssertEqual(config["tokenizer_class"]?.stringValue, "PreTrainedTokenizerFast")
        XCTAssertEqual(config["eos_token"]?.stringValue, source.tokenizer.token(for: source.tokenizer.eos!))
        XCTAssertEqual(config["model_max_length"]?.intValue, try XCTUnwrap({ if case .gpt2(let g) = source.kind { g.config.maxPositions } else { nil } }()))
        XCTAssertEqual(config["add_bos_token"], .bool(false))

        // A chat template alone (no tokenizer) still goes into tokenizer_config.json.
        let plain = try temporaryDirectory()
        let written = try HuggingFaceWriter.write(source.kind, chatTemplate: "{{ x }}", to: plain)
        XCTAssertEqual(written.last?.lastPathComponent, "tokenizer_config.json")
        XCTAssertFalse(FileManager.default.fileExists(atPath: plain.appendingPathComponent("tokenizer.json").path))
    }

    func testBadTargetsAreClearErrors() throws {
        let model = try DecoderModel.load(huggingFaceFolder: fixture("llama-tiny"))
        let dir = try temporaryDirectory()
        let file = dir.appendingPathComponent("a-file")
        try Data("x".utf8).write(to: file)
        XCTAssertThrowsError(try HuggingFaceWriter.write(.decoder(model), to: file)) { error in
            XCTAssertTrue("\(error)".contains("not a folder"), "\(error)")
        }
        XCTAssertThrowsError(try HuggingFaceWriter.write(.decoder(model), to: dir.appendingPathComponent("x"), options: .init(dtype: .int8))) { error in
            XCTAssertTrue("\(error)".contains("float32, float16 or bfloat16"), "\(error)")
        }
    }
}
