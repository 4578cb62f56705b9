import Foundation
import LatheIO
import LatheText
import XCTest
import _LatheTestSupport

/// The GGUF entry point (`tokenizer.ggml.*` arrays), checked against the same reference ids as
/// the tokenizer.json files with the matching pre-tokenizer, and SentencePiece BPE against the
/// `sentencepiece` library.
final class GGUFVocabularyTests: XCTestCase {
    func byteLevel(pre: String, addBOS: Bool? = nil) throws -> BPETokenizer {
        let g = try fixtureJSON("bpe.gguf.json")
        return try BPETokenizer(
            ggufModel: "gpt2", pre: pre,
            tokens: g["tokens"]!.arrayValue!.map { $0.stringValue! },
            merges: g["merges"]!.arrayValue!.map { $0.stringValue! },
            tokenTypes: ints(g["token_type"]).map(Int32.init),
            bos: 0, eos: 0, addBOS: addBOS)
    }

    /// Cases whose text uses none of the tokens the GGUF arrays lack.
    func cases(_ name: String, where keep: (String) -> Bool = { _ in true }) throws -> [TokenizerCase] {
        try loadCases(name).filter { !$0.text.contains("<mask>") && !$0.text.contains("hello") && keep($0.text) }
    }

    func testGPT2() throws {
        let t = try byteLevel(pre: "gpt-2")
        checkCases(t, try cases("bpe-gpt2"), "gguf gpt-2")
    }

    func testSmolLM() throws {
        let t = try byteLevel(pre: "smollm")
        checkCases(t, try cases("bpe-smollm"), "gguf smollm")
        XCTAssertEqual(t.encode("12"), t.encode("1", addSpecialTokens: false) + t.encode("2", addSpecialTokens: false))
    }

    func testLlama3() throws {
        let t = try byteLevel(pre: "llama-bpe")
        for c in try cases("bpe-llama3") {
            XCTAssertEqual(t.encode(c.text, addSpecialTokens: false), c.ids, "gguf llama-bpe \"\(visible(c.text))\"")
            XCTAssertEqual(t.encode(c.text), [0] + c.ids, "BOS added by default for llama-bpe")
        }
        XCTAssertEqual(try byteLevel(pre: "llama-bpe", addBOS: false).encode("x"), t.encode("x", addSpecialTokens: false))
    }

    func testQwen2() throws {
        let t = try byteLevel(pre: "qwen2")
        // The tokenizer.json has an NFC normaliser, which llama.cpp does not apply.
        for c in try cases("bpe-qwen2", where: { $0.unicodeScalars.elementsEqual($0.precomposedStringWithCanonicalMapping.unicodeScalars) }) {
            XCTAssertEqual(t.encode(c.text, addSpecialTokens: false), c.ids, "gguf qwen2 \"\(visible(c.text))\"")
        }
    }

    func testSentencePieceBPE() throws {
        let g = try fixtureJSON("spm-bpe.gguf.json")
        let t = try BPETokenizer(
            ggufModel: "llama", pre: nil,
            tokens: g["tokens"]!.arrayValue!.map { $0.stringValue! },
            tokenTypes: ints(g["token_type"]).map(Int32.init),
            scores: g["scores"]!.arrayValue!.map { Float($0.doubleValue!) },
            bos: 1, eos: 2, unk: 0)
        let cases = g["cases"]!.arrayValue!
        XCTAssertGreaterThan(cases.count, 40)
        for c in cases {
            let text = c["text"]!.stringValue!
            let ids = ints(c["ids"])
            XCTAssertEqual(t.encode(text, addSpecialTokens: false), ids, "spm bpe \"\(visible(text))\"")
            XCTAssertEqual(t.encode(text), [1] + ids, "BOS added")
            XCTAssertEqual(visible(t.decode(ids)), visible(text), "round trip \"\(visible(text))\"")
        }
        XCTAssertEqual(t.encode("a</s>b", addSpecialTokens: false), t.encode("a", addSpecialTokens: false) + [2] + t.encode("b", addSpecialTokens: false))
    }

    func testErrors() throws {
        func error(_ body: () throws -> BPETokenizer) -> String {
            do { _ = try body(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertTrue(error { try BPETokenizer(ggufModel: "gpt2", pre: "tekken", tokens: ["a"], source: "m.gguf") }
            .hasPrefix("m.gguf: tokenizer.ggml.pre: unsupported pre-tokenizer \"tekken\" (supported: gpt-2, "))
        XCTAssertEqual(error { try BPETokenizer(ggufModel: "bert", pre: nil, tokens: ["a"], source: "m.gguf") },
                       "m.gguf: tokenizer.ggml.model: unsupported tokenizer model \"bert\" (supported: gpt2, llama)")
        XCTAssertEqual(error { try BPETokenizer(ggufModel: "llama", pre: nil, tokens: ["a"], source: "m.gguf") },
                       "m.gguf: tokenizer.ggml.scores: missing (a SentencePiece vocabulary needs its scores)")
        XCTAssertEqual(error { try BPETokenizer(ggufModel: "gpt2", pre: "gpt-2", tokens: ["a"], tokenTypes: [], source: "m.gguf") },
                       "m.gguf: tokenizer.ggml.token_type: 0 types for 1 tokens")
        XCTAssertEqual(error { try BPETokenizer(ggufModel: "gpt2", pre: "gpt-2", tokens: ["a"], bos: 3, source: "m.gguf") },
                       "m.gguf: tokenizer.ggml.bos_token_id: 3 is outside the 1 tokens")
        XCTAssertEqual(error { try BPETokenizer(ggufModel: "gpt2", pre: "llama-bpe", tokens: ["a"], source: "m.gguf") },
                       "m.gguf: tokenizer.ggml.add_bos_token: true, but tokenizer.ggml.bos_token_id is not set")
        XCTAssertEqual(error { try BPETokenizer(ggufModel: "gpt2", pre: "gpt-2", tokens: ["a", "b"], merges: ["ab"], source: "m.gguf") },
                       "m.gguf: tokenizer.ggml.merges[0]: expected \"a b\", found \"ab\"")
    }
}
