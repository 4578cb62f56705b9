import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// The fetched models' tokenizers against their references: llama.cpp's `llama-tokenize` for
/// GGUF vocabularies (byte-level BPE: SmolLM2; SentencePiece: Gemma 3) on 40,000 characters of
/// Shakespeare, and `transformers` for MiniLM's tokenizer.json (WordPiece) on twenty sentences.
final class RealTokenizerTests: XCTestCase {
    func shakespeare40k() throws -> String {
        // The first 40,000 code points (Python's text[:40000]).
        String(String.UnicodeScalarView(try CharCorpus.shakespeareText().unicodeScalars.prefix(40_000)))
    }

    func referenceIDs(_ fixture: String) throws -> [Int] {
        let json = try JSONParser.parse([UInt8](Data(contentsOf: fixturesDirectory.appendingPathComponent(fixture))))
        return try XCTUnwrap(json["ids"]?.arrayValue?.compactMap(\.intValue))
    }

    func firstDifference(_ a: [Int], _ b: [Int]) -> String {
        guard let i = zip(a, b).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset else {
            return a.count == b.count ? "none" : "lengths \(a.count) vs \(b.count)"
        }
        return "at \(i): \(Array(a[max(0, i - 3)..<min(a.count, i + 4)])) vs \(Array(b[max(0, i - 3)..<min(b.count, i + 4)]))"
    }

    func testSmolLM2GGUFVocabularyGivesLlamaCppsIDs() throws {
        let tokenizer = try PretrainedModel.ggufTokenizer(GGUFFile(contentsOf: try fetchedModel("SmolLM2-135M-Instruct.Q4_1.gguf")))
        let expected = try referenceIDs("llm/smollm2/shakespeare-40k-ids.json")
        let ids = tokenizer.encode(try shakespeare40k(), addSpecialTokens: true)
        XCTAssertEqual(ids.count, expected.count)
        XCTAssertTrue(ids == expected, "first difference \(firstDifference(ids, expected))")
        XCTAssertEqual(tokenizer.decode(ids), try shakespeare40k())
    }

    func testGemma3GGUFVocabularyGivesLlamaCppsIDs() throws {
        let tokenizer = try PretrainedModel.ggufTokenizer(GGUFFile(contentsOf: try fetchedModel("gemma-3-270m-q4_k_m.gguf")))
        let expected = try referenceIDs("llm/gemma3/shakespeare-40k-ids.json")
        let ids = tokenizer.encode(try shakespeare40k(), addSpecialTokens: true)
        XCTAssertEqual(ids.first, 2, "BOS first")
        XCTAssertTrue(ids == expected, "first difference \(firstDifference(ids, expected))")
        XCTAssertEqual(tokenizer.decode(ids, skipSpecialTokens: true), try shakespeare40k())
    }

    func testMiniLMTokenizerJSONGivesTransformersIDs() throws {
        let tokenizer = try loadTokenizer(contentsOf: try fetchedModel("all-MiniLM-L6-v2").appendingPathComponent("tokenizer.json"))
        let json = try JSONParser.parse([UInt8](Data(contentsOf: fixturesDirectory.appendingPathComponent("llm/minilm-reference.json"))))
        for s in try XCTUnwrap(json["sentences"]?.arrayValue) {
            let text = try XCTUnwrap(s["text"]?.stringValue)
            XCTAssertEqual(tokenizer.encode(text, addSpecialTokens: true), s["ids"]?.arrayValue?.compactMap(\.intValue), text)
        }
    }
}
