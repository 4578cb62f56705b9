import Foundation
import LatheIO
import LatheText
import XCTest
import _LatheTestSupport

/// Text that exercises what pre-tokenizers and merges get wrong (Tests/Fixtures/text/multilingual.txt):
/// whitespace runs, tabs, CRLF, accents composed and combining, many scripts, scripts without
/// spaces, emoji sequences, invisible characters, digit runs in several scripts, code, strings
/// that look like special tokens.
func multilingualText() throws -> String {
    try String(contentsOf: textFixtures.appendingPathComponent("multilingual.txt"), encoding: .utf8)
}

/// The texts a tokenizer and its written files must agree on: the multilingual text, each of
/// its lines, short edge cases, and text with `added` tokens in it (at the start, between words,
/// glued to words, at the end).
func agreementTexts(added: [String]) throws -> [String] {
    let text = try multilingualText()
    var texts = [text, "", " ", "  ", "\n", "a", " a", "a ", "\t\t", "🤖", "12345", "\r\n"]
    texts += text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map { String(String.UnicodeScalarView($0)) }
    let some = Array(added.prefix(4)) + Array(added.suffix(4))
    if !some.isEmpty {
        texts.append(some.joined(separator: " word "))
        texts.append(some.joined() + "glued" + some.reversed().joined())
        texts.append(some[0] + "Hi there" + some[some.count - 1] + "\n" + text + some[some.count / 2])
    }
    return texts
}

/// Writing BPE tokenizers as `tokenizer.json` (with `tokenizer_config.json`): read back by
/// `loadTokenizer`, they give the ids of the tokenizer written, for GGUF vocabularies of both
/// kinds (byte-level with each pre-tokenizer family; SentencePiece merged by score, whose
/// merges the writer derives) and for tokenizer.json files read and written again.
final class TokenizerJSONWriterTests: XCTestCase {
    /// Writes `t` into a folder as tokenizer.json and tokenizer_config.json and loads it back.
    func writtenAndRead(_ t: BPETokenizer, chatTemplate: String? = nil) throws -> any Tokenizer {
        let dir = try temporaryDirectory()
        try Data(t.tokenizerJSON().utf8).write(to: dir.appendingPathComponent("tokenizer.json"))
        try Data(JSONWriter.serialize(t.tokenizerConfigJSON(chatTemplate: chatTemplate, modelMaxLength: 2048)).utf8)
            .write(to: dir.appendingPathComponent("tokenizer_config.json"))
        return try loadTokenizer(contentsOf: dir)
    }

    /// `b` gives `a`'s ids (with and without special tokens) and decoded text on `texts`, and has
    /// its special tokens.
    func checkAgreement(_ a: any Tokenizer, _ b: any Tokenizer, _ texts: [String], _ name: String,
                        file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(b.vocabularySize, a.vocabularySize, "\(name) vocabulary size", file: file, line: line)
        XCTAssertEqual(b.addedTokens, a.addedTokens, "\(name) added tokens", file: file, line: line)
        XCTAssertEqual(b.bos, a.bos, "\(name) BOS", file: file, line: line)
        XCTAssertEqual(b.eos, a.eos, "\(name) EOS", file: file, line: line)
        XCTAssertEqual(b.unk, a.unk, "\(name) unknown", file: file, line: line)
        for text in texts {
            let label = "\(name) \"\(visible(String(text.prefix(60))))\""
            let ids = a.encode(text, addSpecialTokens: false)
            XCTAssertEqual(b.encode(text, addSpecialTokens: false), ids, "\(label) ids", file: file, line: line)
            XCTAssertEqual(b.encode(text, addSpecialTokens: true), a.encode(text, addSpecialTokens: true),
                           "\(label) ids with special tokens", file: file, line: line)
            XCTAssertEqual(visible(b.decode(ids)), visible(a.decode(ids)), "\(label) decode", file: file, line: line)
            XCTAssertEqual(visible(b.decode(ids, skipSpecialTokens: true)), visible(a.decode(ids, skipSpecialTokens: true)),
                           "\(label) decode skipping special tokens", file: file, line: line)
        }
    }

    func byteLevelGGUF(pre: String, addBOS: Bool? = nil) throws -> BPETokenizer {
        let g = try fixtureJSON("bpe.gguf.json")
        return try BPETokenizer(
            ggufModel: "gpt2", pre: pre,
            tokens: g["tokens"]!.arrayValue!.map { $0.stringValue! },
            merges: g["merges"]!.arrayValue!.map { $0.stringValue! },
            tokenTypes: ints(g["token_type"]).map(Int32.init),
            bos: 1, eos: 2, unk: 0, addBOS: addBOS)
    }

    func sentencePieceGGUF(addSpacePrefix: Bool? = nil, addEOS: Bool? = nil) throws -> (BPETokenizer, [String]) {
        let g = try fixtureJSON("spm-bpe.gguf.json")
        let t = try BPETokenizer(
            ggufModel: "llama", pre: nil,
            tokens: g["tokens"]!.arrayValue!.map { $0.stringValue! },
            tokenTypes: ints(g["token_type"]).map(Int32.init),
            scores: g["scores"]!.arrayValue!.map { Float($0.doubleValue!) },
            bos: 1, eos: 2, unk: 0, addEOS: addEOS, addSpacePrefix: addSpacePrefix)
        return (t, g["cases"]!.arrayValue!.map { $0["text"]!.stringValue! })
    }

    func testByteLevelGGUFVocabulariesOfEachPreTokenizer() throws {
        for (pre, cases) in [("gpt-2", "bpe-gpt2"), ("smollm", "bpe-smollm"), ("llama-bpe", "bpe-llama3"), ("dbrx", "bpe-llama3"),
                             ("qwen2", "bpe-qwen2")] {
            let t = try byteLevelGGUF(pre: pre)
            let texts = try agreementTexts(added: t.addedTokens.map(\.content)) + (try loadCases(cases)).map(\.text)
            checkAgreement(t, try writtenAndRead(t), texts, "gguf \(pre)")
        }
        // Llama 3's names add BOS and ignore merges.
        let json = try JSONParser.parse(try byteLevelGGUF(pre: "llama-bpe").tokenizerJSON())
        XCTAssertEqual(json["model"]?["ignore_merges"], .bool(true))
        XCTAssertEqual(json["pre_tokenizer"]?["pretokenizers"]?.arrayValue?.map { $0["type"]?.stringValue }, ["Split", "ByteLevel"])
        XCTAssertEqual(json["post_processor"]?["single"]?.arrayValue?.first?["SpecialToken"]?["id"], .string("<|im_start|>"))
        let config = try byteLevelGGUF(pre: "llama-bpe").tokenizerConfigJSON()
        XCTAssertEqual(config["add_bos_token"], .bool(true))
        XCTAssertEqual(try byteLevelGGUF(pre: "llama-bpe", addBOS: false).tokenizerConfigJSON()["add_bos_token"], .bool(false))
        let smol = try JSONParser.parse(try byteLevelGGUF(pre: "smollm").tokenizerJSON())
        XCTAssertEqual(smol["pre_tokenizer"]?["pretokenizers"]?.arrayValue?.map { $0["type"]?.stringValue }, ["Digits", "ByteLevel"])
        XCTAssertEqual(smol["model"]?["ignore_merges"], .bool(false))
        XCTAssertEqual(smol["added_tokens"]?.arrayValue?.map { $0["special"] }, [.bool(true), .bool(true), .bool(true)])
    }

    func testSentencePieceGGUFVocabularyWithMergesFromScores() throws {
        for (prefix, eos) in [(nil, nil), (false, nil), (true, true)] as [(Bool?, Bool?)] {
            let (t, cases) = try sentencePieceGGUF(addSpacePrefix: prefix, addEOS: eos)
            let texts = try agreementTexts(added: t.addedTokens.map(\.content) + ["<0x41>", "▁"]) + cases
            checkAgreement(t, try writtenAndRead(t), texts, "gguf llama prefix \(String(describing: prefix)) eos \(String(describing: eos))")
        }
        let (t, _) = try sentencePieceGGUF()
        let json = try JSONParser.parse(t.tokenizerJSON())
        let model = try XCTUnwrap(json["model"])
        XCTAssertEqual(model["byte_fallback"], .bool(true))
        XCTAssertEqual(model["unk_token"], .string("<unk>"))
        XCTAssertEqual(json["normalizer"]?["normalizers"]?.arrayValue?.map { $0["type"]?.stringValue }, ["Prepend", "Replace"])
        XCTAssertEqual(json["decoder"]?["decoders"]?.arrayValue?.map { $0["type"]?.stringValue }, ["Replace", "ByteFallback", "Fuse", "Strip"])
        // Every merge's two halves and their concatenation are tokens, and no merge repeats.
        let vocab = Set(try XCTUnwrap(model["vocab"]?.objectMembers).map(\.key))
        let merges = try XCTUnwrap(model["merges"]?.arrayValue).map { $0.arrayValue!.map { $0.stringValue! } }
        // The same merges, in the same order, as the tokenizer.json HF made of the same sentencepiece model.
        let reference = try fixtureJSON("spm-bpe.json")["model"]?["merges"]?.arrayValue?.map { m in
            m.arrayValue?.compactMap(\.stringValue) ?? m.stringValue!.split(separator: " ").map(String.init)
        }
        XCTAssertEqual(merges, reference)
        XCTAssertEqual(Set(merges.map { $0.joined(separator: "\u{0}") }).count, merges.count)
        for m in merges { XCTAssertTrue(vocab.contains(m[0]) && vocab.contains(m[1]) && vocab.contains(m[0] + m[1]), "\(m)") }
        XCTAssertFalse(merges.contains { $0[0] + $0[1] == "<s>" || $0[0].hasPrefix("<0x") }, "no merge makes a control or byte token")

        let config = t.tokenizerConfigJSON(chatTemplate: "{{ messages }}", modelMaxLength: 4096)
        XCTAssertEqual(config["add_bos_token"], .bool(true))
        XCTAssertEqual(config["add_eos_token"], .bool(false))
        XCTAssertEqual(config["bos_token"], .string("<s>"))
        XCTAssertEqual(config["eos_token"], .string("</s>"))
        XCTAssertEqual(config["unk_token"], .string("<unk>"))
        XCTAssertEqual(config["chat_template"], .string("{{ messages }}"))
        XCTAssertEqual(config["model_max_length"]?.intValue, 4096)
        XCTAssertEqual(config["tokenizer_class"], .string("PreTrainedTokenizerFast"))
        XCTAssertEqual(t.specialTokensMapJSON()["bos_token"], .string("<s>"))
    }

    /// llama.cpp skips merges it can never apply (and a repeated merge keeps its first rank);
    /// `tokenizers` rejects the first, so the file leaves them out.
    func testMergesThatCannotApplyAreLeftOut() throws {
        let t = try BPETokenizer(ggufModel: "gpt2", pre: "gpt-2", tokens: ["a", "b", "c", "ab", "bc", "abc"],
                                 merges: ["b c", "a b", "a b", "x y", "a bc", "ab c", "c c"])
        let json = try JSONParser.parse(t.tokenizerJSON())
        XCTAssertEqual(json["model"]?["merges"]?.arrayValue?.map { $0.arrayValue!.compactMap(\.stringValue) },
                       [["b", "c"], ["a", "b"], ["a", "bc"], ["ab", "c"]])
        let back = try loadTokenizer(bytes: Array(t.tokenizerJSON().utf8))
        for text in ["abc", "ababcc", "cab", "x"] { XCTAssertEqual(back.encode(text), t.encode(text), text) }
    }

    /// Any BPE tokenizer.json read and written again reads back as the same tokenizer
    /// (normalisers, Metaspace, Split, Digits, template post-processors, decoders).
    func testTokenizerJSONFilesRoundTrip() throws {
        for name in ["bpe-gpt2", "bpe-llama3", "bpe-qwen2", "bpe-smollm", "spm-bpe"] {
            let t = try BPETokenizer(tokenizerJSON: textFixtures.appendingPathComponent(name + ".json"))
            let back = try loadTokenizer(bytes: Array(t.tokenizerJSON().utf8))
            let cases = try loadCases(name)
            checkCases(back, cases, name + " written again")
            checkAgreement(t, back, try agreementTexts(added: t.addedTokens.map(\.content)), name + " written again")
        }
    }
}
