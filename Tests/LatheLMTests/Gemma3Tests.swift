import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// Gemma 3 270M (Q4_K_M GGUF: Q8_0, Q5_0, Q4_K and Q6_K tensors; `Tools/fetch-models gemma3`
/// fetches it) against llama.cpp.
final class Gemma3Tests: XCTestCase {
    /// Loaded once for the class's tests.
    nonisolated(unsafe) static var loaded: DecoderModel?
    static func model() throws -> DecoderModel {
        if let loaded { return loaded }
        let m = try DecoderModel.load(gguf: try fetchedModel("gemma-3-270m-q4_k_m.gguf"))
        loaded = m
        return m
    }

    func testGreedyContinuationIsLlamaCpps() throws {
        let model = try Self.model()
        let c = model.config
        XCTAssertEqual(c.architecture, "gemma3")
        XCTAssertEqual(c.layers, 18)
        XCTAssertEqual(c.localLayers?.enumerated().filter { !$0.element }.map(\.offset), [5, 11, 17])
        XCTAssertEqual(c.headDim, 256)
        // llama-completion --temp 0: "The capital of France is" + " the capital of the country of France."
        let r = generate(model, prompt: [2, 818, 5279, 529, 7001, 563], options: GenerationOptions(maxTokens: 8, stopTokens: []))
        XCTAssertEqual(r.tokens, [506, 5279, 529, 506, 2891, 529, 7001, 236761])
    }
}

extension Gemma3Tests {
    /// llama-perplexity (context 512, BOS first in every chunk) on the same ids: 40.7019 after 4 chunks.
    func testPerplexityOfFourChunksIsWithinOnePercentOfLlamaCpp() throws {
        let model = try Self.model()
        let json = try JSONParser.parse([UInt8](Data(contentsOf: fixturesDirectory.appendingPathComponent("llm/gemma3/shakespeare-40k-ids.json"))))
        let ids = try XCTUnwrap(json["ids"]?.arrayValue?.compactMap(\.intValue))
        let r = try Perplexity.evaluate(model, tokens: Array(ids.prefix(4 * 512)), context: 512, bos: model.bosTokenID)
        XCTAssertEqual(model.bosTokenID, 2)
        XCTAssertEqual(r.perplexity, 40.7019, accuracy: 0.01 * 40.7019, "llama.cpp: 40.7019")
        print(String(format: "Gemma 3 270M perplexity, 4 chunks of 512: %.4f (llama.cpp 40.7019), %.0f tokens/s", r.perplexity, r.tokensPerSecond))
    }
}
