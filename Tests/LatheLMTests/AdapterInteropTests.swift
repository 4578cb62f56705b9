import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// Adapters of mlx-lm (Tools/reference/make_mlx_adapter_fixtures.py: made and applied by mlx-lm
/// itself) and llama.cpp's GGUF LoRA adapters: they load through `loadAdapter(at:)`, give the
/// reference logits, and convert to PEFT and GGUF without changing what they compute.
final class AdapterInteropTests: XCTestCase {
    let lora = fixturesDirectory.appendingPathComponent("lora")
    let tinyFolder = fixturesDirectory.appendingPathComponent("llm/llama-tiny")

    func base() throws -> DecoderModel { try DecoderModel.load(huggingFaceFolder: tinyFolder) }

    func json(_ url: URL) throws -> JSONValue { try JSONParser.parse([UInt8](Data(contentsOf: url))) }

    func maxAbs(_ a: [Float], _ b: [Float]) -> Float {
        XCTAssertEqual(a.count, b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
    }

    /// The fixture's ids and logits.
    func expected(_ name: String) throws -> (ids: [[Int]], logits: [Float]) {
        let e = try json(lora.appendingPathComponent(name).appendingPathComponent("expected.json"))
        let ids = e["ids"]?.arrayValue?.map { $0.arrayValue?.compactMap(\.intValue) ?? [] } ?? []
        return (ids, e["logits"]?.arrayValue?.compactMap { $0.doubleValue.map(Float.init) } ?? [])
    }

    /// Both forwards of `model` against `logits` on `ids`; returns the larger gap.
    func gap(_ model: DecoderModel, _ ids: [[Int]], _ logits: [Float]) throws -> Float {
        let training = try noGrad { try model.trainingLogits(Tensor(ids.flatMap { $0 }, shape: [ids.count, ids[0].count])) }.scalars
        let inference = ids.flatMap { model.logits($0).scalars }
        return max(maxAbs(training, logits), maxAbs(inference, logits))
    }

    // MARK: - mlx-lm

    func testMLXLoRAAndDoRAGiveMLXLMsLogits() throws {
        for (name, layers, scaling, dora) in [("llama-mlx-lora", 7, Float(20), false), ("llama-mlx-dora", 4, Float(2.5), true)] {
            let model = try base()
            let (config, format) = try model.loadAdapter(at: lora.appendingPathComponent(name))
            XCTAssertEqual(format, .mlx)
            XCTAssertEqual(config.useDoRA, dora)
            XCTAssertEqual(model.loraLayers.count, layers, name)
            XCTAssertTrue(model.loraLayers.allSatisfy { $0.1.scaling == scaling }, "\(name): scale is the multiplier")
            let (ids, logits) = try expected(name)
            let worst = try gap(model, ids, logits)
            XCTAssertLessThan(worst, 1e-4, name)
            print("\(name): max |Lathe - mlx-lm| logits \(worst)")
        }
        // num_layers 1, no keys: every linear layer of the last block and nothing else.
        let model = try base()
        try model.loadAdapter(at: lora.appendingPathComponent("llama-mlx-lora"))
        XCTAssertTrue(model.loraLayers.allSatisfy { $0.0.hasPrefix("model.layers.1.") })
    }

    /// Converted to a PEFT folder, the mlx-lm adapter holds lora_aᵀ and lora_bᵀ and computes the same.
    func testMLXAdapterEqualsItsPEFTConversion() throws {
        for name in ["llama-mlx-lora", "llama-mlx-dora"] {
            let source = lora.appendingPathComponent(name)
            let out = try temporaryDirectory().appendingPathComponent(name)
            let summary = try AdapterConversion.convert(base: tinyFolder.path, adapter: source, to: .peft(out))
            XCTAssertEqual(summary.format, .mlx)
            XCTAssertEqual(try AdapterFormat.detect(out), .peft)
            let mlx = try SafeTensors.read(contentsOf: source.appendingPathComponent(MLXAdapter.weightsFile)).tensors
            let peft = try SafeTensors.read(contentsOf: out.appendingPathComponent(PEFTAdapter.weightsFile)).tensors
            XCTAssertEqual(peft.count, mlx.count)
            for (key, t) in mlx {
                let path = String(key[..<key.lastIndex(of: ".")!])
                let peftName = PEFTAdapter.prefix + path + (key.hasSuffix(".lora_a") ? ".lora_A.weight" : key.hasSuffix(".lora_b") ? ".lora_B.weight" : ".lora_magnitude_vector")
                let expected = t.rank == 2 ? t.transposed(0, 1).contiguous() : t
                XCTAssertEqual(peft[peftName]?.shape, expected.shape, peftName)
                XCTAssertEqual(peft[peftName]?.scalars, expected.scalars, peftName)
            }
            let viaMLX = try base(), viaPEFT = try base()
            try viaMLX.loadAdapter(at: source)
            XCTAssertEqual(try viaPEFT.loadAdapter(at: out).format, .peft)
            let ids = [5, 17, 3, 88, 41, 2, 9]
            XCTAssertEqual(viaMLX.logits(ids).scalars, viaPEFT.logits(ids).scalars, name)
        }
    }

    func testMLXConfigReadsAndRefuses() throws {
        func config(_ text: String) throws -> MLXAdapterConfig { try MLXAdapterConfig(json: JSONParser.parse(text)) }
        let c = try config(#"{"fine_tune_type": "dora", "num_layers": 8, "lora_parameters": {"rank": 16, "alpha": 32, "scale": 10.0, "dropout": 0.05, "keys": ["self_attn.q_proj"]}, "model": "m"}"#)
        XCTAssertEqual(c, MLXAdapterConfig(useDoRA: true, rank: 16, scale: 10, dropout: 0.05, numLayers: 8, keys: ["self_attn.q_proj"], baseModel: "m"))
        XCTAssertTrue(c.allows("model.layers.29.self_attn.q_proj", blocks: 30))
        XCTAssertFalse(c.allows("model.layers.21.self_attn.q_proj", blocks: 30), "outside the last 8 blocks")
        XCTAssertFalse(c.allows("model.layers.29.self_attn.k_proj", blocks: 30), "not a key")
        XCTAssertEqual(c.loraConfig(paths: ["b", "a"]).scaling(for: "a"), 10)
        XCTAssertEqual(try config(#"{"lora_layers": -1, "use_dora": true, "lora_parameters": {"rank": 2, "scale": 1}}"#).numLayers, -1, "older keys")
        XCTAssertTrue(try config(#"{"num_layers": -1, "lora_parameters": {"rank": 2, "scale": 1}}"#).allows("model.layers.0.mlp.up_proj", blocks: 4))
        let cases = [
            (#"{"fine_tune_type": "full", "num_layers": 4, "lora_parameters": {"rank": 8, "scale": 20}}"#, "fine_tune_type is full"),
            (#"{"fine_tune_type": "ia3", "lora_parameters": {"rank": 8, "scale": 20}}"#, "Lathe reads lora and dora"),
            (#"{"fine_tune_type": "lora", "num_layers": 4}"#, "lora_parameters is missing"),
            (#"{"lora_parameters": {"rank": 8, "alpha": 16}}"#, "uses scale, the multiplier itself, not alpha"),
            (#"{"lora_parameters": {"rank": 0, "scale": 20}}"#, "rank must be in 1...65536"),
            (#"{"lora_parameters": {"rank": 8, "scale": 1e300}}"#, "finite float32"),
            (#"{"lora_parameters": {"rank": 8, "scale": 2, "dropout": 1}}"#, "dropout must be a number in [0, 1)"),
            (#"{"lora_parameters": {"rank": 8, "scale": 2, "keys": []}}"#, "keys is an empty list"),
            (#"{"num_layers": "all", "lora_parameters": {"rank": 8, "scale": 2}}"#, "num_layers must be an integer"),
            (#"[1]"#, "expected a JSON object"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try config(text), text) { XCTAssertTrue("\($0)".contains(message), "expected '\(message)' in: \($0)") }
        }
        // Tensors the config does not allow, or that are no adapter's.
        let mlx = try config(#"{"num_layers": 1, "lora_parameters": {"rank": 2, "scale": 1, "keys": ["self_attn.q_proj"]}}"#)
        let a = Tensor.zeros([64, 2]), b = Tensor.zeros([2, 64])
        let tensorCases: [([String: Tensor], String)] = [
            (["model.layers.0.self_attn.q_proj.lora_a": a, "model.layers.0.self_attn.q_proj.lora_b": b], "excludes"),
            (["model.layers.1.self_attn.k_proj.lora_a": a, "model.layers.1.self_attn.k_proj.lora_b": b], "excludes"),
            (["model.layers.1.self_attn.q_proj.weight": b], "not an adapter tensor"),
            (["model.layers.1.self_attn.q_proj.m": Tensor.zeros([64])], "fine_tune_type is not dora"),
            (["model.layers.1.self_attn.q_proj.lora_a": Tensor.zeros([4, 64, 2])], "mixture-of-experts"),
            ([:], "holds no adapter tensors"),
        ]
        for (tensors, message) in tensorCases {
            XCTAssertThrowsError(try MLXAdapter.peftEquivalent(config: mlx, tensors: tensors, blocks: 2)) {
                XCTAssertTrue("\($0)".contains(message), "expected '\(message)' in: \($0)")
            }
        }
        // A wrong rank reaches the shape check, and the model is left alone.
        let dir = try temporaryDirectory()
        let source = lora.appendingPathComponent("llama-mlx-lora")
        try FileManager.default.copyItem(at: source.appendingPathComponent(MLXAdapter.weightsFile), to: dir.appendingPathComponent(MLXAdapter.weightsFile))
        let text = try String(contentsOf: source.appendingPathComponent(MLXAdapter.configFile), encoding: .utf8)
        try text.replacingOccurrences(of: "\"rank\": 4", with: "\"rank\": 3").write(to: dir.appendingPathComponent(MLXAdapter.configFile), atomically: true, encoding: .utf8)
        let model = try base()
        XCTAssertThrowsError(try model.loadAdapter(at: dir)) { XCTAssertTrue("\($0)".contains("the config and the base layer imply"), "\($0)") }
        XCTAssertTrue(model.loraLayers.isEmpty)
        XCTAssertThrowsError(try AdapterFormat.detect(try temporaryDirectory())) { XCTAssertTrue("\($0)".contains("has neither"), "\($0)") }
    }

    // MARK: - llama.cpp GGUF adapters

    /// PEFT's llama-lora fixture (rank_pattern, alpha_pattern) written as a llama.cpp adapter:
    /// names, ggml shapes, metadata, Llama's q/k rows in RoPE-pair order, and read back to
    /// PEFT's logits.
    func testGGUFAdapterRoundTrip() throws {
        let source = lora.appendingPathComponent("llama-lora")
        let out = try temporaryDirectory().appendingPathComponent("adapter.gguf")
        let summary = try AdapterConversion.convert(base: tinyFolder.path, adapter: source, to: .gguf(out, type: .f32))
        XCTAssertEqual(summary.layers.count, 8)
        let file = try GGUFFile(contentsOf: out)
        XCTAssertEqual(try file.string("general.architecture"), "llama")
        XCTAssertEqual(try file.string("general.type"), "adapter")
        XCTAssertEqual(try file.string("adapter.type"), "lora")
        XCTAssertEqual(try file.string("general.name"), "llama-lora")
        // The first layer (model.layers.0.self_attn.q_proj: r 4, scaling 2) sets alpha = scaling · r.
        XCTAssertEqual(try file.float("adapter.lora.alpha"), 8)
        XCTAssertEqual(file.tensors.count, 16)
        XCTAssertEqual(file.tensors.first?.name, "blk.0.attn_output.weight.lora_a", "block by block, by name")
        let q = try XCTUnwrap(file.tensorInfo(named: "blk.0.attn_q.weight.lora_a"))
        XCTAssertEqual(q.dimensions, [64, 4], "lora_a: ggml [in, r]")
        XCTAssertEqual(q.type, .f32)
        XCTAssertEqual(file.tensorInfo(named: "blk.0.attn_q.weight.lora_b")?.dimensions, [4, 64], "lora_b: ggml [r, out]")
        XCTAssertEqual(file.tensorInfo(named: "blk.1.ffn_down.weight.lora_a")?.dimensions, [96, 2])
        XCTAssertEqual(file.tensorInfo(named: "blk.1.ffn_down.weight.lora_b")?.dimensions, [2, 64])
        XCTAssertNil(file.tensorInfo(named: "blk.0.attn_k.weight.lora_a"))
        let peft = try SafeTensors.read(contentsOf: source.appendingPathComponent(PEFTAdapter.weightsFile)).tensors
        // q's lora_b rows as llama.cpp's converter permutes q (4 heads); scaling 8 / 4 = alpha / r: no fold.
        let qB = try XCTUnwrap(peft["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"])
        let permuted = try GGUFExport.halvesToPairs(qB.scalars, rows: 64, heads: 4, name: "q")
        XCTAssertEqual(try file.tensor(named: "blk.0.attn_q.weight.lora_b").scalars, permuted)
        XCTAssertNotEqual(permuted, qB.scalars)
        XCTAssertEqual(try file.tensor(named: "blk.0.attn_q.weight.lora_a").scalars,
                       peft["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]?.scalars)
        // o_proj has alpha_pattern 16 (scaling 4 at r 4; the file's alpha 8 gives 2): lora_b doubled.
        let oB = try XCTUnwrap(peft["base_model.model.model.layers.0.self_attn.o_proj.lora_B.weight"])
        XCTAssertEqual(try file.tensor(named: "blk.0.attn_output.weight.lora_b").scalars, oB.scalars.map { $0 * 2 })
        // Read back: PEFT's logits.
        let model = try base()
        let (config, format) = try model.loadAdapter(at: out)
        XCTAssertEqual(format, .gguf)
        XCTAssertEqual(config.rank, 4)
        XCTAssertEqual(config.rankPattern.count, 2, "the two down_proj layers of rank 2")
        let e = try json(source.appendingPathComponent("expected.json"))
        let ids = e["ids"]?.arrayValue?.map { $0.arrayValue?.compactMap(\.intValue) ?? [] } ?? []
        let worst = try gap(model, ids, e["logits"]?.arrayValue?.compactMap { $0.doubleValue.map(Float.init) } ?? [])
        XCTAssertLessThan(worst, 1e-4)
        print("llama-lora via GGUF: max |Lathe - PEFT| logits \(worst)")
        // f16 tensors: half the bytes, logits within f16's rounding.
        let half = out.deletingLastPathComponent().appendingPathComponent("adapter-f16.gguf")
        try AdapterConversion.convert(base: tinyFolder.path, adapter: source, to: .gguf(half, type: .f16))
        XCTAssertEqual(try GGUFFile(contentsOf: half).tensorInfo(named: "blk.0.attn_q.weight.lora_a")?.type, .f16)
        let m16 = try base()
        try m16.loadAdapter(at: half)
        XCTAssertLessThan(maxAbs(m16.logits(ids[0]).scalars, model.logits(ids[0]).scalars), 0.02)
    }

    /// mlx-lm's LoRA through GGUF: mlx-lm's logits again.
    func testMLXAdapterThroughGGUFKeepsItsLogits() throws {
        let out = try temporaryDirectory().appendingPathComponent("mlx.gguf")
        try AdapterConversion.convert(base: tinyFolder.path, adapter: lora.appendingPathComponent("llama-mlx-lora"), to: .gguf(out, type: .f32))
        XCTAssertEqual(try GGUFFile(contentsOf: out).float("adapter.lora.alpha"), 80, "scale 20 · r 4")
        let model = try base()
        try model.loadAdapter(at: out)
        let (ids, logits) = try expected("llama-mlx-lora")
        XCTAssertLessThan(try gap(model, ids, logits), 1e-4)
    }

    func testGGUFAdapterErrors() throws {
        let dir = try temporaryDirectory()
        // DoRA has no GGUF form.
        XCTAssertThrowsError(try AdapterConversion.convert(base: tinyFolder.path, adapter: lora.appendingPathComponent("llama-mlx-dora"),
                                                           to: .gguf(dir.appendingPathComponent("d.gguf"), type: .f32))) {
            XCTAssertTrue("\($0)".contains("no DoRA magnitudes"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("d.gguf").path))
        func write(_ metadata: [GGUFKeyValue], _ tensors: [(String, [Int])]) throws -> URL {
            let url = dir.appendingPathComponent("t\(UUID().uuidString).gguf")
            try GGUFWriter.write(to: url, metadata: metadata, tensors: tensors.map { GGUFTensorDescriptor(name: $0.0, dimensions: $0.1, type: .f32) }) { _, _ in }
            return url
        }
        let good: [GGUFKeyValue] = [.init(key: "general.architecture", value: .string("llama")), .init(key: "general.type", value: .string("adapter")),
                                    .init(key: "adapter.type", value: .string("lora")), .init(key: "adapter.lora.alpha", value: .float32(8))]
        let pair = [("blk.0.attn_q.weight.lora_a", [64, 4]), ("blk.0.attn_q.weight.lora_b", [4, 64])]
        let cases: [([GGUFKeyValue], [(String, [Int])], String)] = [
            ([good[0]], pair, "general.type is missing, not 'adapter'"),
            ([good[0], good[1], .init(key: "adapter.type", value: .string("cvec"))], pair, "adapter.type is 'cvec'"),
            ([.init(key: "general.architecture", value: .string("qwen2"))] + good.dropFirst(), pair, "the adapter is for architecture 'qwen2'"),
            (good + [.init(key: "adapter.alora.invocation_tokens", value: .array(.uint32([1, 2])))], pair, "activated LoRA"),
            (good, [pair[0]], "has no lora_b"),
            (good, pair + [("blk.0.attn_norm.weight", [64])], "replaces a norm weight"),
            (good, pair + [("blk.0.attn_q.weight.lora_c", [4])], "neither a .lora_a nor a .lora_b"),
            (good, [("blk.0.attn_q.weight.lora_a", [64, 4]), ("blk.0.attn_q.weight.lora_b", [3, 64])], "are not [in, r] and [r, out]"),
            (good, [("blk.0.attn_q.weight.lora_a", [64, 4]), ("blk.0.attn_q.weight.lora_b", [4, 60])], "has 60 rows"),
            (good, [("blk.0.attn_q.weight.lora_a", [60, 4]), ("blk.0.attn_q.weight.lora_b", [4, 64])], "the config and the base layer imply"),
            (good, [("token_embd.weight.lora_a", [4, 96]), ("token_embd.weight.lora_b", [4, 64])], "token_embd"),
            (good, [("blk.9.attn_q.weight.lora_a", [64, 4]), ("blk.9.attn_q.weight.lora_b", [4, 64])], "matches none of the model's"),
            (good, [], "has no LoRA tensors"),
        ]
        for (metadata, tensors, message) in cases {
            let url = try write(metadata, tensors)
            let model = try base()
            XCTAssertThrowsError(try model.loadAdapter(at: url), message) { XCTAssertTrue("\($0)".contains(message), "expected '\(message)' in: \($0)") }
            XCTAssertTrue(model.loraLayers.isEmpty)
        }
        // A file that is no GGUF.
        let text = dir.appendingPathComponent("notes.txt")
        try "hello".write(to: text, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try AdapterFormat.detect(text)) { XCTAssertTrue("\($0)".contains("not a GGUF adapter"), "\($0)") }
    }
}
