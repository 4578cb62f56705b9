import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// SmolLM2-135M-Instruct from its GGUF file (Tools/fetch-models fetches it), against llama.cpp.
final class SmolLM2Tests: XCTestCase {
    static let file = "SmolLM2-135M-Instruct.Q4_1.gguf"

    func testGreedyContinuesTheCapitalOfFranceWithParis() throws {
        let model = try DecoderModel.load(gguf: try fetchedModel(Self.file))
        XCTAssertEqual(model.config.architecture, "llama")
        XCTAssertEqual(model.config.ropeLayout, .pairs)
        XCTAssertTrue(model.config.tieWordEmbeddings)
        XCTAssertEqual(model.parameterCount(), 134_515_008)
        // "The capital of France is" in llama.cpp's ids; " Paris" "." follow.
        let r = generate(model, prompt: [504, 3575, 282, 4649, 314], options: GenerationOptions(maxTokens: 2, stopTokens: []))
        XCTAssertEqual(r.tokens, [7042, 30])
    }
}
