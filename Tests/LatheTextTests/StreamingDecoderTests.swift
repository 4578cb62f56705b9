import Foundation
import LatheText
import XCTest
import _LatheTestSupport

final class StreamingDecoderTests: XCTestCase {
    /// For every fixture tokenizer and case: the streamed pieces concatenate to `decode`, and no
    /// piece holds a replacement character that `decode` does not (no half characters out).
    func testStreamsEqualDecode() throws {
        for name in ["bpe-gpt2", "bpe-llama3", "bpe-qwen2", "spm-bpe", "spm-unigram", "wordpiece"] {
            let t = try loadTokenizer(contentsOf: textFixtures.appendingPathComponent(name + ".json"))
            for c in try loadCases(name) {
                for (ids, skip) in [(c.ids, false), (c.idsSpecial, true)] {
                    var stream = StreamingDecoder(t, skipSpecialTokens: skip)
                    var pieces = ids.map { stream.next($0) }
                    pieces.append(stream.finish())
                    let expected = t.decode(ids, skipSpecialTokens: skip)
                    XCTAssertEqual(visible(pieces.joined()), visible(expected), "\(name) \"\(visible(c.text))\" skip \(skip)")
                    if !expected.contains("\u{FFFD}") {
                        XCTAssertFalse(pieces.contains { $0.contains("\u{FFFD}") }, "\(name) \"\(visible(c.text))\": half a character out")
                    }
                }
            }
        }
    }

    /// An emoji spelled as four byte tokens comes out whole, on its last byte.
    func testHoldsBackIncompleteCharacters() throws {
        let t = try BPETokenizer(tokenizerJSON: textFixtures.appendingPathComponent("bpe-gpt2.json"))
        let ids = t.encode("a😀", addSpecialTokens: false)
        XCTAssertGreaterThanOrEqual(ids.count, 3, "one token for a, the emoji's four bytes in several")
        var stream = StreamingDecoder(t)
        XCTAssertEqual(ids.map { stream.next($0) }, ["a"] + Array(repeating: "", count: ids.count - 2) + ["😀"])
        XCTAssertEqual(stream.finish(), "")
        // Cut short: the held-back bytes come out as U+FFFD.
        XCTAssertEqual(stream.next(Array(ids.prefix(3))), "a")
        XCTAssertEqual(stream.finish(), "\u{FFFD}")
    }

    /// SentencePiece drops the space of the first token only.
    func testSentencePieceLeadingSpace() throws {
        let t = try BPETokenizer(tokenizerJSON: textFixtures.appendingPathComponent("spm-bpe.json"))
        let ids = t.encode("To be or not", addSpecialTokens: false)
        XCTAssertEqual(t.token(for: ids[0])?.first, "▁")
        var stream = StreamingDecoder(t)
        let pieces = ids.map { stream.next($0) }
        XCTAssertEqual(pieces.joined(), "To be or not")
        XCTAssertFalse(pieces[0].hasPrefix(" "))
        XCTAssertTrue(pieces.dropFirst().contains { $0.hasPrefix(" ") })
    }
}
