import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// `lathe generate`, `perplexity`, `tokenize`, `inspect` and `convert` on the tiny GPT-2 fixture
/// (Tools/reference/make_llm_fixtures.py), as a Hugging Face folder and as a GGUF file.
final class GPT2CommandTests: XCTestCase {
    let folder = fixturesDirectory.appendingPathComponent("llm/gpt2-tiny")

    func testGenerateAndPerplexityOnBothFiles() throws {
        let gguf = folder.appendingPathComponent("model.gguf").path
        var continuations: [String] = []
        for model in [folder.path, gguf] {
            let g = try runLathe(["generate", model, "--prompt", "the cat", "--temperature", "0", "--max-tokens", "8", "--threads", "1"])
            XCTAssertEqual(g.status, 0, g.err)
            // transformers' greedy generate() gives the same text (the random model repeats "A").
            XCTAssertTrue(g.out.hasPrefix("the catAAAAAAAA"), g.out)
            XCTAssertTrue(g.err.contains("generated: 8 tokens"), g.err)
            continuations.append(g.out)
        }
        XCTAssertEqual(continuations[0], continuations[1], "the same model and vocabulary in both files")

        let dir = try temporaryDirectory()
        let text = dir.appendingPathComponent("text.txt")
        try String(repeating: "the cat sat on the hat.\nhe said: 42 (or -7)!\n", count: 4).write(to: text, atomically: true, encoding: .utf8)
        var perplexities: [Double] = []
        for model in [folder.path, gguf] {
            let p = try runLathe(["perplexity", model, "--file", text.path, "--context", "32", "--json"])
            XCTAssertEqual(p.status, 0, p.err)
            let r = try JSONParser.parse(p.out.trimmingCharacters(in: .whitespacesAndNewlines))
            XCTAssertEqual(r["chunks"]?.intValue, 5, p.out)
            XCTAssertEqual(r["tokens_scored"]?.intValue, 5 * 15, p.out)
            perplexities.append(r["perplexity"]?.doubleValue ?? .nan)
        }
        XCTAssertEqual(perplexities[0], perplexities[1], accuracy: 1e-3 * perplexities[0])
        let long = try runLathe(["perplexity", gguf, "--file", text.path, "--context", "128"])
        XCTAssertEqual(long.status, 1)
        XCTAssertTrue(long.err.contains("longer than the model's 64 positions"), long.err)

        let t = try runLathe(["tokenize", gguf, "--text", "the cat", "--json"])
        XCTAssertEqual(t.status, 0, t.err)
        XCTAssertEqual(try JSONParser.parse(t.out.trimmingCharacters(in: .whitespacesAndNewlines))["ids"]?.arrayValue?.compactMap(\.intValue),
                       [83, 96, 94, 66, 64, 83])

        let i = try runLathe(["inspect", gguf])
        XCTAssertEqual(i.status, 0, i.err)
        XCTAssertTrue(i.out.contains("gpt2.attention.layer_norm_epsilon"), i.out)
        XCTAssertTrue(i.out.contains("blk.1.attn_qkv.weight"), i.out)

        let out = dir.appendingPathComponent("from-gguf")
        let c = try runLathe(["convert", gguf, "--output", out.path, "--dtype", "bf16"])
        XCTAssertEqual(c.status, 0, c.err)
        XCTAssertTrue(c.out.contains("model.safetensors"), c.out)
        let converted = try GPT2Model.load(huggingFaceFolder: out)
        XCTAssertEqual(converted.config.vocabularySize, 100)

        let embed = try runLathe(["embed", gguf, "--text", "x"])
        XCTAssertEqual(embed.status, 1)
        XCTAssertTrue(embed.err.contains("embed needs an encoder"), embed.err)
    }
}
