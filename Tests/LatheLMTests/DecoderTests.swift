import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// Tiny random-initialised models of each family (Tools/reference/make_llm_fixtures.py) against
/// the logits of `transformers`, on the prompt and on every cached decoding step.
final class DecoderTests: XCTestCase {
    struct Expected {
        var prompt: [Int], promptLogits: [[Float]], decode: [Int], decodeLogits: [[Float]]
    }

    func expected(_ name: String) throws -> Expected {
        let bytes = try Data(contentsOf: fixturesDirectory.appendingPathComponent("llm/\(name)/expected.json"))
        let json = try JSONParser.parse([UInt8](bytes))
        func ids(_ key: String) -> [Int] { json[key]?.arrayValue?.compactMap(\.intValue) ?? [] }
        func rows(_ key: String) -> [[Float]] { json[key]?.arrayValue?.map { $0.arrayValue?.compactMap { $0.doubleValue.map(Float.init) } ?? [] } ?? [] }
        return Expected(prompt: ids("prompt"), promptLogits: rows("prompt_logits"), decode: ids("decode"), decodeLogits: rows("decode_logits"))
    }

    func maxAbs(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count, "\(a.count) vs \(b.count)")
        return zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    func check(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/\(name)"))
        let e = try expected(name)
        XCTAssertEqual(e.prompt.count, 7)
        let cache = model.makeCache(capacity: 16)
        let prompt = model.logits(e.prompt, cache: cache)
        XCTAssertEqual(prompt.shape, [e.prompt.count, model.vocabularySize])
        XCTAssertLessThan(maxAbs(prompt.scalars, e.promptLogits.flatMap { $0 }), 1e-4, "\(name) prompt", file: file, line: line)
        var cached: [Float] = []
        for (i, id) in e.decode.enumerated() {
            let row = model.logits([id], cache: cache).scalars
            XCTAssertLessThan(maxAbs(row, e.decodeLogits[i]), 1e-4, "\(name) decode step \(i)", file: file, line: line)
            cached += row
        }
        XCTAssertEqual(cache.length, e.prompt.count + e.decode.count)
        // The whole sequence at once gives the cached steps' logits.
        let whole = model.logits(e.prompt + e.decode).scalars.suffix(e.decode.count * model.vocabularySize)
        XCTAssertLessThan(maxAbs(Array(whole), cached), 1e-5, "\(name) with and without the cache", file: file, line: line)
        // Only the last row.
        let last = model.logits(e.prompt, cache: model.makeCache(capacity: 8), lastOnly: true)
        XCTAssertEqual(last.shape, [1, model.vocabularySize])
        XCTAssertLessThan(maxAbs(last.scalars, e.promptLogits.last!), 1e-4, file: file, line: line)
    }

    func testLlamaWithTiedEmbeddings() throws {
        try check("llama-tiny")
        let model = try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/llama-tiny"))
        XCTAssertTrue(model.config.tieWordEmbeddings)
        XCTAssertFalse(model.stateKeys.contains("lm_head.weight"), "a tied head is the embedding, not a second matrix")
        XCTAssertEqual(model.config.eosTokenIDs, [2])
    }

    func testLlama3RopeScalingAndHeadDim() throws {
        try check("llama3-tiny")
        let model = try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/llama3-tiny"))
        XCTAssertEqual(model.config.headDim, 16)
        XCTAssertEqual(model.config.hiddenSize, 48)
        guard case .llama3? = model.config.ropeScaling else { return XCTFail("\(String(describing: model.config.ropeScaling))") }
    }

    func testQwen2Biases() throws {
        try check("qwen2-tiny")
    }

    func testBadFoldersAndConfigsAreClearErrors() throws {
        let dir = try temporaryDirectory()
        XCTAssertThrowsError(try DecoderModel.load(huggingFaceFolder: dir)) { error in
            XCTAssertTrue("\(error)".contains("cannot read config.json"), "\(error)")
        }
        let src = fixturesDirectory.appendingPathComponent("llm/llama-tiny")
        var config = try String(contentsOf: src.appendingPathComponent("config.json"), encoding: .utf8)
        try FileManager.default.copyItem(at: src.appendingPathComponent("model.safetensors"), to: dir.appendingPathComponent("model.safetensors"))
        for (from, to, message) in [("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", "not a multiple of num_key_value_heads 3"),
                                    ("\"model_type\": \"llama\"", "\"model_type\": \"mamba\"", "model_type 'mamba' is not a supported decoder"),
                                    ("\"hidden_size\": 64", "\"hidden_size\": 32", "q_proj.weight has shape [64, 64], the config implies [64, 32]"),
                                    ("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false", "missing tensor lm_head.weight")] {
            XCTAssertTrue(config.contains(from), from)
            try config.replacingOccurrences(of: from, with: to).write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try DecoderModel.load(huggingFaceFolder: dir)) { error in
                XCTAssertTrue("\(error)".contains(message), "\(error)")
            }
        }
        config = "{\"model_type\": \"llama\"}"
        try config.write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try DecoderModel.load(huggingFaceFolder: dir)) { error in
            XCTAssertTrue("\(error)".contains("config.json: num_attention_heads is missing or not an integer"), "\(error)")
        }
    }
}

/// `generate` over a tiny model: greedy is the argmax chain of full-sequence logits; stop
/// tokens, the callback and seeds behave.
final class GenerateTests: XCTestCase {
    func testGreedyIsTheArgmaxChainAndStopsWork() throws {
        let model = try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/qwen2-tiny"))
        let prompt = [5, 17, 42]
        let r = generate(model, prompt: prompt, options: GenerationOptions(maxTokens: 6, stopTokens: []))
        XCTAssertEqual(r.tokens.count, 6)
        XCTAssertEqual(r.stop, .maxTokens)
        var seq = prompt
        for _ in 0..<6 {
            let rows = model.logits(seq)
            seq.append(Sampling.argmax(Array(rows.scalars.suffix(model.vocabularySize))))
        }
        XCTAssertEqual(r.tokens, Array(seq.dropFirst(prompt.count)))
        // The third token as a stop token ends before it.
        let stopped = generate(model, prompt: prompt, options: GenerationOptions(maxTokens: 6, stopTokens: [r.tokens[2]]))
        XCTAssertEqual(stopped.tokens, Array(r.tokens.prefix(2)))
        XCTAssertEqual(stopped.stop, .stopToken(r.tokens[2]))
        var seen: [Int] = []
        let cut = generate(model, prompt: prompt, options: GenerationOptions(maxTokens: 6, stopTokens: [])) { seen.append($0); return seen.count < 3 }
        XCTAssertEqual(cut.tokens, Array(r.tokens.prefix(3)))
        XCTAssertEqual(seen, cut.tokens)
        XCTAssertEqual(cut.stop, .callback)
        // Sampling: the same seed gives the same tokens, another seed (almost surely) others.
        let sampled = GenerationOptions(maxTokens: 12, sampling: SamplingOptions(temperature: 1.5, topK: 50, minP: 0.01), stopTokens: [], seed: 3)
        XCTAssertEqual(generate(model, prompt: prompt, options: sampled).tokens, generate(model, prompt: prompt, options: sampled).tokens)
        var other = sampled
        other.seed = 4
        XCTAssertNotEqual(generate(model, prompt: prompt, options: sampled).tokens, generate(model, prompt: prompt, options: other).tokens)
        // The context bounds the generation.
        let full = generate(model, prompt: Array(repeating: 3, count: 60), options: GenerationOptions(maxTokens: 10, stopTokens: []))
        XCTAssertEqual(full.tokens.count, 5, "max_position_embeddings is 64: 60 fed, 4 more fed, the fifth predicted from the last position")
        XCTAssertEqual(full.stop, .contextFull)
    }

    /// A session reuses the cached prefix a new prompt shares with the last one, and gives the
    /// same tokens as a fresh generation, across cache growth.
    func testSessionReusesTheSharedPrefix() throws {
        for name in ["llama-tiny", "gemma3-tiny"] {  // gemma3-tiny: sliding-window layers too
            let model = try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/\(name)"))
            let options = GenerationOptions(maxTokens: 6, stopTokens: [])
            let session = DecodingSession(model, capacity: 4)
            let turn1 = [5, 9, 33, 2, 17]
            let r1 = session.generate(prompt: turn1, options: options)
            XCTAssertEqual(r1.reusedTokens, 0)
            XCTAssertEqual(r1.tokens, generate(model, prompt: turn1, options: options).tokens, name)
            XCTAssertEqual(session.tokens, Array((turn1 + r1.tokens).prefix(session.cache.length)))
            XCTAssertGreaterThanOrEqual(session.cache.capacity, turn1.count + 6)
            // The next turn: everything so far, one token changed near the end, then more.
            var turn2 = turn1 + r1.tokens
            turn2[turn2.count - 2] = 40
            turn2 += [11, 12, 13]
            let r2 = session.generate(prompt: turn2, options: options)
            XCTAssertEqual(r2.reusedTokens, turn2.count - 5, name)
            XCTAssertEqual(r2.promptTokens, 5)
            XCTAssertEqual(r2.tokens, generate(model, prompt: turn2, options: options).tokens, name)
            // The same prompt again: all but its last token reused, the same continuation.
            let r3 = session.generate(prompt: turn2, options: options)
            XCTAssertEqual(r3.reusedTokens, turn2.count - 1)
            XCTAssertEqual(r3.tokens, r2.tokens)
        }
    }

    /// KL mode: a model against itself is 0 everywhere; against another model with the same
    /// vocabulary, the KL is positive and the summary agrees with the per-model perplexities.
    func testCompareGivesKLAndTopTokenAgreement() throws {
        let a = try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/llama-tiny"))
        let b = try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/qwen2-tiny"))
        var g = RandomGenerator(seed: 5)
        let ids = Tensor.randint([64], low: 0, high: 96, generator: &g).intScalars
        let same = try Perplexity.compare(a, reference: a, tokens: ids, context: 16, bos: 1)
        XCTAssertEqual(same.meanKL, 0, accuracy: 1e-9)
        XCTAssertEqual(same.sameTopToken, 1)
        XCTAssertEqual(same.rmsDelta, 0, accuracy: 1e-9)
        let r = try Perplexity.compare(a, reference: b, tokens: ids, context: 16, bos: 1)
        XCTAssertEqual(r.klDivergences.count, 4 * 7)
        XCTAssertGreaterThan(r.meanKL, 0.01)
        XCTAssertLessThan(r.sameTopToken, 1)
        XCTAssertEqual(r.perplexity.perplexity, try Perplexity.evaluate(a, tokens: ids, context: 16, bos: 1).perplexity, accuracy: 1e-3)
        XCTAssertEqual(r.referencePerplexity.perplexity, try Perplexity.evaluate(b, tokens: ids, context: 16, bos: 1).perplexity, accuracy: 1e-3)
        XCTAssertEqual(KLResult.percentile(r.klDivergences, 1), r.klDivergences.max())
        XCTAssertTrue(r.probabilityDeltas.contains { $0 < 0 } && r.probabilityDeltas.contains { $0 > 0 })
        let gpt2 = try PretrainedModel.loadModel(fixturesDirectory.appendingPathComponent("llm/gpt2-tiny").path)
        guard case .gpt2(let other) = gpt2 else { return XCTFail("not GPT-2") }
        XCTAssertThrowsError(try Perplexity.compare(a, reference: other, tokens: ids, context: 16, bos: nil)) {
            XCTAssertTrue("\($0)".contains("vocabularies differ"), "\($0)")
        }
    }

    func testMinPAndRepetitionPenalty() {
        let p = Sampling.probabilities(logits: [3, 2.9, 0, -1], options: SamplingOptions(temperature: 1, minP: 0.5))
        XCTAssertEqual(p.filter { $0 > 0 }.count, 2)
        XCTAssertEqual(p.reduce(0, +), 1, accuracy: 1e-6)
    }
}

/// llama.cpp's perplexity method on a tiny model, checked against the definition.
final class PerplexityTests: XCTestCase {
    func testChunksBOSAndSecondHalf() throws {
        let model = try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/llama-tiny"))
        var g = TestRNG(5)
        let tokens = (0..<37).map { _ in g.int(3...95) }
        let r = try Perplexity.evaluate(model, tokens: tokens, context: 16, bos: 1)
        XCTAssertEqual(r.chunks, 2)
        XCTAssertEqual(r.tokensScored, 2 * 7, "positions 8..14 of each chunk predict 9..15")
        var nll: [Double] = []
        for c in 0..<2 {
            var chunk = Array(tokens[(c * 16)..<((c + 1) * 16)])
            chunk[0] = 1
            let logits = model.logits(chunk)
            for j in 8..<15 {
                let row = logits.sliced(dim: 0, start: j, end: j + 1).logSoftmax(dim: -1).scalars
                nll.append(-Double(row[tokens[c * 16 + j + 1]]))
            }
        }
        let mean = nll.reduce(0, +) / Double(nll.count)
        XCTAssertEqual(r.meanNLL, mean, accuracy: 1e-5)
        XCTAssertEqual(r.perplexity, exp(mean), accuracy: 1e-4 * exp(mean))
        XCTAssertGreaterThan(r.standardError, 0)
        XCTAssertThrowsError(try Perplexity.evaluate(model, tokens: Array(tokens.prefix(10)), context: 16, bos: 1)) { error in
            XCTAssertTrue("\(error)".contains("at least one chunk"), "\(error)")
        }
        XCTAssertThrowsError(try Perplexity.evaluate(model, tokens: tokens, context: 128, bos: 1))
    }
}

extension DecoderTests {
    func testQwen3QKNormsAndMistralWindow() throws {
        try check("qwen3-tiny")
        try check("mistral-tiny")
        let qwen3 = try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/qwen3-tiny"))
        XCTAssertTrue(qwen3.config.qkNorm)
        XCTAssertFalse(qwen3.config.attentionBias)
        XCTAssertEqual(qwen3.config.headDim, 16)
        let mistral = try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/mistral-tiny"))
        XCTAssertEqual(mistral.config.slidingWindow, 3)
    }

    func testGemma2SoftCappingAndAlternatingWindows() throws {
        try check("gemma2-tiny")
        let model = try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/gemma2-tiny"))
        XCTAssertEqual(model.config.attentionLogitSoftcap, 2)
        XCTAssertEqual(model.config.finalLogitSoftcap, 3)
        XCTAssertEqual(model.config.localLayers, [true, false, true])
        XCTAssertFalse(model.config.qkNorm)
        // The cap matters on this fixture: without it the logits move.
        var uncapped = model.config
        uncapped.attentionLogitSoftcap = nil
        let weights = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.0, $0.1.value) })
        let other = try DecoderModel(config: uncapped, weights: weights)
        let ids = [3, 17, 5, 42, 8, 9]
        let gap = zip(other.logits(ids).scalars, model.logits(ids).scalars).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(gap, 1e-3)
    }

    func testGemma3SandwichNormsQKNormsAndLocalLayers() throws {
        try check("gemma3-tiny")
        let model = try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/gemma3-tiny"))
        let c = model.config
        XCTAssertEqual(c.localLayers, [true, true, true, true, true, false, true])
        XCTAssertEqual(c.window(layer: 0), 4)
        XCTAssertNil(c.window(layer: 5))
        XCTAssertEqual(c.ropeTheta(layer: 0), 10_000)
        XCTAssertEqual(c.ropeTheta(layer: 5), 1_000_000)
        XCTAssertEqual(c.queryScale!, 1 / Float(24).squareRoot(), accuracy: 1e-7)
        XCTAssertTrue(model.stateKeys.contains("model.layers.6.self_attn.q_norm.weight"))
    }
}

/// Adapters wrap a decoder's projections by path (model surgery), as LoRA will.
final class DecoderSurgeryTests: XCTestCase {
    final class Scaled: Module {
        let base: Module
        let factor: Float
        init(_ base: Module, _ factor: Float) { (self.base, self.factor) = (base, factor) }
        override func forward(_ x: Tensor) -> Tensor { base(x) * factor }
    }

    func testProjectionsCanBeWrapped() throws {
        let model = try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/qwen2-tiny"))
        let ids = [3, 8, 1, 40]
        let before = model.logits(ids).scalars
        let paths = ["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj", "model.layers.1.self_attn.o_proj"]
        for path in paths {
            let old = try XCTUnwrap(model.module(at: path))
            try model.setModule(Scaled(old, 1), at: path)
            XCTAssertTrue(model.stateKeys.contains(path + ".base.weight"))
        }
        XCTAssertEqual(model.logits(ids).scalars, before, "an identity wrapper changes nothing")
        try model.setModule(Scaled(try XCTUnwrap(model.module(at: paths[1] + ".base")), 0), at: paths[1])
        XCTAssertNotEqual(model.logits(ids).scalars, before, "the wrapper runs in the projection's place")
        let gpt2 = try PretrainedModel.loadModel(fixturesDirectory.appendingPathComponent("llm/gpt2-tiny").path)
        guard case .gpt2(let g) = gpt2 else { return XCTFail("not GPT-2") }
        try g.setModule(Scaled(try XCTUnwrap(g.module(at: "transformer.h.0.attn.c_attn")), 1), at: "transformer.h.0.attn.c_attn")
        XCTAssertTrue(g.stateKeys.contains("transformer.h.0.attn.c_attn.base.weight"))
    }
}
