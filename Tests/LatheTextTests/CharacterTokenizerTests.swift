import LatheText
import XCTest

/// The character tokenizer behind `CharCorpus`, through the `Tokenizer` protocol.
final class CharacterTokenizerTests: XCTestCase {
    func testEncodeDecodeAndUnknownCharacters() {
        let t = CharacterTokenizer(characterSetOf: "naïve café ☕\n")
        XCTAssertEqual(t.vocabulary.map { String($0) }.joined(), "\n acefnvéï☕")
        let text = "café ☕ naïve\n"
        let ids = t.encode(text, addSpecialTokens: true)
        XCTAssertEqual(ids.count, text.unicodeScalars.count)
        XCTAssertEqual(t.decode(ids), text)
        XCTAssertEqual(t.vocabularySize, 11)
        XCTAssertEqual(t.token(for: ids[0]), "c")
        XCTAssertEqual(t.id(for: "☕"), 10)
        XCTAssertNil(t.id(for: "xy"))
        // Not in the set: dropped, or the unknown token when there is one; the strict form says which.
        XCTAssertEqual(t.decode(t.encode("cx!a", addSpecialTokens: false)), "ca")
        let withUnknown = CharacterTokenizer(vocabulary: Array("?ab".unicodeScalars), unknown: "?")
        XCTAssertEqual(withUnknown.encode("axb", addSpecialTokens: false), [1, 0, 2])
        guard case .failure(let missing) = t.ids(of: "cafe!") else { return XCTFail("! is not in the set") }
        XCTAssertEqual(missing.character, "!")
        guard case .success(let ascii) = t.ids(of: "cave") else { return XCTFail("all in the set") }
        XCTAssertEqual(ascii.map(Int.init), t.encode("cave", addSpecialTokens: false))
        // Streaming never splits a character (one scalar per id).
        var stream = StreamingDecoder(t)
        XCTAssertEqual(ids.map { stream.next($0) }.joined() + stream.finish(), text)
    }
}
