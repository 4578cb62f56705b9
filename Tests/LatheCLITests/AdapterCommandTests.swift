import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// `lathe generate --adapter` on the tiny Llama fixture with PEFT's LoRA adapter.
final class AdapterCommandTests: XCTestCase {
    func testGenerateWithALiveAdapter() throws {
        // llama-tiny has no tokenizer: borrow gpt2-tiny's (its ids for "abc" are inside llama-tiny's 96 tokens).
        let dir = try temporaryDirectory()
        let llm = fixturesDirectory.appendingPathComponent("llm")
        for (from, name) in [("llama-tiny/config.json", "config.json"), ("llama-tiny/model.safetensors", "model.safetensors"),
                             ("gpt2-tiny/tokenizer.json", "tokenizer.json")] {
            try FileManager.default.copyItem(at: llm.appendingPathComponent(from), to: dir.appendingPathComponent(name))
        }
        let adapter = fixturesDirectory.appendingPathComponent("lora/llama-lora").path
        let args = ["generate", dir.path, "--prompt", "abc", "--temperature", "0", "--max-tokens", "12", "--threads", "1"]
        let plain = try runLathe(args)
        XCTAssertEqual(plain.status, 0, plain.err)
        let adapted = try runLathe(args + ["--adapter", adapter])
        XCTAssertEqual(adapted.status, 0, adapted.err)
        XCTAssertTrue(adapted.err.contains("LoRA on 8 layers"), adapted.err)
        XCTAssertTrue(adapted.out.hasPrefix("abc") && plain.out.hasPrefix("abc"), adapted.out)
        XCTAssertNotEqual(adapted.out, plain.out, "the adapter changes the greedy continuation")

        let missing = try runLathe(args + ["--adapter", dir.appendingPathComponent("nope").path])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.err.contains("a PEFT adapter folder?"), missing.err)
        let wrongModel = try runLathe(["generate", llm.appendingPathComponent("gpt2-tiny").path, "--prompt", "abc", "--adapter", adapter])
        XCTAssertEqual(wrongModel.status, 1)
        XCTAssertTrue(wrongModel.err.contains("adapters apply to Llama-family decoders"), wrongModel.err)
    }
}
