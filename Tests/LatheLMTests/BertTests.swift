import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// BERT encoders against `transformers`: a tiny random one, and all-MiniLM-L6-v2's sentence
/// embeddings (Tools/fetch-models fetches it).
final class BertTests: XCTestCase {
    func testTinyBertHiddenStates() throws {
        let model = try BertModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/bert-tiny"))
        let json = try JSONParser.parse([UInt8](Data(contentsOf: fixturesDirectory.appendingPathComponent("llm/bert-tiny/expected.json"))))
        let ids = json["ids"]!.arrayValue!.compactMap(\.intValue)
        let expected = json["hidden"]!.arrayValue!.flatMap { $0.arrayValue!.compactMap { $0.doubleValue.map(Float.init) } }
        let h = model.hiddenStates(ids)
        XCTAssertEqual(h.shape, [ids.count, 32])
        XCTAssertLessThan(zip(h.scalars, expected).map { abs($0 - $1) }.max()!, 1e-4)
        XCTAssertTrue(model.stateKeys.contains("encoder.layer.1.attention.output.LayerNorm.weight"), "\(model.stateKeys)")
    }

    func testMiniLMSentenceEmbeddingsMatchTransformers() throws {
        let folder = try fetchedModel("all-MiniLM-L6-v2")
        let model = try BertModel.load(huggingFaceFolder: folder)
        let json = try JSONParser.parse([UInt8](Data(contentsOf: fixturesDirectory.appendingPathComponent("llm/minilm-reference.json"))))
        let sentences = try XCTUnwrap(json["sentences"]?.arrayValue)
        XCTAssertEqual(sentences.count, 20)
        var worst: Float = 1
        for s in sentences {
            let ids = s["ids"]!.arrayValue!.compactMap(\.intValue)
            let expected = s["embedding"]!.arrayValue!.compactMap { $0.doubleValue.map(Float.init) }
            let e = model.embed(ids)
            let cosine = zip(e, expected).reduce(0) { $0 + $1.0 * $1.1 }
            worst = min(worst, cosine)
        }
        XCTAssertGreaterThan(worst, 0.9999, "lowest cosine to transformers over 20 sentences")
        // All twenty in one padded batch: the same embeddings (padding is never attended to).
        let all = sentences.map { $0["ids"]!.arrayValue!.compactMap(\.intValue) }
        XCTAssertGreaterThan(Set(all.map(\.count)).count, 3, "sentences of different lengths")
        for (e, ids) in zip(model.embed(batch: all), all) {
            XCTAssertLessThan(zip(e, model.embed(ids)).map { abs($0 - $1) }.max()!, 1e-5)
        }
    }
}
