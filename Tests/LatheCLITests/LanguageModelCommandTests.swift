import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// `lathe generate`, `perplexity`, `tokenize` and `embed` end to end on the fetched models.
final class LanguageModelCommandTests: XCTestCase {
    func testGenerateGreedyTokenizeAndPerplexity() throws {
        let smol = try fetchedModel("SmolLM2-135M-Instruct.Q4_1.gguf").path
        let g = try runLathe(["generate", smol, "--prompt", "The capital of France is", "--temperature", "0", "--max-tokens", "3", "--threads", "2"])
        XCTAssertEqual(g.status, 0, g.err)
        XCTAssertTrue(g.out.hasPrefix("The capital of France is Paris."), g.out)
        XCTAssertTrue(g.err.contains("tokens/s"), g.err)

        let t = try runLathe(["tokenize", smol, "--text", "The capital of France is", "--json"])
        XCTAssertEqual(t.status, 0, t.err)
        let ids = try JSONParser.parse(t.out.trimmingCharacters(in: .whitespacesAndNewlines))["ids"]?.arrayValue?.compactMap(\.intValue)
        XCTAssertEqual(ids, [504, 3575, 282, 4649, 314])

        let dir = try temporaryDirectory()
        let text = dir.appendingPathComponent("text.txt")
        try String(String.UnicodeScalarView(try CharCorpus.shakespeareText().unicodeScalars.prefix(3000))).write(to: text, atomically: true, encoding: .utf8)
        let p = try runLathe(["perplexity", smol, "--file", text.path, "--context", "128", "--chunks", "2", "--json"])
        XCTAssertEqual(p.status, 0, p.err)
        let r = try JSONParser.parse(p.out.trimmingCharacters(in: .whitespacesAndNewlines))
        XCTAssertEqual(r["chunks"]?.intValue, 2)
        XCTAssertEqual(r["tokens_scored"]?.intValue, 2 * 63)
        XCTAssertTrue((r["perplexity"]?.doubleValue ?? 0) > 1 && (r["perplexity"]?.doubleValue ?? 1e9) < 1000, p.out)

        let missing = try runLathe(["generate", dir.appendingPathComponent("nope.gguf").path, "--prompt", "x"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.err.contains("no such file or folder"), missing.err)
        let notGGUF = try runLathe(["generate", text.path, "--prompt", "x"])
        XCTAssertEqual(notGGUF.status, 1)
        XCTAssertTrue(notGGUF.err.contains(text.path), notGGUF.err)
    }

    func testEmbedSimilarSentences() throws {
        let minilm = try fetchedModel("all-MiniLM-L6-v2").path
        let e = try runLathe(["embed", minilm, "--text", "A man is playing a guitar.", "--text", "Someone plays an instrument.",
                              "--text", "The stock market fell sharply.", "--similarity"])
        XCTAssertEqual(e.status, 0, e.err)
        func cosine(_ pair: String) -> Double {
            e.out.split(separator: "\n").first { $0.hasPrefix("cosine \(pair):") }.flatMap { Double($0.split(separator: " ").last!) } ?? .nan
        }
        XCTAssertGreaterThan(cosine("0 1"), cosine("0 2") + 0.3, e.out)
        let decoder = try runLathe(["embed", try fetchedModel("SmolLM2-135M-Instruct.Q4_1.gguf").path, "--text", "x"])
        XCTAssertEqual(decoder.status, 1)
        XCTAssertTrue(decoder.err.contains("embed needs an encoder"), decoder.err)
    }
}
