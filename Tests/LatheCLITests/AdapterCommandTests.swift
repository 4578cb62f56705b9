import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// `lathe generate --adapter`, `lathe fuse` and `lathe bench lora-step` on the tiny Llama
/// fixture with PEFT's LoRA adapter.
final class AdapterCommandTests: XCTestCase {
    /// llama-tiny has no tokenizer: a folder with it and gpt2-tiny's (whose ids for "abc" are inside llama-tiny's 96 tokens).
    func tinyLlamaWithTokenizer() throws -> URL {
        let dir = try temporaryDirectory()
        let llm = fixturesDirectory.appendingPathComponent("llm")
        for (from, name) in [("llama-tiny/config.json", "config.json"), ("llama-tiny/model.safetensors", "model.safetensors"),
                             ("gpt2-tiny/tokenizer.json", "tokenizer.json")] {
            try FileManager.default.copyItem(at: llm.appendingPathComponent(from), to: dir.appendingPathComponent(name))
        }
        return dir
    }

    func testGenerateWithALiveAdapter() throws {
        let dir = try tinyLlamaWithTokenizer()
        let llm = fixturesDirectory.appendingPathComponent("llm")
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
        XCTAssertTrue(missing.err.contains("no such adapter folder or file"), missing.err)
        let wrongModel = try runLathe(["generate", llm.appendingPathComponent("gpt2-tiny").path, "--prompt", "abc", "--adapter", adapter])
        XCTAssertEqual(wrongModel.status, 1)
        XCTAssertTrue(wrongModel.err.contains("adapters apply to Llama-family decoders"), wrongModel.err)
    }

    /// mlx-lm folders and llama.cpp GGUF adapters run with `--adapter`; `convert-adapter` writes them as PEFT folders and GGUF files.
    func testAdapterFormatsAndConvertAdapter() throws {
        let dir = try tinyLlamaWithTokenizer(), out = try temporaryDirectory()
        let lora = fixturesDirectory.appendingPathComponent("lora")
        let mlx = lora.appendingPathComponent("llama-mlx-lora").path
        let args = ["generate", dir.path, "--prompt", "abc", "--temperature", "0", "--max-tokens", "12", "--threads", "1"]
        let plain = try runLathe(args), viaMLX = try runLathe(args + ["--adapter", mlx])
        XCTAssertEqual(viaMLX.status, 0, viaMLX.err)
        XCTAssertTrue(viaMLX.err.contains("mlx-lm LoRA on 7 layers"), viaMLX.err)
        XCTAssertNotEqual(viaMLX.out, plain.out, "the adapter changes the greedy continuation")

        let gguf = out.appendingPathComponent("mlx.gguf").path
        let toGGUF = try runLathe(["convert-adapter", "--model", dir.path, "--adapter", mlx, "--output", gguf])
        XCTAssertEqual(toGGUF.status, 0, toGGUF.err)
        XCTAssertTrue(toGGUF.out.contains("llama.cpp LoRA adapter (14 f32 tensors) from the mlx-lm LoRA adapter"), toGGUF.out)
        let viaGGUF = try runLathe(args + ["--adapter", gguf])
        XCTAssertTrue(viaGGUF.err.contains("llama.cpp GGUF LoRA on 7 layers"), viaGGUF.err)
        XCTAssertEqual(viaGGUF.out, viaMLX.out)

        let peft = out.appendingPathComponent("peft").path
        let toPEFT = try runLathe(["convert-adapter", "--model", dir.path, "--adapter", gguf, "--output", peft])
        XCTAssertEqual(toPEFT.status, 0, toPEFT.err)
        XCTAssertTrue(toPEFT.out.contains("PEFT LoRA adapter (r 4, lora_alpha 80) from the llama.cpp GGUF adapter"), toPEFT.out)
        XCTAssertEqual(try runLathe(args + ["--adapter", peft]).out, viaMLX.out)

        let fused = try runLathe(["fuse", "--model", dir.path, "--adapter", mlx, "--output", out.appendingPathComponent("fused").path, "--chunks", "0"])
        XCTAssertEqual(fused.status, 0, fused.err)
        XCTAssertTrue(fused.out.contains("fused LoRA into 7 layers"), fused.out)

        let dora = try runLathe(["convert-adapter", "--model", dir.path, "--adapter", lora.appendingPathComponent("llama-mlx-dora").path,
                                 "--output", out.appendingPathComponent("d.gguf").path])
        XCTAssertEqual(dora.status, 1)
        XCTAssertTrue(dora.err.contains("no DoRA magnitudes"), dora.err)
        let type = try runLathe(["convert-adapter", "--model", dir.path, "--adapter", mlx, "--output", gguf, "--type", "q8_0"])
        XCTAssertNotEqual(type.status, 0)
        XCTAssertTrue(type.err.contains("--type is f32, f16 or bf16"), type.err)
        let notAdapter = try runLathe(args + ["--adapter", fixturesDirectory.appendingPathComponent("gguf/align64.gguf").path])
        XCTAssertEqual(notAdapter.status, 1)
        XCTAssertTrue(notAdapter.err.contains("not 'adapter'"), notAdapter.err)
    }

    func testChatWithALiveAdapter() throws {
        // A one-line chat template: the turn's text as it is.
        let dir = try tinyLlamaWithTokenizer()
        try Data(#"{"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}"#.utf8)
            .write(to: dir.appendingPathComponent("tokenizer_config.json"))
        let adapter = fixturesDirectory.appendingPathComponent("lora/llama-lora").path
        func chat(_ extra: [String]) throws -> LatheRun {
            try runLathe(["chat", dir.path, "--temperature", "0", "--max-tokens", "12", "--threads", "1"] + extra, input: "abc\n")
        }
        let plain = try chat([]), adapted = try chat(["--adapter", adapter])
        XCTAssertEqual(plain.status, 0, plain.err)
        XCTAssertEqual(adapted.status, 0, adapted.err)
        XCTAssertTrue(adapted.err.contains("LoRA on 8 layers"), adapted.err)
        XCTAssertFalse(adapted.out.isEmpty, adapted.err)
        XCTAssertNotEqual(adapted.out, plain.out, "the adapter changes the greedy reply")
        let missing = try chat(["--adapter", dir.appendingPathComponent("nope").path])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.err.contains("no such adapter folder or file"), missing.err)
    }

    /// llama-tiny padded to the bpe-smollm test vocabulary (560 tokens) with that tokenizer, as a
    /// Hugging Face folder and as a Q8_0 GGUF file.
    func makeBases(_ dir: URL) throws -> (folder: URL, gguf: URL) {
        let llm = fixturesDirectory.appendingPathComponent("llm/llama-tiny")
        let folder = dir.appendingPathComponent("llama-bpe")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let st = try MappedSafeTensors(contentsOf: llm.appendingPathComponent("model.safetensors"))
        var tensors: [String: Tensor] = [:]
        for name in st.tensorNames { tensors[name] = try st.float32Tensor(named: name) }
        var rng = TestRNG(3)
        tensors["model.embed_tokens.weight"] = Tensor(tensors["model.embed_tokens.weight"]!.scalars + rng.floats((560 - 96) * 64, -0.02, 0.02),
                                                     shape: [560, 64])
        try SafeTensors.write(tensors, metadata: ["format": "pt"], to: folder.appendingPathComponent("model.safetensors"))
        let config = try String(contentsOf: llm.appendingPathComponent("config.json"), encoding: .utf8)
            .replacingOccurrences(of: "\"vocab_size\": 96", with: "\"vocab_size\": 560")
        try config.write(to: folder.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("text/bpe-smollm.json"),
                                         to: folder.appendingPathComponent("tokenizer.json"))
        let gguf = dir.appendingPathComponent("base-q8_0.gguf")
        try GGUFExport.write(huggingFaceFolder: folder, to: gguf, rules: GGUFTypeRules(fileType: .q8_0))
        return (folder, gguf)
    }

    /// The printed mean KL divergence and same-top-token percentage.
    func comparison(_ out: String) -> (kl: Double, same: Double)? {
        guard let klLine = out.split(separator: "\n").first(where: { $0.hasPrefix("KL divergence: mean ") }),
              let sameLine = out.split(separator: "\n").first(where: { $0.hasPrefix("same top token: ") }) else { return nil }
        let kl = Double(klLine.dropFirst("KL divergence: mean ".count).prefix { $0 != "," })
        let same = Double(sameLine.dropFirst("same top token: ".count).prefix { $0 != " " })
        guard let kl, let same else { return nil }
        return (kl, same)
    }

    func testFusePrintsTheKLFromTheLiveAdapter() throws {
        let dir = try temporaryDirectory()
        let (folder, gguf) = try makeBases(dir)
        let adapter = fixturesDirectory.appendingPathComponent("lora/llama-lora").path
        // Into the quantized base, quantized again as Q8_0 (its own type), compared on the bundled Shakespeare.
        let fusedGGUF = dir.appendingPathComponent("fused.gguf").path
        let q = try runLathe(["fuse", "--model", gguf.path, "--adapter", adapter, "--output", fusedGGUF, "--threads", "1"])
        XCTAssertEqual(q.status, 0, q.err)
        XCTAssertTrue(q.out.contains("fused LoRA into 8 layers"), q.out)
        XCTAssertTrue(q.out.contains("Q8_0"), q.out)
        XCTAssertTrue(q.out.contains("on the bundled Shakespeare: 124 tokens scored (4 chunks of 64)"), q.out)
        let (kl, same) = try XCTUnwrap(comparison(q.out), q.out)
        XCTAssertTrue(kl > 0 && kl < 3e-4, "measured 3.3e-5: \(q.out)")
        XCTAssertGreaterThan(same, 95, q.out)
        let droppedLine = try XCTUnwrap(q.out.split(separator: "\n").first { $0.hasPrefix("base without the adapter vs live adapter: KL mean ") }, q.out)
        let dropped = try XCTUnwrap(Double(droppedLine.dropFirst("base without the adapter vs live adapter: KL mean ".count).prefix { $0 != " " }))
        XCTAssertGreaterThan(dropped, 20 * kl, "the fused file keeps the adapter: \(q.out)")
        XCTAssertFalse(q.err.contains("warning"), q.err)
        // A float folder from the float base: the live adapter's distribution.
        let text = dir.appendingPathComponent("text.txt")
        try String(repeating: "The quick brown fox jumps over the lazy dog, and the dog sleeps on. ", count: 20).write(to: text, atomically: true, encoding: .utf8)
        let f = try runLathe(["fuse", "--model", folder.path, "--adapter", adapter, "--output", dir.appendingPathComponent("fused-hf").path,
                              "--eval-file", text.path, "--context", "32", "--chunks", "2", "--threads", "1"])
        XCTAssertEqual(f.status, 0, f.err)
        let (klF, sameF) = try XCTUnwrap(comparison(f.out), f.out)
        XCTAssertLessThan(klF, 1e-8, f.out)
        XCTAssertEqual(sameF, 100, f.out)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("fused-hf/tokenizer.json").path))

        for (args, message) in [(["--output", dir.appendingPathComponent("x").path, "--type", "q4_0"], "quantized types need a .gguf output"),
                                (["--output", dir.appendingPathComponent("x.gguf").path, "--type", "q9"], "unknown --type 'q9'"),
                                (["--output", dir.appendingPathComponent("y").path, "--adapter", folder.path], "has neither adapter_model.safetensors (PEFT) nor adapters.safetensors (mlx-lm)"),
                                (["--output", dir.appendingPathComponent("c.gguf").path, "--calibrate", "awq"], "--calibrate takes gptq"),
                                (["--output", dir.appendingPathComponent("c.gguf").path, "--calibrate", "gptq", "--type", "q8_0"], "q4_0 or q4_1"),
                                (["--output", dir.appendingPathComponent("c.gguf").path, "--calibrate", "gptq"], "q4_0 or q4_1"),
                                (["--output", dir.appendingPathComponent("c.gguf").path, "--calibration-file", text.path], "needs --calibrate gptq")] {
            var all = ["fuse", "--model", gguf.path] + args
            if !args.contains("--adapter") { all += ["--adapter", adapter] }
            let r = try runLathe(all)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.err.contains(message), "\(args): \(r.err)")
        }
        let hfToGGUF = try runLathe(["fuse", "--model", folder.path, "--adapter", adapter, "--output", dir.appendingPathComponent("z.gguf").path])
        XCTAssertEqual(hfToGGUF.status, 1)
        XCTAssertTrue(hfToGGUF.err.contains("needs --type"), hfToGGUF.err)
        // A float base into a Q8_0 file: through a float32 folder of the fused model, written as GGUF.
        let g = try runLathe(["fuse", "--model", folder.path, "--adapter", adapter, "--output", dir.appendingPathComponent("z.gguf").path,
                              "--type", "q8_0", "--eval-file", text.path, "--context", "32", "--chunks", "2", "--threads", "1"])
        XCTAssertEqual(g.status, 0, g.err)
        let (klG, _) = try XCTUnwrap(comparison(g.out), g.out)
        XCTAssertTrue(klG > 0 && klG < 3e-4, g.out)
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains("fused-") && $0.hasPrefix(".") }
        XCTAssertEqual(left, [], "the staging folder is removed")
    }

    func testLoRAStepBenchmarkOnAQuantizedBase() throws {
        let dir = try temporaryDirectory()
        let (_, gguf) = try makeBases(dir)
        let saved = dir.appendingPathComponent("adapter")
        let r = try runLathe(["bench", "lora-step", gguf.path, "--qlora", "--batch", "2", "--seq", "16", "--repeat", "3", "--learning-rate", "1e-2",
                              "--save-adapter", saved.path, "--json", "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.err)
        let row = try JSONParser.parse(String(r.out.split(separator: "\n").last ?? ""))
        XCTAssertEqual(row["quantized_layers"]?.intValue, 14)
        XCTAssertEqual(row["adapted_layers"]?.intValue, 14)
        XCTAssertGreaterThan(row["peak_rss_mb"]?.doubleValue ?? 0, row["baseline_rss_mb"]?.doubleValue ?? .infinity)
        XCTAssertLessThan(row["last_loss"]?.doubleValue ?? .infinity, row["loss"]?.doubleValue ?? 0, "four steps on one batch lower its loss")
        XCTAssertEqual(try PEFTAdapter.readConfig(folder: saved).rank, 8)
        let float = try runLathe(["bench", "lora-step", dir.appendingPathComponent("llama-bpe").path, "--qlora"])
        XCTAssertEqual(float.status, 64)
        XCTAssertTrue(float.err.contains("--qlora needs a .gguf file"), float.err)
    }
}
