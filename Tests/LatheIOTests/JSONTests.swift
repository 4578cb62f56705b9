import Foundation
import LatheIO
import XCTest

/// LatheIO's JSON reader on what the config and tokenizer fuzzers (Tools/fuzz) fed it.
final class JSONTests: XCTestCase {
    func error(_ text: String) -> String {
        do {
            return "no error: \(try JSONParser.parse(text))"
        } catch {
            return error.description
        }
    }

    /// The config fuzzer's Gemma trap came through `"num_hidden_layers": -07`, which the reader
    /// took for -7: JSON has no leading zeros, and Python's json refuses them too.
    func testLeadingZerosAreNotNumbers() throws {
        XCTAssertEqual(error("07"), "leading zero in a number at byte 0")
        XCTAssertEqual(error("[1, -07]"), "leading zero in a number at byte 5")
        XCTAssertEqual(error(#"{"a": 00}"#), "leading zero in a number at byte 6")
        XCTAssertEqual(error("00.5"), "leading zero in a number at byte 0")
        for ok in ["0", "-0", "0.7", "-0.07", "0e5", "10", "100", "-109.0e-01"] {
            XCTAssertEqual(try JSONParser.parse(ok), .number(ok), ok)
        }
    }

    /// Numbers are kept as text; the accessors say what they are without trapping.
    func testNumberAccessorsOnLimits() throws {
        XCTAssertEqual(try JSONParser.parse("9223372036854775807").intValue, Int.max)
        XCTAssertNil(try JSONParser.parse("9223372036854775808").intValue)
        XCTAssertNil(try JSONParser.parse("9223372036854775808").nonNegativeInt)
        XCTAssertEqual(try JSONParser.parse("-9223372036854775808").intValue, Int.min)
        XCTAssertNil(try JSONParser.parse("-1").nonNegativeInt)
        XCTAssertEqual(try JSONParser.parse("1e999").doubleValue, .infinity)
        XCTAssertEqual(try JSONParser.parse("-8.8e042969").doubleValue, -.infinity)
        XCTAssertNil(try JSONParser.parse("1e2").intValue)
    }
}
