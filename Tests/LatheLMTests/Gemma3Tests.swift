import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// Gemma 3 270M (Q4_K_M GGUF: Q8_0, Q5_0, Q4_K and Q6_K tensors; `Tools/fetch-models gemma3`
/// fetches it) against llama.cpp.
final class Gemma3Tests: XCTestCase {
    func testGreedyContinuationIsLlamaCpps() throws {
        let model = try DecoderModel.load(gguf: try fetchedModel("gemma-3-270m-q4_k_m.gguf"))
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
