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

    /// The GGUF vocabularies written as tokenizer.json (as `lathe convert` writes them) read back
    /// as tokenizers that give the GGUF tokenizers' ids, on Shakespeare and on the multilingual
    /// text, and decode them alike.
    func testGGUFVocabulariesWrittenAsTokenizerJSONGiveTheSameIDs() throws {
        let multilingual = try String(contentsOf: fixturesDirectory.appendingPathComponent("text/multilingual.txt"), encoding: .utf8)
        for name in ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"] {
            let gguf = try GGUFFile(contentsOf: try fetchedModel(name))
            let tokenizer = try XCTUnwrap(try PretrainedModel.ggufTokenizer(gguf) as? BPETokenizer)
            let dir = try temporaryDirectory()
            try Data(tokenizer.tokenizerJSON().utf8).write(to: dir.appendingPathComponent("tokenizer.json"))
            try Data(JSONWriter.serialize(tokenizer.tokenizerConfigJSON(chatTemplate: try gguf.string("tokenizer.chat_template"))).utf8)
                .write(to: dir.appendingPathComponent("tokenizer_config.json"))
            let written = try loadTokenizer(contentsOf: dir)
            XCTAssertEqual(written.vocabularySize, tokenizer.vocabularySize, name)
            XCTAssertEqual([written.bos, written.eos, written.pad, written.unk], [tokenizer.bos, tokenizer.eos, tokenizer.pad, tokenizer.unk], name)
            XCTAssertEqual(written.addedTokens, tokenizer.addedTokens, name)
            let specials = tokenizer.addedTokens.prefix(3).map(\.content).joined(separator: "x ") + " " + (tokenizer.addedTokens.last?.content ?? "")
            for (label, text) in [("shakespeare", try shakespeare40k()), ("multilingual", multilingual), ("specials", specials + multilingual + specials)] {
                for special in [true, false] {
                    let expected = tokenizer.encode(text, addSpecialTokens: special)
                    let ids = written.encode(text, addSpecialTokens: special)
                    XCTAssertTrue(ids == expected, "\(name) \(label) special \(special): first difference \(firstDifference(ids, expected))")
                }
                let ids = tokenizer.encode(text, addSpecialTokens: true)
                XCTAssertEqual(written.decode(ids), tokenizer.decode(ids), "\(name) \(label) decode")
                XCTAssertEqual(written.decode(ids, skipSpecialTokens: true), tokenizer.decode(ids, skipSpecialTokens: true), "\(name) \(label) decode")
            }
        }
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
