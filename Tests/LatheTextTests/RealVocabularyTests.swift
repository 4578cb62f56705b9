import Foundation
import LatheIO
import LatheText
import XCTest
import _LatheTestSupport

/// Real vocabularies against their references, run by hand: prepare the folder with
/// Tools/reference/check_tokenizers.py and set LATHE_TOKENIZER_CHECK to it. Skipped otherwise
/// (the unit tests never download anything). Prints agreement figures and speed.
final class RealVocabularyTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        guard let path = ProcessInfo.processInfo.environment["LATHE_TOKENIZER_CHECK"] else {
            throw XCTSkip("set LATHE_TOKENIZER_CHECK to a folder made by Tools/reference/check_tokenizers.py")
        }
        folder = URL(fileURLWithPath: path)
    }

    func json(_ name: String) throws -> JSONValue? {
        let url = folder.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        return try JSONParser.parse([UInt8](Data(contentsOf: url)))
    }

    func lines() throws -> [String] { try json("lines.json")!.arrayValue!.map { $0.stringValue! } }

    /// A GGUF vocabulary from the arrays check_tokenizers.py extracted.
    func gguf(_ a: JSONValue, source: String) throws -> BPETokenizer {
        func int(_ k: String) -> Int? { a[k]?.intValue }
        return try BPETokenizer(
            ggufModel: a["model"]!.stringValue!, pre: a["pre"]?.stringValue,
            tokens: a["tokens"]!.arrayValue!.map { $0.stringValue! },
            merges: a["merges"]?.arrayValue?.map { $0.stringValue! } ?? [],
            tokenTypes: a["token_type"]?.arrayValue?.map { Int32($0.intValue!) },
            scores: a["scores"]?.arrayValue?.map { Float($0.doubleValue!) },
            bos: int("bos_token_id"), eos: int("eos_token_id"), unk: int("unknown_token_id"), pad: int("padding_token_id"),
            addBOS: a["add_bos_token"]?.boolValue, addEOS: a["add_eos_token"]?.boolValue,
            addSpacePrefix: a["add_space_prefix"]?.boolValue, source: source)
    }

    /// Per-line agreement; prints the first few differences.
    func agreement(_ name: String, _ t: any Tokenizer, _ lines: [String], _ expected: [[Int]], addSpecialTokens: Bool) -> Int {
        var same = 0
        var shown = 0
        for (l, e) in zip(lines, expected) {
            let got = t.encode(l, addSpecialTokens: addSpecialTokens)
            if got == e { same += 1; continue }
            if shown < 5 {
                print("  \(name) differs on \"\(visible(l))\":\n    got      \(got)\n    expected \(e)")
                shown += 1
            }
        }
        print("\(name): \(same)/\(min(lines.count, expected.count)) lines agree")
        return same
    }

    func testMiniLM() throws {
        guard let cases = try json("minilm.cases.json") else { throw XCTSkip("no minilm.cases.json") }
        let t = try loadTokenizer(contentsOf: folder.appendingPathComponent("minilm.json"))
        let lines = try lines()
        let expected = cases.arrayValue!.map { ints($0) }
        let same = agreement("all-MiniLM-L6-v2 vs HF tokenizers", t, lines, expected, addSpecialTokens: true)
        XCTAssertEqual(same, lines.count)
        measure("all-MiniLM-L6-v2", t)
    }

    func testSmolLM2() throws {
        guard let arrays = try json("smollm2.gguf.json"), let cases = try json("smollm2.cases.json") else {
            throw XCTSkip("no smollm2 files")
        }
        let t = try gguf(arrays, source: "SmolLM2-135M-Instruct.Q4_1.gguf")
        let lines = try lines()
        let hf = cases["hf"]!.arrayValue!.map { ints($0) }
        _ = agreement("SmolLM2 (GGUF) vs transformers' GGUF tokenizer", t, lines, hf, addSpecialTokens: false)
        if let whole = cases["llama_cpp_whole"] {
            let got = t.encode(lines.joined(separator: "\n"), addSpecialTokens: false)
            let e = ints(whole)
            let prefix = zip(got, e).prefix { $0 == $1 }.count
            print("SmolLM2 (GGUF) vs llama.cpp on the whole text: \(got == e ? "identical" : "differs at token \(prefix)"), \(got.count) vs \(e.count) tokens")
            XCTAssertEqual(got, e)
        }
        if let per = cases["llama_cpp_lines"]?.arrayValue, let texts = cases["llama_cpp_texts"]?.arrayValue {
            let same = agreement("SmolLM2 (GGUF) vs llama.cpp", t, texts.map { $0.stringValue! }, per.map { ints($0) }, addSpecialTokens: false)
            XCTAssertEqual(same, per.count)
        }
        measure("SmolLM2", t)
    }

    func testLlamaCppVocabularies() throws {
        let others = (try? FileManager.default.contentsOfDirectory(atPath: folder.path))?
            .filter { $0.hasPrefix("gguf-") && $0.hasSuffix(".json") }.sorted() ?? []
        for name in ["gpt-2", "llama-bpe", "qwen2", "starcoder", "refact", "command-r", "llama-spm", "mpt"].map({ "llamacpp-\($0).json" }) + others {
            guard let file = try json(name) else { continue }
            let t: BPETokenizer
            do { t = try gguf(file["arrays"]!, source: name) } catch {
                print("llama.cpp \(name): \(error)")
                continue
            }
            let cases = file["cases"]!.arrayValue!
            let texts = cases.map { $0["text"]!.stringValue! }
            if !cases.isEmpty {
                let same = agreement("\(name) vs its .inp/.out cases", t, texts, cases.map { ints($0["ids"]) }, addSpecialTokens: false)
                XCTAssertEqual(same, texts.count, name)
            }
            if let ref = file["llama_cpp"]?.arrayValue {
                let lines = ref.map { $0["text"]!.stringValue! }
                let n = agreement("\(name) vs llama.cpp on Shakespeare lines", t, lines, ref.map { ints($0["ids"]) }, addSpecialTokens: false)
                XCTAssertEqual(n, lines.count, name)
                measure(name, t)
            }
        }
    }

    /// Tokens per second on the bundled Shakespeare (2.65 M characters), one thread.
    func measure(_ name: String, _ t: any Tokenizer) {
        guard let url = Bundle.allBundles.compactMap({ $0.url(forResource: "shakespeare.txt", withExtension: "gz") }).first
                ?? Optional(URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                    .deletingLastPathComponent().appendingPathComponent("Sources/LatheData/Resources/shakespeare.txt.gz")),
              let text = try? gunzipText(url) else { return }
        let start = Date()
        let ids = t.encode(text, addSpecialTokens: false)
        let seconds = Date().timeIntervalSince(start)
        let decoded = t.decode(ids, skipSpecialTokens: false)
        print(String(format: "%@: %d characters -> %d tokens in %.3f s: %.0f tokens/s, %.1f MB/s; decode round trip %@",
                     name, text.count, ids.count, seconds, Double(ids.count) / seconds,
                     Double(text.utf8.count) / seconds / 1e6, decoded == text ? "exact" : "differs"))
    }

    func gunzipText(_ url: URL) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "gzip -dc '\(url.path)'"]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
