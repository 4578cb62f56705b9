import Foundation
import LatheIO
import LatheLM
import LatheMerge
import LatheNN
import LatheTensor
import XCTest
import _LatheTestSupport

/// `extract-lora` on llama-tiny and a "fine-tune" of it made here: known perturbations of some
/// linear layers (one with a known spectrum) and of a norm.
final class LoRAExtractionTests: XCTestCase {
    let baseFolder = fixturesDirectory.appendingPathComponent("llm/llama-tiny")
    /// The singular values of the q_proj perturbation of layer 0.
    let spectrum: [Double] = [2, 1, 0.5, 0.25, 0.1]

    func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-extract-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// Orthonormal columns (m×k, row-major) by Gram–Schmidt of a random matrix.
    func orthonormal(_ m: Int, _ k: Int, _ g: inout RandomGenerator) -> [Double] {
        var cols = (0..<k).map { _ in Tensor.normal([m], generator: &g).scalars.map(Double.init) }
        for j in 0..<k {
            for p in 0..<j { let d = zip(cols[j], cols[p]).reduce(0) { $0 + $1.0 * $1.1 }; for i in 0..<m { cols[j][i] -= d * cols[p][i] } }
            let norm = cols[j].reduce(0) { $0 + $1 * $1 }.squareRoot()
            cols[j] = cols[j].map { $0 / norm }
        }
        return (0..<m * k).map { cols[$0 % k][$0 / k] }
    }

    /// Writes the fine-tune next to a copy of llama-tiny's config; returns its folder and the changes.
    func makeFineTune(changeNorm: Bool = true) throws -> (URL, [String: [Float]]) {
        let base = try MappedSafeTensors(contentsOf: baseFolder.appendingPathComponent("model.safetensors"))
        var tensors: [String: Tensor] = [:]
        for name in base.tensorNames { tensors[name] = try base.float32Tensor(named: name) }
        var g = RandomGenerator(seed: 5)
        var deltas: [String: [Float]] = [:]
        // q_proj of layer 0: U diag(spectrum) Vᵀ, rank 5.
        let u = orthonormal(64, 5, &g)
        let v = orthonormal(64, 5, &g)
        var q = [Float](repeating: 0, count: 64 * 64)
        for i in 0..<64 {
            for j in 0..<64 {
                var t = 0.0
                for k in 0..<5 { t += u[i * 5 + k] * spectrum[k] * v[j * 5 + k] }
                q[i * 64 + j] = Float(t)
            }
        }
        deltas["model.layers.0.self_attn.q_proj.weight"] = q
        for (name, shape) in [("model.layers.1.self_attn.v_proj.weight", [32, 64]), ("model.layers.0.mlp.down_proj.weight", [64, 96]),
                              ("model.layers.1.mlp.up_proj.weight", [96, 64])] {
            deltas[name] = Tensor.normal(shape, std: 0.05, generator: &g).scalars
        }
        for (name, d) in deltas {
            let t = tensors[name]!
            tensors[name] = Tensor(zip(t.scalars, d).map { $0 + $1 }, shape: t.shape)
        }
        if changeNorm { tensors["model.norm.weight"] = tensors["model.norm.weight"]! + 0.01 }
        let folder = try temporaryDirectory().appendingPathComponent("ft")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: baseFolder.appendingPathComponent("config.json"), to: folder.appendingPathComponent("config.json"))
        try SafeTensors.write(tensors, metadata: ["format": "pt"], to: folder.appendingPathComponent("model.safetensors"))
        return (folder, deltas)
    }

    /// W_base + B A (double) for `module`, against W_ft.
    func reconstructionError(_ result: LoRAExtraction.Result, module: String, base: HuggingFaceWeights, ft: HuggingFaceWeights) throws -> Double {
        let a = result.tensors[PEFTAdapter.prefix + module + ".lora_A.weight"]!, b = result.tensors[PEFTAdapter.prefix + module + ".lora_B.weight"]!
        let wb = try base.float32Tensor(named: module + ".weight").scalars, wf = try ft.float32Tensor(named: module + ".weight").scalars
        let (r, n, m) = (a.shape[0], a.shape[1], b.shape[0])
        let av = a.scalars, bv = b.scalars
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var t = Double(wb[i * n + j])
                for k in 0..<r { t += Double(bv[i * r + k]) * Double(av[k * n + j]) }
                worst = max(worst, abs(t - Double(wf[i * n + j])))
            }
        }
        return worst
    }

    func testFullRankReproducesTheFineTune() throws {
        let (folder, deltas) = try makeFineTune()
        let base = try HuggingFaceWeights.open(baseFolder.path), ft = try HuggingFaceWeights.open(folder.path)
        let result = try LoRAExtraction.extract(model: ft, base: base, options: .init(rank: 64, baseModelName: "llama-tiny"))
        XCTAssertEqual(result.config.rank, 64)
        XCTAssertEqual(result.config.alpha, 64, "scale 1")
        XCTAssertEqual(result.layers.count, 14, "7 linear layers in each of 2 blocks")
        XCTAssertEqual(Set(result.layers.filter { !$0.skipped }.map { $0.module + ".weight" }), Set(deltas.keys))
        XCTAssertEqual(result.config.targets, .names(deltas.keys.map { String($0.dropLast(7)) }.sorted()), "only some q_proj changed: exact paths")
        XCTAssertEqual(result.notCaptured.map(\.name), ["model.norm.weight"])
        XCTAssertEqual(result.notCaptured[0].maxDifference, 0.01, accuracy: 1e-4)
        var worst = 0.0
        for name in deltas.keys {
            let e = try reconstructionError(result, module: String(name.dropLast(7)), base: base, ft: ft)
            XCTAssertLessThan(e, 1e-4, name)
            worst = max(worst, e)
        }
        print("extract-lora at full rank: max |W_base + B A - W_ft| = \(worst)")

        // The streaming variant writes the same adapter (one layer's factors in memory at a time).
        let out = try temporaryDirectory().appendingPathComponent("adapter")
        let streamed = try LoRAExtraction.extract(model: ft, base: base, options: .init(rank: 64, baseModelName: "llama-tiny"), to: out)
        XCTAssertTrue(streamed.tensors.isEmpty)
        XCTAssertEqual(streamed.layers.map(\.module), result.layers.map(\.module))
        XCTAssertEqual(streamed.config, result.config)
        let written = try MappedSafeTensors(contentsOf: out.appendingPathComponent(PEFTAdapter.weightsFile))
        XCTAssertEqual(Set(written.tensorNames), Set(result.tensors.keys))
        for (name, t) in result.tensors { XCTAssertEqual(try written.float32Tensor(named: name).scalars, t.scalars, name) }

        // End to end: base + adapter (loaded as PEFT would) gives the fine-tune's logits.
        let adapted = try DecoderModel.load(huggingFaceFolder: baseFolder)
        try PEFTAdapter.load(folder: out, into: adapted)
        XCTAssertEqual(adapted.loraLayers.count, 4)
        // The norm change is not in the adapter: compare with the same fine-tune without it (same seed, same changes).
        let tuned = try DecoderModel.load(huggingFaceFolder: try makeFineTune(changeNorm: false).0)
        let plain = try DecoderModel.load(huggingFaceFolder: baseFolder)
        let ids = [3, 17, 42, 5, 88, 1, 60]
        let (la, lt, lp) = (adapted.logits(ids).scalars, tuned.logits(ids).scalars, plain.logits(ids).scalars)
        let adapterVsTuned = zip(la, lt).map { abs($0 - $1) }.max()!, plainVsTuned = zip(lp, lt).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(adapterVsTuned, 1e-4, "the adapter carries the fine-tune")
        XCTAssertGreaterThan(plainVsTuned, 0.1)
        print("logits: |base+adapter - fine-tune| \(adapterVsTuned), |base - fine-tune| \(plainVsTuned)")
    }

    func testLowRankIsTheBestApproximation() throws {
        let (folder, _) = try makeFineTune()
        let base = try HuggingFaceWeights.open(baseFolder.path), ft = try HuggingFaceWeights.open(folder.path)
        for r in [1, 3] {
            let result = try LoRAExtraction.extract(model: ft, base: base, options: .init(rank: r, targets: ["q_proj"]))
            let module = "model.layers.0.self_attn.q_proj"
            XCTAssertEqual(result.config.targets, .names([module]))
            XCTAssertEqual(result.layers.map(\.module), ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"])
            XCTAssertTrue(result.layers[1].skipped)
            // ‖Δ − B A‖_F = sqrt(Σ_{i>r} σᵢ²).
            let a = result.tensors[PEFTAdapter.prefix + module + ".lora_A.weight"]!.scalars, b = result.tensors[PEFTAdapter.prefix + module + ".lora_B.weight"]!.scalars
            let wb = try base.float32Tensor(named: module + ".weight").scalars, wf = try ft.float32Tensor(named: module + ".weight").scalars
            var error2 = 0.0
            for i in 0..<64 {
                for j in 0..<64 {
                    var t = Double(wf[i * 64 + j]) - Double(wb[i * 64 + j])
                    for k in 0..<r { t -= Double(b[i * r + k]) * Double(a[k * 64 + j]) }
                    error2 += t * t
                }
            }
            let tail = spectrum.dropFirst(r).reduce(0) { $0 + $1 * $1 }.squareRoot()
            let all = spectrum.reduce(0) { $0 + $1 * $1 }.squareRoot()
            XCTAssertEqual(error2.squareRoot(), tail, accuracy: 1e-5, "rank \(r)")
            XCTAssertEqual(result.layers[0].relativeError, tail / all, accuracy: 1e-5, "rank \(r): reported error")
            print("extract-lora rank \(r): error \(error2.squareRoot()), tail of the spectrum \(tail)")
            let missed = Set(result.notCaptured.map(\.name))
            XCTAssertEqual(missed, ["model.norm.weight", "model.layers.1.self_attn.v_proj.weight", "model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.up_proj.weight"])
        }
    }

    func testBadInputsGiveClearErrors() throws {
        let base = try HuggingFaceWeights.open(baseFolder.path)
        func message(_ model: HuggingFaceWeights, _ options: LoRAExtraction.Options) -> String {
            do { _ = try LoRAExtraction.extract(model: model, base: base, options: options); return "no error" } catch { return "\(error)" }
        }
        XCTAssertTrue(message(base, .init(rank: 4)).contains("nothing to extract"))
        XCTAssertTrue(message(base, .init(rank: 0)).contains("rank must be"))
        XCTAssertTrue(message(base, .init(rank: 4, targets: ["c_attn"])).contains("its linear modules: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj"))
        let gpt2 = try HuggingFaceWeights.open(fixturesDirectory.appendingPathComponent("llm/gpt2-tiny").path)
        XCTAssertThrowsError(try LoRAExtraction.checkCompatible(model: gpt2, base: gpt2)) { XCTAssertTrue("\($0)".contains("fan_in_fan_out"), "\($0)") }
        let qwen = try HuggingFaceWeights.open(fixturesDirectory.appendingPathComponent("llm/qwen2-tiny").path)
        XCTAssertThrowsError(try LoRAExtraction.checkCompatible(model: qwen, base: base)) { XCTAssertTrue("\($0)".contains("is a qwen2 and the base a llama"), "\($0)") }
        XCTAssertNoThrow(try LoRAExtraction.checkCompatible(model: base, base: base))
        let other = try HuggingFaceWeights.open(fixturesDirectory.appendingPathComponent("llm/llama3-tiny").path)
        let m = message(other, .init(rank: 4))
        XCTAssertTrue(m.contains("in the fine-tuned model but") || m.contains("has no"), m)
    }
}
