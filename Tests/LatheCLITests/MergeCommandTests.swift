import Foundation
import XCTest
import _LatheTestSupport

/// `lathe merge` end to end: a fixture config merged, progress on stderr, and bad input's errors.
final class MergeCommandTests: XCTestCase {
    func testMergeWritesAFolderAndReportsErrors() throws {
        let configs = fixturesDirectory.appendingPathComponent("merge/configs")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-merge-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("merged")
        let ok = try runLathe(["merge", configs.appendingPathComponent("ties.yaml").path, "--output", out.path])
        XCTAssertEqual(ok.status, 0, ok.err)
        XCTAssertTrue(ok.err.contains("merged 39/39 tensors (100%)"), ok.err)
        XCTAssertTrue(ok.out.contains("merged 39 tensors") && ok.out.contains("with ties"), ok.out)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path))

        // A vocabulary mismatch: exit status 1 and a message naming the tensor and the fix.
        let bad = dir.appendingPathComponent("bad.yaml")
        try "merge_method: linear\nmodels:\n  - {model: \(configs.path)/../models/base, parameters: {weight: 1}}\n  - {model: \(configs.path)/../models/vocab40, parameters: {weight: 1}}\n"
            .write(to: bad, atomically: true, encoding: .utf8)
        let mismatch = try runLathe(["merge", bad.path, "--output", dir.appendingPathComponent("x").path])
        XCTAssertEqual(mismatch.status, 1)
        XCTAssertTrue(mismatch.err.contains("model.embed_tokens.weight") && mismatch.err.contains("resize"), mismatch.err)
        // A .gguf output needs --type.
        let noType = try runLathe(["merge", bad.path, "--output", dir.appendingPathComponent("x.gguf").path])
        XCTAssertEqual(noType.status, 64)
        XCTAssertTrue(noType.err.contains("--type"), noType.err)
    }

    /// `--eval`: a linear merge that keeps only the base (weight 1 on it, 0 on the other) is the
    /// base, so its KL from the base is 0, they agree on every top token and their perplexities are
    /// equal; the other parent differs from it.
    func testEvalComparesTheMergeWithEachParent() throws {
        let models = fixturesDirectory.appendingPathComponent("merge/models")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-merge-eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for name in ["base", "a"] {
            try FileManager.default.copyItem(at: models.appendingPathComponent(name), to: dir.appendingPathComponent(name))
        }
        // The fixtures have 32-token vocabularies and no tokenizer: a character-level one for the base.
        let vocab = ["<unk>", "<s>", "</s>", " "] + "abcdefghijklmnopqrstuvwxyz".map(String.init)
        let entries = vocab.enumerated().map { "\"\($1)\": \($0)" }.joined(separator: ", ")
        let added = (0..<3).map { "{\"id\": \($0), \"content\": \"\(vocab[$0])\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}" }
        try """
        {"version": "1.0", "truncation": null, "padding": null, "added_tokens": [\(added.joined(separator: ", "))],
         "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": {"type": "Fuse"},
         "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null, "end_of_word_suffix": null,
                   "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": {\(entries)}, "merges": []}}
        """.write(to: dir.appendingPathComponent("base/tokenizer.json"), atomically: true, encoding: .utf8)
        try "merge_method: linear\ndtype: float32\nmodels:\n  - {model: base, parameters: {weight: 1}}\n  - {model: a, parameters: {weight: 0}}\n"
            .write(to: dir.appendingPathComponent("keep.yaml"), atomically: true, encoding: .utf8)
        try String(repeating: "the quick brown fox jumps over the lazy dog and runs away ", count: 4)
            .write(to: dir.appendingPathComponent("text.txt"), atomically: true, encoding: .utf8)

        let r = try runLathe(["merge", "keep.yaml", "--output", "merged", "--eval", "text.txt", "--eval-context", "32", "--eval-tokens", "96"], in: dir)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("eval: 96 tokens of text.txt, 3 chunks of 32, 45 tokens scored"), r.out)
        // Rows: name, PPL, "+/-", error, then KL and same-top (parents) or "merge".
        let table = r.out.components(separatedBy: "\n").drop { !$0.hasPrefix("model ") }
        func row(_ name: String) -> [String]? {
            table.map { $0.split(separator: " ").map(String.init) }.first { $0.first == name }
        }
        let merged = try XCTUnwrap(row("merged"), r.out), base = try XCTUnwrap(row("base"), r.out), a = try XCTUnwrap(row("a"), r.out)
        XCTAssertEqual(merged[4], "merge", r.out)
        XCTAssertEqual(base[1], merged[1], "the merge that is the base has the base's perplexity")
        XCTAssertEqual(Double(base[4]), 0, "KL of the base from itself")
        XCTAssertEqual(base[5], "100.00")
        XCTAssertNotEqual(a[1], merged[1])
        XCTAssertGreaterThan(try XCTUnwrap(Double(a[4])), 1e-4, "the other parent's distributions differ")
        XCTAssertGreaterThan(try XCTUnwrap(Double(merged[1])), 1)

        // Bad input: a .safetensors output cannot be loaded back; a context past the model's positions; fewer tokens than a chunk.
        let lone = try runLathe(["merge", "keep.yaml", "--output", "m.safetensors", "--eval", "text.txt"], in: dir)
        XCTAssertEqual(lone.status, 64)
        XCTAssertTrue(lone.err.contains("--eval loads the merge"), lone.err)
        let long = try runLathe(["merge", "keep.yaml", "--output", "merged2", "--eval", "text.txt", "--eval-context", "128"], in: dir)
        XCTAssertEqual(long.status, 1)
        XCTAssertTrue(long.err.contains("--eval: the context 128 is longer than"), long.err)
        let few = try runLathe(["merge", "keep.yaml", "--output", "merged3", "--eval", "text.txt", "--eval-context", "32", "--eval-tokens", "16"], in: dir)
        XCTAssertEqual(few.status, 64)
        XCTAssertTrue(few.err.contains("--eval-tokens must be at least --eval-context"), few.err)
    }
}
