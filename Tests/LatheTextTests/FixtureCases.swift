import Foundation
import LatheIO
import LatheText
import XCTest
import _LatheTestSupport

/// One reference case written by Tools/reference/make_tokenizer_fixtures.py.
struct TokenizerCase {
    let text: String
    let ids: [Int]
    let idsSpecial: [Int]
    let decoded: String
    let decodedSkip: String
}

let textFixtures = fixturesDirectory.appendingPathComponent("text")

func fixtureJSON(_ name: String) throws -> JSONValue {
    let url = textFixtures.appendingPathComponent(name)
    guard let data = try? Data(contentsOf: url) else {
        throw FixtureError.missing(url.path + " (Tools/reference/make_tokenizer_fixtures.py)")
    }
    return try JSONParser.parse([UInt8](data))
}

func ints(_ v: JSONValue?) -> [Int] { v?.arrayValue?.compactMap(\.intValue) ?? [] }

/// The cases of `NAME.cases.json` (fields left out are equal to the one they default to).
func loadCases(_ name: String) throws -> [TokenizerCase] {
    let root = try fixtureJSON(name + ".cases.json")
    return (root["cases"]?.arrayValue ?? []).map { c in
        let text = c["text"]?.stringValue ?? ""
        let ids = ints(c["ids"])
        let decoded = c["decoded"]?.stringValue ?? text
        return TokenizerCase(text: text, ids: ids, idsSpecial: c["ids_special"].map { ints($0) } ?? ids,
                             decoded: decoded, decodedSkip: c["decoded_skip"]?.stringValue ?? decoded)
    }
}

/// Escapes control and non-ASCII characters so a failing case can be read.
func visible(_ s: String) -> String {
    s.unicodeScalars.map { c in
        (c.value >= 0x20 && c.value < 0x7F) ? String(c) : "\\u{\(String(c.value, radix: 16))}"
    }.joined()
}

/// Checks a tokenizer against every case: ids with and without special tokens, decoding
/// with and without skipping them. Reports each failing case by its text.
func checkCases(_ tokenizer: any Tokenizer, _ cases: [TokenizerCase], _ name: String, minimum: Int = 10,
                decode: Bool = true, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertGreaterThan(cases.count, minimum, "\(name): too few cases", file: file, line: line)
    for c in cases {
        let label = "\(name) \"\(visible(c.text))\""
        XCTAssertEqual(tokenizer.encode(c.text, addSpecialTokens: false), c.ids, "\(label) ids", file: file, line: line)
        XCTAssertEqual(tokenizer.encode(c.text, addSpecialTokens: true), c.idsSpecial, "\(label) ids with special tokens", file: file, line: line)
        guard decode else { continue }
        XCTAssertEqual(visible(tokenizer.decode(c.ids, skipSpecialTokens: false)), visible(c.decoded), "\(label) decode", file: file, line: line)
        XCTAssertEqual(visible(tokenizer.decode(c.idsSpecial, skipSpecialTokens: true)), visible(c.decodedSkip), "\(label) decode skipping special tokens", file: file, line: line)
    }
}
