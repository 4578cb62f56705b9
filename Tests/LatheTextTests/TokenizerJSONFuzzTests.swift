import Foundation
import LatheText
import XCTest
import _LatheTestSupport

/// Files the tokenizer.json fuzzer (Tools/fuzz/tokenizer_json_fuzz.swift) and its review turned
/// up. Each used to trap, allocate without bound, hang, or give ids outside the vocabulary; now it
/// is a `TokenizerError` naming the place, or a tokenizer that works.
final class TokenizerJSONFuzzTests: XCTestCase {
    let bpeModel = #""model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#

    func load(_ json: String) throws(TokenizerError) -> any Tokenizer { try loadTokenizer(bytes: Array(json.utf8), source: "t.json") }

    func error(_ json: String) -> String {
        do {
            let t = try load(json)
            return "no error (\(t.vocabularySize) ids)"
        } catch {
            return error.description
        }
    }

    func template(_ ids: String) -> String {
        #""post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {"<s>": {"ids": \#(ids)}}}"#
    }

    /// A post-processor id past the vocabulary was added to every encoding (the fuzzer's first
    /// find: its `added_tokens` key mutated away, leaving the template's id 10 of 10 tokens).
    func testPostProcessorIDsMustBeInTheVocabulary() throws {
        let crash = try Data(contentsOf: textFixtures.appendingPathComponent("fuzz/template-id-past-vocab.json"))
        XCTAssertThrowsError(try loadTokenizer(bytes: [UInt8](crash), source: "t.json")) { e in
            XCTAssertEqual("\(e)", "t.json: post_processor: special token id 10 is not an id of the vocabulary (10 ids)")
        }
        XCTAssertEqual(error("{\(bpeModel), \(template("[3]"))}"),
                       "t.json: post_processor: special token id 3 is not an id of the vocabulary (3 ids)")
        XCTAssertEqual(error("{\(bpeModel), \(template("[-1]"))}"),
                       "t.json: post_processor: special token id -1 is not an id of the vocabulary (3 ids)")
        XCTAssertEqual(error(#"{\#(bpeModel), "post_processor": {"type": "BertProcessing", "cls": ["<s>", 0], "sep": ["</s>", 7]}}"#),
                       "t.json: post_processor: special token id 7 is not an id of the vocabulary (3 ids)")
        // An added token extends the vocabulary, so the template may name it.
        let t = try load(#"{\#(bpeModel), "added_tokens": [{"id": 3, "content": "<s>", "special": true}], \#(template("[3]"))}"#)
        XCTAssertEqual(t.vocabularySize, 4)
        XCTAssertEqual(t.bos, 3)
        XCTAssertEqual(t.encode("ab"), [3, 2])
    }

    /// An added token's id sized the id table: 10^12 asked for terabytes, Int.max overflowed.
    func testAddedTokenIDsFarPastTheVocabulary() throws {
        for id in ["1000000000000", "9223372036854775807", "16448"] {
            XCTAssertEqual(error(#"{\#(bpeModel), "added_tokens": [{"id": \#(id), "content": "<x>"}]}"#),
                           "t.json: added_tokens[0].id: id \(id) is far past the 3 ids of the model's vocabulary")
        }
        // As sparse as model ids may be (16 x (tokens + 1024)) is fine.
        let t = try load(#"{\#(bpeModel), "added_tokens": [{"id": 16447, "content": "<x>"}]}"#)
        XCTAssertEqual(t.vocabularySize, 16448)
        XCTAssertEqual(t.encode("a<x>b"), [0, 16447, 1])
    }

    func testPadIDMustBeInTheVocabulary() {
        XCTAssertEqual(error(#"{\#(bpeModel), "padding": {"pad_id": 99}}"#),
                       "t.json: padding.pad_id: 99 is not an id of the vocabulary (3 ids)")
        XCTAssertEqual(error(#"{\#(bpeModel), "padding": {"pad_id": 2}}"#), "no error (3 ids)")
    }

    /// The Strip decoder looped `0..<start`: a negative count trapped, a huge one never ended.
    func testStripDecoderCounts() throws {
        func strip(_ start: String, _ stop: String) -> String {
            #"{\#(bpeModel), "pre_tokenizer": {"type": "WhitespaceSplit"}, "decoder": {"type": "Strip", "content": "a", "start": \#(start), "stop": \#(stop)}}"#
        }
        XCTAssertEqual(error(strip("-1", "0")), "t.json: decoder.start: expected a non-negative integer, found -1")
        XCTAssertEqual(error(strip("0", "1.5")), "t.json: decoder.stop: expected a non-negative integer, found 1.5")
        XCTAssertEqual(error(strip("0", "\"2\"")), "t.json: decoder.stop: expected a non-negative integer, found a string")
        let t = try load(strip("1000000000000000000", "1000000000000000000"))
        // Each token loses all its leading and trailing "a"s, and no more.
        XCTAssertEqual(t.decode([0, 0, 1, 0, 2, 1]), "bbb")
        XCTAssertEqual(t.decode([2, 0]), "b")
        XCTAssertEqual(try load(strip("1", "0")).decode([0, 2]), "b")
    }

    /// Viterbi skipped positions whose best score was -inf, so an infinite score (the fuzzer
    /// wrote -8.82750701e042969), or finite ones whose sum overflowed, left the path unfinished
    /// and its walk back indexed -1 (a trap). Scores that are not finite are refused, and sums
    /// that overflow still give a path.
    func testUnigramScoresThatOverflow() throws {
        let crash = try Data(contentsOf: textFixtures.appendingPathComponent("fuzz/unigram-infinite-score.json"))
        XCTAssertThrowsError(try loadTokenizer(bytes: [UInt8](crash), source: "t.json")) { e in
            XCTAssertEqual("\(e)", "t.json: model.vocab[86][1]: expected a finite number")
        }
        func unigram(_ score: String) -> String {
            #"{"model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0], ["a", \#(score)], ["b", \#(score)]]}}"#
        }
        let t = try load(unigram("-1e308"))
        XCTAssertEqual(t.encode("ab"), [1, 2])
        XCTAssertEqual(t.encode("abcab"), [1, 2, 0, 1, 2])
        XCTAssertEqual(error(unigram("-1e999")), "t.json: model.vocab[1][1]: expected a finite number")
        XCTAssertEqual(error(unigram("1e999")), "t.json: model.vocab[1][1]: expected a finite number")
    }

    /// WordPiece tried every end of a word from the last, building each candidate string: with
    /// the file's `max_input_chars_per_word` large, a long word cost cubic time (the fuzzer's
    /// timeout: 714). Candidates now stop at the longest vocabulary entry; the ids are unchanged.
    func testWordPieceLongWords() throws {
        let json = ###"{"model": {"type": "WordPiece", "unk_token": "[UNK]", "max_input_chars_per_word": 1000000, "vocab": {"[UNK]": 0, "a": 1, "##a": 2, "aaa": 3, "##aa": 4, "b": 5, "##b": 6}}, "pre_tokenizer": {"type": "WhitespaceSplit"}}"###
        let t = try load(json)
        XCTAssertEqual(t.encode("aaaaaa ab aaaab c ba"), [3, 4, 2, 1, 6, 3, 2, 6, 0, 5, 2])
        let long = String(repeating: "a", count: 30_000)
        let start = Date()
        let ids = t.encode(long + "b " + long + "c")
        // "aaa", 14,998 x "##aa", "##a", "##b"; then the second word, which ends in "c", is unknown.
        XCTAssertEqual(ids.count, 1 + 14_998 + 2 + 1)
        XCTAssertEqual(ids.prefix(3), [3, 4, 4])
        XCTAssertEqual(ids.suffix(4), [4, 2, 6, 0])
        XCTAssertLessThan(Date().timeIntervalSince(start), 5, "a 30k-character word is tokenized in linear time")
    }
}
