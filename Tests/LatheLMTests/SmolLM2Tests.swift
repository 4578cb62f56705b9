import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// SmolLM2-135M-Instruct from its GGUF file (Tools/fetch-models fetches it), against llama.cpp.
final class SmolLM2Tests: XCTestCase {
    /// Loaded once for the class's tests.
    nonisolated(unsafe) static var loaded: DecoderModel?
    static func model() throws -> DecoderModel {
        if let loaded { return loaded }
        let m = try DecoderModel.load(gguf: try fetchedModel(file))
        loaded = m
        return m
    }

    static let file = "SmolLM2-135M-Instruct.Q4_1.gguf"

    func testGreedyContinuesTheCapitalOfFranceWithParis() throws {
        let model = try Self.model()
        XCTAssertEqual(model.config.architecture, "llama")
        XCTAssertEqual(model.config.ropeLayout, .pairs)
        XCTAssertTrue(model.config.tieWordEmbeddings)
        // "The capital of France is" in llama.cpp's ids; " Paris" "." follow.
        let prompt = [504, 3575, 282, 4649, 314]
        let r = generate(model, prompt: prompt, options: GenerationOptions(maxTokens: 2, stopTokens: []))
        XCTAssertEqual(r.tokens, [7042, 30])
        // The Q4_1 matrices and the Q8_0 tied embedding stay quantized (float parameters: the
        // norms; the table and the output projection share one quantized copy); the same model
        // dequantised to float32 has every weight as a parameter, and the same logits up to the
        // order of the sums.
        XCTAssertEqual(model.parameterCount(), 61 * 576)
        XCTAssertEqual(model.namedModules.filter { $0.1 is QuantizedEmbedding }.count, 1)
        XCTAssertGreaterThan(model.namedModules.filter { $0.1 is WeightOnlyLinear }.count, 200)
        let dense = try DecoderModel.load(gguf: try fetchedModel(Self.file), quantized: false)
        XCTAssertEqual(dense.parameterCount(), 134_515_008)
        XCTAssertFalse(dense.namedModules.contains { $0.1 is WeightOnlyLinear })
        let a = model.logits(prompt).scalars, b = dense.logits(prompt).scalars
        XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max()!, 2e-3)
    }
}

extension SmolLM2Tests {
    /// llama-perplexity (context 512, 2 threads) on the same ids printed a running estimate of
    /// 37.2067 after 4 chunks ([4]) and 38.5247 +/- 1.600 after all 23.
    func testPerplexityOfFourChunksIsWithinOnePercentOfLlamaCpp() throws {
        let model = try Self.model()
        let json = try JSONParser.parse([UInt8](Data(contentsOf: fixturesDirectory.appendingPathComponent("llm/smollm2/shakespeare-40k-ids.json"))))
        let ids = try XCTUnwrap(json["ids"]?.arrayValue?.compactMap(\.intValue))
        XCTAssertEqual(ids.count, 12190)
        let r = try Perplexity.evaluate(model, tokens: Array(ids.prefix(4 * 512)), context: 512, bos: nil)
        XCTAssertEqual(r.chunks, 4)
        XCTAssertEqual(r.perplexity, 37.2067, accuracy: 0.01 * 37.2067, "llama.cpp: 37.2067")
        print(String(format: "SmolLM2 perplexity, 4 chunks of 512: %.4f (llama.cpp 37.2067), %.0f tokens/s", r.perplexity, r.tokensPerSecond))
    }
}

extension SmolLM2Tests {
    /// The GGUF file's chat template, rendered and tokenized, gives the ids transformers'
    /// `apply_chat_template(…, add_generation_prompt=True, tokenize=True)` gives with the
    /// tokenizer it builds from the same file.
    func testChatPromptIDsAreTransformers() throws {
        let pretrained = try PretrainedModel.load(try fetchedModel(Self.file).path)
        let template = try pretrained.parsedChatTemplate()
        let text = try pretrained.renderChat(template, messages: [ChatMessage(role: "user", content: "What is the capital of France?")])
        XCTAssertTrue(text.hasPrefix("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"), text)
        XCTAssertEqual(pretrained.chatPromptIDs(text), [
            1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182, 2, 198,
            1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
        ])
        XCTAssertTrue(pretrained.chatStopTokens.contains(2), "<|im_end|> ends a turn")
    }
}
