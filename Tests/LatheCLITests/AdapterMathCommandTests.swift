import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// `lathe merge-adapters` and `lathe extract-lora` end to end.
final class AdapterMathCommandTests: XCTestCase {
    let arithmetic = fixturesDirectory.appendingPathComponent("lora/arithmetic")
    let llamaTiny = fixturesDirectory.appendingPathComponent("llm/llama-tiny")

    func testHelpNamesTheMethodsAndTheSplit() throws {
        let merge = try runLathe(["merge-adapters", "--help"])
        XCTAssertEqual(merge.status, 0)
        for method in ["cat", "linear", "svd", "ties_svd", "dare_linear_svd", "dare_ties_svd", "magnitude_prune_svd", "--density", "--rank"] {
            XCTAssertTrue(merge.out.contains(method), "merge-adapters --help lacks \(method)")
        }
        let extract = try runLathe(["extract-lora", "--help"])
        XCTAssertEqual(extract.status, 0)
        XCTAssertTrue(extract.out.contains("lora_B = U_r S_r"), extract.out)
        XCTAssertTrue(extract.out.contains("--targets"), extract.out)
    }

    func testMergeAdapters() throws {
        let dir = try temporaryDirectory()
        let a = arithmetic.appendingPathComponent("a").path, b = arithmetic.appendingPathComponent("b").path
        let out = dir.appendingPathComponent("mixed")
        let run = try runLathe(["merge-adapters", "--adapter", "\(a):0.8", "--adapter", "\(b):-0.5", "--method", "ties_svd", "--density", "0.5",
                                "--rank", "3", "--output", out.path, "--threads", "1"])
        XCTAssertEqual(run.status, 0, run.err)
        XCTAssertTrue(run.out.contains("combined 2 adapters with ties_svd"), run.out)
        XCTAssertTrue(run.out.contains("8 layers, r 3, lora_alpha 3"), run.out)
        let config = try PEFTAdapter.readConfig(folder: out)
        XCTAssertEqual(config.rank, 3)
        let model = try DecoderModel.load(huggingFaceFolder: llamaTiny)
        try PEFTAdapter.load(folder: out, into: model)
        XCTAssertEqual(model.loraLayers.count, 8)

        let unknown = try runLathe(["merge-adapters", "--adapter", a, "--method", "average", "--output", out.path])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.err.contains("unknown --method 'average'"), unknown.err)
        let missing = try runLathe(["merge-adapters", "--adapter", dir.appendingPathComponent("nope").path + ":1", "--method", "cat", "--output", out.path])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.err.contains("no such adapter folder"), missing.err)
        let noDensity = try runLathe(["merge-adapters", "--adapter", a, "--adapter", b, "--method", "dare_ties", "--output", out.path])
        XCTAssertEqual(noDensity.status, 1)
        XCTAssertTrue(noDensity.err.contains("dare_ties needs a density"), noDensity.err)
    }

    func testExtractLoRA() throws {
        // A fine-tune of llama-tiny: v_proj of layer 1 and the final norm changed.
        let dir = try temporaryDirectory()
        let ft = dir.appendingPathComponent("ft")
        try FileManager.default.createDirectory(at: ft, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: llamaTiny.appendingPathComponent("config.json"), to: ft.appendingPathComponent("config.json"))
        let base = try MappedSafeTensors(contentsOf: llamaTiny.appendingPathComponent("model.safetensors"))
        var tensors: [String: Tensor] = [:]
        for name in base.tensorNames { tensors[name] = try base.float32Tensor(named: name) }
        var g = RandomGenerator(seed: 9)
        let v = "model.layers.1.self_attn.v_proj.weight"
        tensors[v] = tensors[v]! + Tensor.normal([32, 64], std: 0.05, generator: &g)
        tensors["model.norm.weight"] = tensors["model.norm.weight"]! * 1.5
        try SafeTensors.write(tensors, metadata: ["format": "pt"], to: ft.appendingPathComponent("model.safetensors"))

        let out = dir.appendingPathComponent("adapter")
        let run = try runLathe(["extract-lora", "--model", ft.path, "--base", llamaTiny.path, "--rank", "32", "--output", out.path, "--threads", "1"])
        XCTAssertEqual(run.status, 0, run.err)
        XCTAssertTrue(run.out.contains("extracted 1 layers at rank 32"), run.out)
        XCTAssertTrue(run.out.contains("13 unchanged, skipped"), run.out)
        XCTAssertTrue(run.out.contains("not captured: model.norm.weight"), run.out)
        let config = try PEFTAdapter.readConfig(folder: out)
        XCTAssertEqual(config.targets, .names(["model.layers.1.self_attn.v_proj"]))
        XCTAssertEqual(config.alpha, 32)
        // At full rank (32 = min(32, 64)) base + adapter is the fine-tuned layer.
        let model = try DecoderModel.load(huggingFaceFolder: llamaTiny)
        try PEFTAdapter.load(folder: out, into: model)
        let layer = try XCTUnwrap(Dictionary(uniqueKeysWithValues: model.loraLayers)["model.layers.1.self_attn.v_proj"])
        let fused = (try base.float32Tensor(named: v) + layer.deltaWeight).scalars
        let gap = zip(fused, tensors[v]!.scalars).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(gap, 1e-4)

        let bad = try runLathe(["extract-lora", "--model", ft.path, "--base", dir.appendingPathComponent("nope").path, "--rank", "4", "--output", out.path])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.err.contains("no such file or folder"), bad.err)
        let same = try runLathe(["extract-lora", "--model", llamaTiny.path, "--base", llamaTiny.path, "--rank", "4", "--output", out.path])
        XCTAssertEqual(same.status, 1)
        XCTAssertTrue(same.err.contains("nothing to extract"), same.err)
    }
}
