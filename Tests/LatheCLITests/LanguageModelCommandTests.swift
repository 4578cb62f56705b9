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

    func testConvertWritesAFolderLatheAndTransformersRead() throws {
        let source = fixturesDirectory.appendingPathComponent("llm/llama3-tiny")
        let out = try temporaryDirectory().appendingPathComponent("converted")
        let c = try runLathe(["convert", source.path, "--output", out.path, "--dtype", "bf16"])
        XCTAssertEqual(c.status, 0, c.err)
        XCTAssertTrue(c.out.contains("model.safetensors") && c.out.contains("config.json"), c.out)
        let original = try DecoderModel.load(huggingFaceFolder: source), converted = try DecoderModel.load(huggingFaceFolder: out)
        XCTAssertEqual(converted.config, original.config)
        let ids = [5, 9, 33, 2]
        let gap = zip(converted.logits(ids).scalars, original.logits(ids).scalars).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(gap, 0, "bfloat16 weights round")
        XCTAssertLessThan(gap, 0.05)

        let gguf = try runLathe(["convert", source.path, "--output", out.path + ".gguf"])
        XCTAssertEqual(gguf.status, 64)
        XCTAssertTrue(gguf.err.contains("writing a .gguf file needs --type"), gguf.err)
        let llama3 = try runLathe(["convert", source.path, "--output", out.path + ".gguf", "--type", "f16"])
        XCTAssertEqual(llama3.status, 1)
        XCTAssertTrue(llama3.err.contains("rope_freqs"), llama3.err)
        let missing = try runLathe(["convert", source.path + "-nope", "--output", out.path])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.err.contains("no such file or folder"), missing.err)
    }

    /// `lathe convert FILE.gguf --output OUT.gguf --type T`: the file llama.cpp would load, and
    /// clear errors for unknown types, mixed-up options and an output that is the input.
    func testConvertWritesGGUF() throws {
        let source = fixturesDirectory.appendingPathComponent("llm/gpt2-tiny/model.gguf")
        let dir = try temporaryDirectory()
        let out = dir.appendingPathComponent("q8.gguf")
        let c = try runLathe(["convert", source.path, "--output", out.path, "--type", "q8_0", "--verbose"])
        XCTAssertEqual(c.status, 0, c.err)
        XCTAssertTrue(c.out.contains("wrote \(out.path) (Q8_0): 28 tensors (F32 19, Q8_0 9)"), c.out)
        XCTAssertTrue(c.out.contains("blk.0.ffn_up.weight  [64, 256]  F32 -> Q8_0"), c.out)
        XCTAssertTrue(c.out.contains("position_embd.weight  [64, 64]  F32 -> F32 (copied)"), c.out)
        let file = try GGUFFile(contentsOf: out)
        XCTAssertEqual(try file.int("general.file_type"), 7)
        XCTAssertNoThrow(try GPT2Model.load(gguf: file))

        let unknown = try runLathe(["convert", source.path, "--output", out.path, "--type", "q3_x"])
        XCTAssertEqual(unknown.status, 64)
        XCTAssertTrue(unknown.err.contains("unknown --type 'q3_x'; Lathe writes f32, f16, bf16, q8_0"), unknown.err)
        let badOverride = try runLathe(["convert", source.path, "--output", out.path, "--type", "q4_0", "--output-tensor-type", "iq2_xs"])
        XCTAssertEqual(badOverride.status, 64)
        XCTAssertTrue(badOverride.err.contains("unknown --output-tensor-type 'iq2_xs'"), badOverride.err)
        let dtype = try runLathe(["convert", source.path, "--output", out.path, "--dtype", "f16"])
        XCTAssertEqual(dtype.status, 64)
        XCTAssertTrue(dtype.err.contains("a .gguf output takes --type"), dtype.err)
        let folderType = try runLathe(["convert", source.path, "--output", dir.appendingPathComponent("hf").path, "--type", "q8_0"])
        XCTAssertEqual(folderType.status, 64)
        XCTAssertTrue(folderType.err.contains("are for .gguf outputs"), folderType.err)
        let same = try runLathe(["convert", out.path, "--output", out.path, "--type", "q4_0"])
        XCTAssertEqual(same.status, 1)
        XCTAssertTrue(same.err.contains("the output is the input"), same.err)
        let noTokenizer = try runLathe(["convert", fixturesDirectory.appendingPathComponent("llm/llama-tiny").path,
                                        "--output", dir.appendingPathComponent("llama.gguf").path, "--type", "f16"])
        XCTAssertEqual(noTokenizer.status, 1)
        XCTAssertTrue(noTokenizer.err.contains("the tokenizer cannot be written to GGUF"), noTokenizer.err)
    }

    /// A GGUF file converted to a folder generates from the folder as from the file: the folder
    /// has the tokenizer (tokenizer.json) that `lathe generate` needs.
    func testConvertedGGUFFolderGenerates() throws {
        let smol = try fetchedModel("SmolLM2-135M-Instruct.Q4_1.gguf").path
        let out = try temporaryDirectory().appendingPathComponent("smollm2")
        let c = try runLathe(["convert", smol, "--output", out.path])
        XCTAssertEqual(c.status, 0, c.err)
        XCTAssertTrue(c.out.contains("tokenizer.json") && c.out.contains("tokenizer_config.json"), c.out)
        let g = try runLathe(["generate", out.path, "--prompt", "The capital of France is", "--temperature", "0", "--max-tokens", "3", "--threads", "2"])
        XCTAssertEqual(g.status, 0, g.err)
        XCTAssertTrue(g.out.hasPrefix("The capital of France is Paris."), g.out)
        let t = try runLathe(["tokenize", out.path, "--text", "The capital of France is", "--json"])
        XCTAssertEqual(t.status, 0, t.err)
        let ids = try JSONParser.parse(t.out.trimmingCharacters(in: .whitespacesAndNewlines))["ids"]?.arrayValue?.compactMap(\.intValue)
        XCTAssertEqual(ids, [504, 3575, 282, 4649, 314])
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

/// `lathe chat` and `lathe generate --chat` on SmolLM2-135M-Instruct, whose GGUF file carries its
/// chat template.
final class ChatCommandTests: XCTestCase {
    func testChatAnswersEachTurn() throws {
        let smol = try fetchedModel("SmolLM2-135M-Instruct.Q4_1.gguf").path
        let run = try runLathe(["chat", smol, "--temperature", "0", "--max-tokens", "16", "--threads", "2"],
                               input: "What is the capital of France?\n\nAnd what is the capital of Japan?\n")
        let (out, err) = (run.out, run.err)
        XCTAssertEqual(run.status, 0, err)
        // One speed line per turn (the empty line is skipped), each with a non-empty reply.
        let turns = err.split(separator: "\n").filter { $0.hasPrefix("prompt: ") }
        XCTAssertEqual(turns.count, 2, err)
        for t in turns { XCTAssertFalse(t.contains("generated: 0 tokens"), err) }
        // The second prompt holds the whole conversation: what the first turn left in the cache
        // is reused ("(+N cached)"), only the rest is run.
        let promptTokens = turns.compactMap { $0.split(separator: " ").dropFirst().first.flatMap { Int($0) } }
        XCTAssertEqual(promptTokens.count, 2, err)
        XCTAssertFalse(turns[0].contains("cached"), err)
        let cached = turns[1].components(separatedBy: "(+").dropFirst().first.flatMap { Int($0.prefix { $0.isNumber }) } ?? 0
        XCTAssertGreaterThanOrEqual(cached, promptTokens[0], "the first turn's prompt is reused: \(err)")
        XCTAssertGreaterThan(cached + promptTokens[1], promptTokens[0] + 10, err)
        let replies = out.split(separator: "\n", omittingEmptySubsequences: true)
        XCTAssertGreaterThanOrEqual(replies.count, 2, out)
        // The first answer is llama.cpp's (llama-completion, greedy, the same rendered prompt: "L'Étoile, la
        // Marseillaise, ..." with 8-bit activations as here); the second, from the reused cache, names Tokyo.
        XCTAssertTrue(out.hasPrefix("L'Étoile, la Marseillaise"), out)
        XCTAssertTrue(out.contains("Tokyo"), out)
    }

    func testGenerateChatAndModelsWithoutTemplate() throws {
        let smol = try fetchedModel("SmolLM2-135M-Instruct.Q4_1.gguf").path
        let g = try runLathe(["generate", smol, "--chat", "--system", "Answer in one short sentence.", "--prompt", "What is the capital of France?",
                              "--temperature", "0", "--max-tokens", "16", "--threads", "2"])
        XCTAssertEqual(g.status, 0, g.err)
        XCTAssertTrue(g.out.contains("Paris"), g.out)
        XCTAssertFalse(g.out.contains("What is the capital"), "the chat prompt is not echoed: \(g.out)")
        XCTAssertTrue(g.err.contains("stopToken"), "the reply ends at the end-of-turn token: \(g.err)")

        let noChat = try runLathe(["generate", smol, "--prompt", "x", "--system", "y"])
        XCTAssertNotEqual(noChat.status, 0)
        XCTAssertTrue(noChat.err.contains("--system needs --chat"), noChat.err)

        let gemma = try fetchedModel("gemma-3-270m-q4_k_m.gguf").path
        let noTemplate = try runLathe(["chat", gemma, "--max-tokens", "2"], input: "")
        XCTAssertEqual(noTemplate.status, 1, noTemplate.err)
        XCTAssertTrue(noTemplate.err.contains("has no chat template"), noTemplate.err)
    }
}
