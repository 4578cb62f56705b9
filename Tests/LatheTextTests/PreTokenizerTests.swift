import Foundation
import LatheIO
import LatheText
import XCTest
import _LatheTestSupport

/// Stages checked on their own: the split scanners, vocabulary keys, normalisers, speed.
final class PreTokenizerTests: XCTestCase {
    /// A WordPiece tokenizer.json with the given vocabulary and stages, for small checks.
    func wordPiece(_ vocab: [String], normalizer: String = "null", pre: String = #"{"type": "WhitespaceSplit"}"#) throws -> WordPieceTokenizer {
        let entries = vocab.enumerated().map { "\(JSONWriter.quoted($0.element)): \($0.offset)" }.joined(separator: ", ")
        let json = #"{"normalizer": \#(normalizer), "pre_tokenizer": \#(pre), "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {\#(entries)}}}"#
        return try WordPieceTokenizer(tokenizerJSON: Array(json.utf8))
    }

    /// "é" and "e\u{301}" are canonically equivalent (equal as Swift `String`s) but different
    /// tokens.
    func testVocabularyKeysAreExactBytes() throws {
        let t = try wordPiece(["[UNK]", "\u{E9}", "e\u{301}"])
        XCTAssertEqual(t.encode("\u{E9} e\u{301}", addSpecialTokens: false), [1, 2])
        XCTAssertEqual(t.id(for: "e\u{301}"), 2)
        XCTAssertEqual(t.id(for: "\u{E9}"), 1)
    }

    /// Each split pattern on text where the three differ.
    func testSplitPatterns() throws {
        func pieces(_ pattern: String) throws -> [String] {
            // The pieces come back as WordPiece tokens: every piece is in this vocabulary.
            let text = "Hello  world's 12345\n\n  x ?!\r\n\tY'LL"
            let pre = #"{"type": "Split", "pattern": {"Regex": \#(JSONWriter.quoted(pattern))}, "behavior": "Isolated", "invert": false}"#
            var vocab = ["[UNK]"]
            var all: [String] = []
            for len in 1...text.unicodeScalars.count {
                let s = Array(text.unicodeScalars)
                for i in 0...(s.count - len) { all.append(String(String.UnicodeScalarView(s[i..<(i + len)]))) }
            }
            vocab += Array(Set(all)).sorted()
            let t = try wordPiece(vocab, pre: pre)
            return t.encode(text, addSpecialTokens: false).map { t.token(for: $0)! }
        }
        let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
        let llama3 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        XCTAssertEqual(try pieces(gpt2), ["Hello", " ", " world", "'s", " 12345", "\n\n ", " x", " ?!", "\r\n", "\t", "Y", "'", "LL"])
        XCTAssertEqual(try pieces(llama3), ["Hello", " ", " world", "'s", " ", "123", "45", "\n\n", " ", " x", " ?!\r\n", "\tY", "'LL"])
        XCTAssertEqual(try pieces(qwen2), ["Hello", " ", " world", "'s", " ", "1", "2", "3", "4", "5", "\n\n", " ", " x", " ?!\r\n", "\tY", "'LL"])
    }

    func testBertNormalizer() {
        let n = Normalizer.bert(cleanText: true, handleChineseCharacters: true, stripAccents: true, lowercase: true)
        XCTAssertEqual(n("Héllo\tWÖRLD\u{0}\u{200B}中文 Ａ"), "hello world 中  文  ａ")
        XCTAssertEqual(Normalizer.nfc("e\u{301}").unicodeScalars.count, 1)
        XCTAssertEqual(Normalizer.sequence([.prepend("▁"), .replace(pattern: " ", content: "▁")])("a b"), "▁a▁b")
    }

    /// 100 kB in well under a second (release; the bound is loose in debug builds).
    func testSpeed() throws {
        let t = try BPETokenizer(tokenizerJSON: textFixtures.appendingPathComponent("bpe-llama3.json"))
        var text = ""
        let cases = try loadCases("bpe-llama3")
        while text.utf8.count < 100_000 { for c in cases { text += c.text + "\n" } }
        let start = Date()
        let ids = t.encode(text, addSpecialTokens: false)
        let seconds = Date().timeIntervalSince(start)
        print(String(format: "100 kB -> %d tokens in %.4f s", ids.count, seconds))
        XCTAssertEqual(t.decode(ids).unicodeScalars.count, text.unicodeScalars.count)
        #if DEBUG
        XCTAssertLessThan(seconds, 10)
        #else
        XCTAssertLessThan(seconds, 0.5)
        #endif
    }
}

extension PreTokenizerTests {
    /// A byte-level tokenizer built from its parts, no file involved.
    func testBPEFromParts() throws {
        let bytes = (0..<256).map { String(ByteLevel.characters[$0]) }
        let t = try BPETokenizer(vocabulary: bytes + ["Ġt", "he", "Ġthe", "<|eot|>"],
                                 merges: [("Ġ", "t"), ("h", "e"), ("Ġt", "he")],
                                 addedTokens: [AddedToken(id: 259, content: "<|eot|>")],
                                 postProcessor: .template(before: [], after: [259]), eos: 259)
        XCTAssertEqual(t.encode("the the<|eot|>", addSpecialTokens: false), [116, 257, 258, 259])
        XCTAssertEqual(t.encode("x"), [120, 259])
        XCTAssertEqual(t.decode([116, 257, 258, 259], skipSpecialTokens: true), "the the")
        XCTAssertEqual(ByteLevel.string(of: Array(" \n".utf8)), "ĠĊ")
        XCTAssertEqual(ByteLevel.bytes(of: "ĠĊa"), [32, 10, 97])
        XCTAssertThrowsError(try BPETokenizer(vocabulary: bytes, merges: [("a", "b")]))
    }
}

extension PreTokenizerTests {
    /// One 200,000-character piece (no pre-tokenizer split helps): the heap merge loop keeps
    /// it O(n log n).
    func testLongPiece() throws {
        let t = try BPETokenizer(tokenizerJSON: textFixtures.appendingPathComponent("bpe-gpt2.json"))
        for text in [String(repeating: "a", count: 200_000), String(repeating: " ", count: 200_000) + "x"] {
            let start = Date()
            let ids = t.encode(text, addSpecialTokens: false)
            let seconds = Date().timeIntervalSince(start)
            XCTAssertEqual(t.decode(ids), text)
            #if !DEBUG
            XCTAssertLessThan(seconds, 1)
            #endif
        }
    }
}
