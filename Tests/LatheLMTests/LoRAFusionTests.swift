import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// `LoRAFusion`: a fused float model gives the live adapter's logits; fusing into a quantized
/// GGUF base quantizes each fused layer once from `dequant(W) + delta` and stays close to the live
/// adapter (and far from a fuse that dropped it); adapters keep Hugging Face's row order on a
/// GGUF Llama, whose q/k rows are permuted.
final class LoRAFusionTests: XCTestCase {
    let llm = fixturesDirectory.appendingPathComponent("llm")
    let lora = fixturesDirectory.appendingPathComponent("lora")
    let ids = [1, 17, 40, 5, 88, 2, 63, 9, 31, 77, 44, 12]

    func maxAbs(_ a: [Float], _ b: [Float]) -> Float {
        XCTAssertEqual(a.count, b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
    }

    func testFusedFloatModelGivesTheLiveAdaptersLogits() throws {
        for (adapter, base) in [("llama-lora", "llama-tiny"), ("qwen2-dora", "qwen2-tiny"), ("train-dora/trained", "llama-tiny"),
                                ("train-lora/trained", "llama-tiny")] {
            let out = try temporaryDirectory().appendingPathComponent("fused")
            let basePath = llm.appendingPathComponent(base).path
            let summary = try LoRAFusion.write(base: basePath, adapter: lora.appendingPathComponent(adapter), to: .huggingFace(out, dtype: .float32))
            let live = try DecoderModel.load(huggingFaceFolder: llm.appendingPathComponent(base))
            let plain = live.logits(ids).scalars
            try PEFTAdapter.load(folder: lora.appendingPathComponent(adapter), into: live)
            XCTAssertEqual(summary.fusedLayers, live.loraLayers.map(\.0))
            let fused = try DecoderModel.load(huggingFaceFolder: out)
            XCTAssertTrue(fused.loraLayers.isEmpty)
            let want = live.logits(ids).scalars, got = fused.logits(ids).scalars
            XCTAssertLessThan(maxAbs(got, want), 1e-4, "\(adapter): fused vs live")
            XCTAssertGreaterThan(maxAbs(plain, want), 1e-2, "\(adapter): the adapter changes the logits (so a dropped adapter would fail)")
        }
    }

    /// The in-memory fuse: each layer's fused weight against the formulas written out by hand.
    func testFusedWeightsFollowTheFormulas() throws {
        let model = try DecoderModel.load(huggingFaceFolder: llm.appendingPathComponent("qwen2-tiny"))
        try PEFTAdapter.load(folder: lora.appendingPathComponent("qwen2-dora"), into: model)
        let (path, layer) = try XCTUnwrap(model.loraLayers.first)
        let base = try XCTUnwrap(layer.base as? LinearLayer)
        let w = base.denseWeight.scalars, (out, input) = (base.outFeatures, base.inFeatures)
        let a = layer.loraA.weight.value.scalars, b = layer.loraB.weight.value.scalars, r = layer.rank
        let m = try XCTUnwrap(layer.loraMagnitudeVector).value.scalars
        var expected = [Float](repeating: 0, count: out * input)
        for i in 0..<out {
            var row = [Double](repeating: 0, count: input)
            for j in 0..<input {
                var d = 0.0
                for k in 0..<r { d += Double(b[i * r + k]) * Double(a[k * input + j]) }
                row[j] = Double(w[i * input + j]) + Double(layer.scaling) * d
            }
            let norm = row.map { $0 * $0 }.reduce(0, +).squareRoot()
            for j in 0..<input { expected[i * input + j] = Float(Double(m[i]) / norm * row[j]) }
        }
        XCTAssertLessThan(maxAbs(layer.fusedWeight.scalars, expected), 1e-5, path)
        try model.fuseLoRA()
        XCTAssertTrue(model.module(at: path) is Linear)
        XCTAssertEqual(model.parameterCount(trainableOnly: true), 0, "fused layers are frozen like the base")
    }

    // MARK: - GGUF bases

    /// llama-tiny with its embedding padded to the 560 tokens of the bpe-smollm test vocabulary
    /// and that tokenizer (so that it can be written as GGUF), as a folder and as GGUF files.
    func makeBases(_ dir: URL) throws -> URL {
        let folder = dir.appendingPathComponent("llama-bpe")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let st = try MappedSafeTensors(contentsOf: llm.appendingPathComponent("llama-tiny/model.safetensors"))
        var tensors: [String: Tensor] = [:]
        for name in st.tensorNames { tensors[name] = try st.float32Tensor(named: name) }
        var rng = TestRNG(3)
        tensors["model.embed_tokens.weight"] = Tensor(tensors["model.embed_tokens.weight"]!.scalars + rng.floats((560 - 96) * 64, -0.02, 0.02),
                                                     shape: [560, 64])
        try SafeTensors.write(tensors, metadata: ["format": "pt"], to: folder.appendingPathComponent("model.safetensors"))
        let config = try String(contentsOf: llm.appendingPathComponent("llama-tiny/config.json"), encoding: .utf8)
            .replacingOccurrences(of: "\"vocab_size\": 96", with: "\"vocab_size\": 560")
        try config.write(to: folder.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("text/bpe-smollm.json"),
                                         to: folder.appendingPathComponent("tokenizer.json"))
        return folder
    }

    /// On a GGUF Llama the q/k rows are in llama.cpp's order; the adapter's B rows follow them
    /// in, and come back out in Hugging Face's order.
    func testAdaptersOnAGGUFLlamaKeepHuggingFaceRowOrder() throws {
        let dir = try temporaryDirectory()
        let folder = try makeBases(dir)
        let gguf = dir.appendingPathComponent("base-f32.gguf")
        try GGUFExport.write(huggingFaceFolder: folder, to: gguf, rules: GGUFTypeRules(fileType: .f32))
        let adapter = lora.appendingPathComponent("llama-lora")
        let hf = try DecoderModel.load(huggingFaceFolder: folder), fromGGUF = try DecoderModel.load(gguf: gguf)
        XCTAssertEqual(fromGGUF.config.ropeLayout, .pairs)
        try PEFTAdapter.load(folder: adapter, into: hf)
        try PEFTAdapter.load(folder: adapter, into: fromGGUF)
        XCTAssertLessThan(maxAbs(fromGGUF.logits(ids).scalars, hf.logits(ids).scalars), 1e-4)
        let saved = dir.appendingPathComponent("saved")
        try PEFTAdapter.save(fromGGUF, config: try PEFTAdapter.readConfig(folder: adapter), to: saved)
        let a = try SafeTensors.read(contentsOf: adapter.appendingPathComponent(PEFTAdapter.weightsFile)).tensors
        let b = try SafeTensors.read(contentsOf: saved.appendingPathComponent(PEFTAdapter.weightsFile)).tensors
        assertIdentical(a, b)
    }

    /// QLoRA on a GGUF file loaded quantized (Q4_0 layers, a Q8_0 tied embedding that is also
    /// the output projection): the training forward gives the inference logits, and every adapter
    /// gets a gradient through the quantized head and layers.
    func testQLoRAOnAQuantizedGGUFBase() throws {
        let dir = try temporaryDirectory()
        let base = dir.appendingPathComponent("base-q4_0.gguf")
        try GGUFExport.write(huggingFaceFolder: try makeBases(dir), to: base, rules: GGUFTypeRules(fileType: .q4_0))
        let model = try DecoderModel.load(gguf: base)
        XCTAssertEqual(model.namedModules.filter { $0.1 is WeightOnlyLinear }.count, 14)
        try model.addLoRA(LoRAConfig(targets: .allLinear, rank: 4, alpha: 8), initialization: .kaimingUniform(seed: 3))
        var rng = TestRNG(4)
        for (_, layer) in model.loraLayers {
            let b = layer.loraB.weight.value
            layer.loraB.weight.value = Tensor(rng.floats(b.count, -0.05, 0.05), shape: b.shape)
        }
        let x = Tensor(ids, shape: [1, ids.count])
        XCTAssertLessThan(maxAbs(try model.trainingLogits(x).scalars, model.logits(ids).scalars), 1e-4)
        model.train()
        // The loss fuses the quantized head with the cross-entropy (the head dequantised a chunk of
        // the vocabulary at a time): the value and the gradients of the loss on the whole logits.
        let unfused = Loss.nextTokenCrossEntropy(try model.trainingLogits(x), labels: x)
        unfused.backward()
        let reference = Dictionary(uniqueKeysWithValues: model.loraLayers.map { ($0.0, [$0.1.loraA.weight.grad!, $0.1.loraB.weight.grad!]) })
        model.zeroGrad()
        let loss = try model.loss(x, labels: x)
        XCTAssertEqual(loss.item, unfused.item, accuracy: 1e-5)
        loss.backward()
        for (path, layer) in model.loraLayers {
            for (i, (name, p)) in [("A", layer.loraA.weight), ("B", layer.loraB.weight)].enumerated() {
                XCTAssertGreaterThan(p.grad?.scalars.map(abs).max() ?? 0, 1e-7, "\(path) \(name)")
                assertClose(try XCTUnwrap(p.grad), reference[path]![i], rtol: 1e-3, atol: 1e-6, "\(path) \(name): fused head and loss")
            }
        }
    }

    func testFusingIntoAQuantizedGGUFBaseQuantizesOnceAndStaysClose() throws {
        let dir = try temporaryDirectory()
        let folder = try makeBases(dir)
        let adapter = lora.appendingPathComponent("llama-lora")
        var rng = TestRNG(8)
        let tokens = (0..<256).map { _ in rng.int(3...559) }
        for fileType in [GGUFFileType.q8_0, .q4_0] {
            let base = dir.appendingPathComponent("base-\(fileType.rawValue).gguf")
            try GGUFExport.write(huggingFaceFolder: folder, to: base, rules: GGUFTypeRules(fileType: fileType))
            let live = try DecoderModel.load(gguf: base)
            let plain = try DecoderModel.load(gguf: base)
            try PEFTAdapter.load(folder: adapter, into: live)
            XCTAssertTrue(live.loraLayers.allSatisfy { $0.1.base is WeightOnlyLinear }, "the live adapter runs on the quantized base")

            let out = dir.appendingPathComponent("fused-\(fileType.rawValue).gguf")
            let summary = try LoRAFusion.write(base: base.path, adapter: adapter, to: .gguf(out, rules: GGUFTypeRules(fileType: fileType)))
            XCTAssertEqual(summary.fusedLayers.count, 8)
            let written = Dictionary(uniqueKeysWithValues: summary.tensors.map { ($0.name, $0) })
            for name in ["blk.0.attn_q.weight", "blk.1.attn_v.weight", "blk.0.attn_output.weight", "blk.1.ffn_down.weight"] {
                let t = try XCTUnwrap(written[name])
                XCTAssertFalse(t.copied, "\(name) is fused, so quantized again")
                XCTAssertEqual(t.to, fileType.defaultType, name)
            }
            for name in ["blk.0.attn_k.weight", "blk.0.ffn_up.weight", "token_embd.weight"] {
                XCTAssertEqual(written[name]?.copied, true, "\(name) has no adapter: copied as it was")
            }
            let fused = try DecoderModel.load(gguf: out)
            let kl = try Perplexity.compare(fused, reference: live, tokens: tokens, context: 64, bos: nil).meanKL
            let dropped = try Perplexity.compare(plain, reference: live, tokens: tokens, context: 64, bos: nil).meanKL
            print("\(fileType.rawValue): mean KL fused vs live \(kl), base without the adapter vs live \(dropped)")
            XCTAssertTrue(kl.isFinite && kl > 0, "\(kl)")
            // Measured: q8_0 2.2e-5, q4_0 4.2e-3; a dropped adapter 0.13.
            XCTAssertLessThan(kl, fileType == .q8_0 ? 2e-4 : 1.5e-2)
            XCTAssertLessThan(kl, dropped / 20, "the fused file keeps the adapter")
        }
        // A float folder from the quantized base: dequant(W) + delta, so the live adapter's logits.
        let base = dir.appendingPathComponent("base-q4_0.gguf")
        let out = dir.appendingPathComponent("fused-hf")
        try LoRAFusion.write(base: base.path, adapter: adapter, to: .huggingFace(out, dtype: .float32))
        let live = try DecoderModel.load(gguf: base)
        try PEFTAdapter.load(folder: adapter, into: live)
        XCTAssertLessThan(maxAbs(try DecoderModel.load(huggingFaceFolder: out).logits(ids).scalars, live.logits(ids).scalars), 1e-4)
    }

    /// GPTQ on the fused float model keeps more of the adapter than rounding to nearest.
    func testCalibratedFuseIsCloserThanRoundingToNearest() throws {
        let dir = try temporaryDirectory()
        let base = dir.appendingPathComponent("base-q4_0.gguf")
        try GGUFExport.write(huggingFaceFolder: try makeBases(dir), to: base, rules: GGUFTypeRules(fileType: .q4_0))
        let adapter = lora.appendingPathComponent("llama-lora"), rules = GGUFTypeRules(fileType: .q4_0)
        var rng = TestRNG(11)
        let calibration = (0..<8).map { _ in (0..<64).map { _ in rng.int(3...559) } }
        let tokens = (0..<256).map { _ in rng.int(3...559) }
        let rtn = dir.appendingPathComponent("rtn.gguf"), gptq = dir.appendingPathComponent("gptq.gguf")
        try LoRAFusion.write(base: base.path, adapter: adapter, to: .gguf(rtn, rules: rules))
        let summary = try LoRAFusion.write(base: base.path, adapter: adapter, to: .gguf(gptq, rules: rules), calibration: calibration)
        let written = Dictionary(uniqueKeysWithValues: summary.tensors.map { ($0.name, $0) })
        XCTAssertEqual(written["blk.0.attn_q.weight"]?.to, .q4_0)
        XCTAssertEqual(written["blk.0.attn_q.weight"]?.copied, false)
        XCTAssertEqual(written["blk.0.attn_k.weight"]?.copied, true, "no adapter: copied")
        let live = try DecoderModel.load(gguf: base)
        try PEFTAdapter.load(folder: adapter, into: live)
        let klRTN = try Perplexity.compare(try DecoderModel.load(gguf: rtn), reference: live, tokens: tokens, context: 64, bos: nil).meanKL
        let klGPTQ = try Perplexity.compare(try DecoderModel.load(gguf: gptq), reference: live, tokens: tokens, context: 64, bos: nil).meanKL
        print("fused q4_0: mean KL from the live adapter, round-to-nearest \(klRTN), GPTQ \(klGPTQ)")
        XCTAssertLessThan(klGPTQ, klRTN)
        XCTAssertThrowsError(try LoRAFusion.write(base: base.path, adapter: adapter, to: .gguf(dir.appendingPathComponent("x.gguf"), rules: GGUFTypeRules(fileType: .q8_0)),
                                                  calibration: calibration)) { XCTAssertTrue("\($0)".contains("q4_0 or q4_1"), "\($0)") }
    }

    func testAdapterThatDoesNotFitIsAClearError() throws {
        let out = try temporaryDirectory().appendingPathComponent("fused")
        XCTAssertThrowsError(try LoRAFusion.write(base: llm.appendingPathComponent("llama3-tiny").path, adapter: lora.appendingPathComponent("llama-lora"),
                                                  to: .huggingFace(out, dtype: .float32))) { error in
            XCTAssertTrue("\(error)".contains("shape"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "nothing written")
        XCTAssertThrowsError(try LoRAFusion.write(base: llm.appendingPathComponent("llama-tiny").path, adapter: lora,
                                                  to: .huggingFace(out, dtype: .float32))) { error in
            XCTAssertTrue("\(error)".contains("has neither adapter_model.safetensors (PEFT) nor adapters.safetensors (mlx-lm)"), "\(error)")
        }
        XCTAssertThrowsError(try LoRAFusion.write(base: llm.appendingPathComponent("gpt2-tiny").path, adapter: lora.appendingPathComponent("llama-lora"),
                                                  to: .huggingFace(out, dtype: .float32))) { error in
            XCTAssertTrue("\(error)".contains("adapters apply to Llama-family decoders"), "\(error)")
        }
        let base = llm.appendingPathComponent("llama-tiny")
        XCTAssertThrowsError(try LoRAFusion.write(base: base.path, adapter: lora.appendingPathComponent("llama-lora"),
                                                  to: .huggingFace(base, dtype: .float32))) { error in
            XCTAssertTrue("\(error)".contains("the output is the base model"), "\(error)")
        }
    }
}
