import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// Batched decoding (``DecoderModel/logits(next:caches:)``, ``BatchDecoder``): several sequences
/// of different lengths, each with its own cache, one decode step for all of them; the same logits
/// and tokens as one sequence at a time, for float and quantized layers, with and without a LoRA
/// adapter. Inside the step every layer computes each row as it computes one row alone (quantized
/// layers with 8-bit activations, float layers with the matrix-vector kernel), so the logits are
/// compared bit for bit.
final class GenerateBatchTests: XCTestCase {
    /// Prompts of different lengths (1 to 11 tokens), ids below 96 (every fixture's vocabulary).
    let prompts: [[Int]] = [[1, 17, 40, 5, 88], [9], [1, 63, 9, 31, 77, 2, 44, 12, 60, 3, 95], [50, 71, 8],
                            [1, 21, 8, 50, 71, 33, 5], [44, 44], [1, 2, 3, 4, 5, 6, 7, 8, 9]]

    func load(_ name: String) throws -> DecoderModel {
        try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/\(name)"))
    }

    /// `model`'s linear layers as group-wise weights decoding with 8-bit activations, as a GGUF
    /// model's are when loaded.
    func quantized(_ model: DecoderModel, bits: Int) throws -> DecoderModel {
        try quantize(model: model, config: QuantizationConfig(scheme: .weightOnly(GroupwiseScheme(bits: bits, groupSize: 32))))
        let layers = model.namedModules.compactMap { $0.1 as? WeightOnlyLinear }
        XCTAssertFalse(layers.isEmpty)
        for layer in layers { layer.int8Activations = true }
        return model
    }

    /// A LoRA adapter on every linear layer with small random B (not the identity).
    func adapted(_ model: DecoderModel, seed: UInt64 = 21) throws -> DecoderModel {
        try model.addLoRA(LoRAConfig(targets: .allLinear, rank: 4, alpha: 8), initialization: .kaimingUniform(seed: 5))
        var rng = TestRNG(seed)
        for (_, layer) in model.loraLayers {
            let b = layer.loraB.weight.value
            layer.loraB.weight.value = Tensor(rng.floats(b.count, -0.05, 0.05), shape: b.shape)
        }
        model.eval()
        return model
    }

    /// The models under test: float (three architectures), int4 and int8 with 8-bit activations,
    /// float and int4 with an adapter.
    func models() throws -> [(String, DecoderModel)] {
        [("llama-tiny", try load("llama-tiny")), ("qwen2-tiny", try load("qwen2-tiny")), ("gemma3-tiny", try load("gemma3-tiny")),
         ("llama-tiny int4", try quantized(try load("llama-tiny"), bits: 4)),
         ("llama-tiny int8", try quantized(try load("llama-tiny"), bits: 8)),
         ("llama-tiny + LoRA", try adapted(try load("llama-tiny"))),
         ("llama-tiny int4 + LoRA", try adapted(try quantized(try load("llama-tiny"), bits: 4)))]
    }

    func testOneStepOfManySequencesEqualsEachAlone() throws {
        for (name, model) in try models() {
            let batched = prompts.map { _ in model.makeCache(capacity: 32) }, single = prompts.map { _ in model.makeCache(capacity: 32) }
            for (p, (a, b)) in zip(prompts, zip(batched, single)) {
                _ = model.logits(p, cache: a, lastOnly: true)
                _ = model.logits(p, cache: b, lastOnly: true)
            }
            var next = [3, 14, 15, 92, 65, 35, 89]
            for step in 0..<3 {
                let rows = model.logits(next: next, caches: batched)
                XCTAssertEqual(rows.shape, [prompts.count, model.vocabularySize])
                let alone = Tensor.concatenated(zip(next, single).map { model.logits([$0], cache: $1, lastOnly: true) }, dim: 0)
                XCTAssertEqual(rows.scalars, alone.scalars, "\(name) step \(step): each row must have its bits alone")
                XCTAssertEqual(batched.map(\.length), single.map(\.length))
                next = next.map { ($0 * 7 + step) % 96 }
            }
        }
    }

    func testBatchDecoderGivesEachPromptItsOwnTokens() throws {
        for (name, model) in try models() {
            // Stop tokens that end some sequences early, so that slots are freed and refilled.
            for stops in [Set<Int>(), Set([7, 19, 33, 58, 80])] {
                let options = GenerationOptions(maxTokens: 12, stopTokens: stops)
                let expected = prompts.map { generate(model, prompt: $0, options: options) }
                for batchSize in [1, 3, 8] {
                    var finished: [Int] = []
                    let got = BatchDecoder(model, batchSize: batchSize, capacity: 8).generate(prompts: prompts, options: options) { i, _ in
                        finished.append(i)
                    }
                    XCTAssertEqual(got.map(\.tokens), expected.map(\.tokens), "\(name) batch \(batchSize) stops \(stops.sorted())")
                    XCTAssertEqual(got.map(\.stop), expected.map(\.stop), "\(name) batch \(batchSize)")
                    XCTAssertEqual(finished.sorted(), Array(prompts.indices))
                }
                if !stops.isEmpty { XCTAssertTrue(expected.contains { $0.tokens.count < 12 }, "\(name): no sequence stopped early") }
            }
        }
    }

    /// A decoder kept between calls reuses each slot's shared prefix and still gives the tokens of
    /// a fresh generation; sampling with a seed gives each prompt its own generation's tokens.
    func testReuseSamplingAndPenalty() throws {
        let model = try load("llama-tiny")
        let decoder = BatchDecoder(model, batchSize: 2)
        let greedy = GenerationOptions(maxTokens: 6, stopTokens: [])
        let first = decoder.generate(prompts: prompts, options: greedy)
        let again = decoder.generate(prompts: prompts.map { [1, 2, 3] + $0 }, options: greedy)
        XCTAssertEqual(again.map(\.tokens), prompts.map { generate(model, prompt: [1, 2, 3] + $0, options: greedy).tokens })
        XCTAssertGreaterThan(again.map(\.reusedTokens).reduce(0, +), 0, "the slots share [1, 2, 3] with their last prompts")
        XCTAssertEqual(first.map(\.tokens), prompts.map { generate(model, prompt: $0, options: greedy).tokens })
        let sampled = GenerationOptions(maxTokens: 8, sampling: SamplingOptions(temperature: 1.2, topK: 20), repetitionPenalty: 1.3,
                                        stopTokens: [], seed: 9)
        XCTAssertEqual(decoder.generate(prompts: prompts, options: sampled).map(\.tokens),
                       prompts.map { generate(model, prompt: $0, options: sampled).tokens })
    }

    /// GPT-2 has no batched step: the protocol's default runs the rows one by one.
    func testOtherLanguageModelsFallBackToOneAtATime() throws {
        let model = try GPT2Model.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/gpt2-tiny"))
        let options = GenerationOptions(maxTokens: 5, stopTokens: [])
        XCTAssertEqual(BatchDecoder(model, batchSize: 4).generate(prompts: prompts, options: options).map(\.tokens),
                       prompts.map { generate(model, prompt: $0, options: options).tokens })
    }

    /// SmolLM2-135M-Instruct's Q4_1 file as loaded (quantized layers, quantized tied head) with a
    /// LoRA adapter: batched greedy answers are the one-at-a-time answers.
    func testSmolLM2QuantizedWithAnAdapter() throws {
        let loaded = try PretrainedModel.load(try fetchedModel("SmolLM2-135M-Instruct.Q4_1.gguf").path)
        let model = try loaded.decoder()
        let texts = ["The capital of France is", "Once upon a time,", "2 + 2 =", "def fibonacci(n):",
                     "Here is a recipe for pancakes:", "The quick brown fox"]
        let ids = texts.map { loaded.tokenizer.encode($0, addSpecialTokens: false) }
        let options = GenerationOptions(maxTokens: 16, stopTokens: Set(model.eosTokenIDs))
        for name in ["base", "LoRA"] {
            if name == "LoRA" { _ = try adapted(model, seed: 3) }
            let session = DecodingSession(model)
            let expected = ids.map { session.generate(prompt: $0, options: options).tokens }
            XCTAssertEqual(BatchDecoder(model, batchSize: 4).generate(prompts: ids, options: options).map(\.tokens), expected, name)
        }
    }
}
