import Foundation
import LatheText
import XCTest
import _LatheTestSupport

/// Tokenizers loaded from `tokenizer.json` files trained by HF `tokenizers`, checked against
/// its ids and decoded text (Tests/Fixtures/text, Tools/reference/make_tokenizer_fixtures.py).
final class TokenizerJSONTests: XCTestCase {
    func check(_ name: String, as type: (any Tokenizer.Type)? = nil, file: StaticString = #filePath, line: UInt = #line) throws {
        let tokenizer = try loadTokenizer(contentsOf: textFixtures.appendingPathComponent(name + ".json"))
        if let type { XCTAssertTrue(Swift.type(of: tokenizer) == type, "\(name) loads as \(Swift.type(of: tokenizer))", file: file, line: line) }
        checkCases(tokenizer, try loadCases(name), name, file: file, line: line)
    }

    /// ByteLevel pre-tokenizer with the GPT-2 regex, merges as "a b", RoBERTa-style `<mask>`
    /// (lstrip), a single-word normalised added token.
    func testGPT2() throws { try check("bpe-gpt2", as: BPETokenizer.self) }

    /// Split with the Llama 3 regex, ignore_merges, `<|begin_of_text|>` from the template.
    func testLlama3() throws { try check("bpe-llama3") }

    /// NFC, Split with the Qwen2 regex (single digits).
    func testQwen2() throws { try check("bpe-qwen2") }

    /// Digits(individual) then ByteLevel with the regex and add_prefix_space (SmolLM2's shape).
    func testSmolLMShape() throws { try check("bpe-smollm") }

    /// BERT normaliser, BERT pre-tokenizer, `[CLS] … [SEP]`, WordPiece decoder.
    func testWordPiece() throws { try check("wordpiece", as: WordPieceTokenizer.self) }

    /// Llama 2's shape: Prepend + Replace normaliser, BPE over characters with byte fallback,
    /// Replace/ByteFallback/Fuse/Strip decoder.
    func testSentencePieceBPE() throws { try check("spm-bpe", as: BPETokenizer.self) }

    /// Unigram (Viterbi) with a Metaspace pre-tokenizer and byte fallback.
    func testUnigram() throws { try check("spm-unigram", as: UnigramTokenizer.self) }

    func testSpecialTokenIDs() throws {
        let gpt2 = try BPETokenizer(tokenizerJSON: textFixtures.appendingPathComponent("bpe-gpt2.json"))
        XCTAssertEqual(gpt2.eos, gpt2.id(for: "<|endoftext|>"))
        XCTAssertEqual(gpt2.token(for: gpt2.id(for: "<|im_start|>")!), "<|im_start|>")
        XCTAssertEqual(gpt2.token(for: gpt2.id(for: "Ġthe") ?? -1), "Ġthe")
        XCTAssertNil(gpt2.token(for: -1))
        XCTAssertNil(gpt2.token(for: gpt2.vocabularySize))
        XCTAssertTrue(gpt2.isSpecial(gpt2.id(for: "<|im_end|>")!))
        let llama3 = try BPETokenizer(tokenizerJSON: textFixtures.appendingPathComponent("bpe-llama3.json"))
        XCTAssertEqual(llama3.bos, llama3.id(for: "<|begin_of_text|>"))
        let bert = try WordPieceTokenizer(tokenizerJSON: textFixtures.appendingPathComponent("wordpiece.json"))
        XCTAssertEqual(bert.bos, bert.id(for: "[CLS]"))
        XCTAssertEqual(bert.eos, bert.id(for: "[SEP]"))
        XCTAssertEqual(bert.unk, bert.id(for: "[UNK]"))
        XCTAssertEqual(bert.pad, bert.id(for: "[PAD]"))
    }

    func testErrorsNameFileAndPath() throws {
        func error(_ json: String) -> String {
            do {
                _ = try BPETokenizer(tokenizerJSON: Array(json.utf8), source: "t.json")
                return "no error"
            } catch {
                return error.description
            }
        }
        let model = #""model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#
        XCTAssertEqual(error("{}"), "t.json: model: missing or not an object")
        XCTAssertEqual(error("[1"), "t.json: not valid JSON: unexpected end, expected ']' at byte 2")
        XCTAssertEqual(error(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a c"]}}"#),
                       #"t.json: model.merges[0]: token "c" is not in model.vocab"#)
        XCTAssertEqual(error(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [3]}}"#),
                       #"t.json: model.merges[0]: expected a string "a b" or an array [a, b], found a number"#)
        XCTAssertEqual(error(#"{"model": {"type": "WordPiece", "vocab": {}}}"#), "t.json: model.type: expected BPE, found \"WordPiece\"")
        XCTAssertEqual(error("{\(model), \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\d+\"}, \"behavior\": \"Isolated\"}}"),
                       #"t.json: pre_tokenizer.pattern.Regex: unsupported split regex "\d+" (supported: the GPT-2, Llama 3 and Qwen2 patterns)"#)
        XCTAssertEqual(error("{\(model), \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"CTC\"}]}}"),
                       #"t.json: decoder.decoders[0].type: unsupported decoder "CTC" (supported: ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace, WordPiece, BPEDecoder, Sequence)"#)
        XCTAssertEqual(error("{\(model), \"added_tokens\": [{\"id\": 5}]}"), "t.json: added_tokens[0].content: missing")
        XCTAssertEqual(error("{\(model), \"added_tokens\": [{\"id\": 99999999999, \"content\": \"x\"}]}"),
                       "t.json: added_tokens[0].id: id 99999999999 is far past the 3 ids of the model's vocabulary")
        XCTAssertEqual(error("{\(model), \"normalizer\": {\"type\": \"Lowercase\"}}"), "no error")
        XCTAssertThrowsError(try loadTokenizer(contentsOf: URL(fileURLWithPath: "/nonexistent/tokenizer.json"))) { e in
            XCTAssertTrue("\(e)".hasPrefix("/nonexistent/tokenizer.json: cannot read the file"), "\(e)")
        }
    }
}

extension TokenizerJSONTests {
    /// ByteLevel's add_prefix_space: a space in front of each piece that lacks one.
    func testAddPrefixSpace() throws {
        var json = String(decoding: try Data(contentsOf: textFixtures.appendingPathComponent("bpe-smollm.json")), as: UTF8.self)
        let flag = #""add_prefix_space":false"#
        XCTAssertTrue(json.contains(flag))
        json = json.replacingOccurrences(of: flag, with: #""add_prefix_space":true"#)
        let t = try BPETokenizer(tokenizerJSON: Array(json.utf8))
        checkCases(t, try loadCases("bpe-smollm-prefix-space"), "add_prefix_space", minimum: 5)
    }
}

extension TokenizerJSONTests {
    /// A model folder: tokenizer_config.json names the special tokens.
    func testFolderWithConfig() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-text-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: textFixtures.appendingPathComponent("bpe-gpt2.json"), to: dir.appendingPathComponent("tokenizer.json"))
        try Data(#"{"bos_token": {"content": "<|im_start|>"}, "eos_token": "<|im_end|>", "pad_token": null}"#.utf8)
            .write(to: dir.appendingPathComponent("tokenizer_config.json"))
        let t = try loadTokenizer(contentsOf: dir)
        XCTAssertEqual(t.bos, t.id(for: "<|im_start|>"))
        XCTAssertEqual(t.eos, t.id(for: "<|im_end|>"))
        XCTAssertNil(t.pad)
        XCTAssertEqual(try loadTokenizer(contentsOf: dir.appendingPathComponent("tokenizer.json")).eos, t.eos)
        XCTAssertThrowsError(try loadTokenizer(contentsOf: dir.appendingPathComponent("missing"))) { e in
            XCTAssertTrue("\(e)".contains("missing: cannot read the file"), "\(e)")
        }
    }
}
