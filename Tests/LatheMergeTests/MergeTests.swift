import Foundation
import LatheMerge
import LatheIO
import LatheLM
import LatheTensor
import XCTest
import _LatheTestSupport

/// `lathe merge` against mergekit 0.1.5 on tiny random Llama models
/// (Tools/reference/make_merge_fixtures.py writes Tests/Fixtures/merge).
final class MergeTests: XCTestCase {
    let root = fixturesDirectory.appendingPathComponent("merge")

    func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-merge-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func configURL(_ name: String) -> URL { root.appendingPathComponent("configs/\(name).yaml") }

    /// Merges `yaml` (written next to the fixture configs' folder so its model paths resolve).
    func merge(yaml: String, options: Merger.Options = Merger.Options()) throws -> URL {
        let out = try temporaryDirectory()
        let config = try MergeConfig.parse(yaml, file: configURL("inline").path)
        try Merger.merge(config, file: configURL("inline").path, output: out.appendingPathComponent("m.safetensors"), options: options)
        return out.appendingPathComponent("m.safetensors")
    }

    func testEveryMethodMatchesMergekit() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("configs").path)
            .filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
        XCTAssertEqual(names.count, 16)
        // Every method, gradients, filters and slices are among the fixtures.
        for method in MergeMethod.allCases {
            XCTAssertTrue(try names.contains { try MergeConfig.load(contentsOf: configURL($0)).mergeMethod == method.rawValue }, "\(method) has no fixture")
        }
        let out = try temporaryDirectory()
        for name in names {
            let config = try MergeConfig.load(contentsOf: configURL(name))
            let url = out.appendingPathComponent("\(name).safetensors")
            let report = try Merger.merge(config, file: configURL(name).path, output: url, options: { var o = Merger.Options(); o.format = .safetensors; return o }())
            let expected = try SafeTensors.read(contentsOf: root.appendingPathComponent("expected/\(name).safetensors"))
            let got = try SafeTensors.read(contentsOf: url)
            XCTAssertEqual(Set(got.names), Set(expected.names), name)
            XCTAssertEqual(String(report.layers), expected.metadata["num_hidden_layers"], name)
            var worst: Float = 0
            for (k, e) in expected.tensors {
                guard let g = got[k] else { continue }
                XCTAssertEqual(g.shape, e.shape, "\(name) \(k)")
                let diff = zip(g.scalars, e.scalars).map { abs($0 - $1) }.max() ?? 0
                worst = max(worst, diff)
                XCTAssertLessThanOrEqual(diff, 1e-6, "\(name): \(k) differs from mergekit's by \(diff)")
            }
            // The merge did something: it differs from each input (passthrough: it has a fifth layer).
            if name != "passthrough" {
                let base = try SafeTensors.read(contentsOf: root.appendingPathComponent("models/base/model.safetensors"))
                XCTAssertNotEqual(got["model.layers.1.mlp.up_proj.weight"]?.scalars, base["model.layers.1.mlp.up_proj.weight"]?.scalars, name)
            }
        }
    }

    func testFolderOutputHasConfigTokenizerAndLayerCount() throws {
        let out = try temporaryDirectory().appendingPathComponent("merged")
        let config = try MergeConfig.load(contentsOf: configURL("passthrough"))
        var options = Merger.Options()
        options.dtype = .bfloat16
        try Merger.merge(config, file: configURL("passthrough").path, output: out, options: options)
        let json = try JSONParser.parse([UInt8](Data(contentsOf: out.appendingPathComponent("config.json"))))
        XCTAssertEqual(json["num_hidden_layers"]?.intValue, 5)
        XCTAssertEqual(json["torch_dtype"]?.stringValue, "bfloat16")
        // Tokenizer files come from the base (here: the first model, models/base).
        let tok = try JSONParser.parse([UInt8](Data(contentsOf: out.appendingPathComponent("tokenizer_config.json"))))
        XCTAssertEqual(tok["fixture"]?.stringValue, "base")
        let weights = try MappedSafeTensors(contentsOf: out.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(weights.header["model.layers.4.mlp.up_proj.weight"]?.dtype, .bfloat16)
        // The merged folder loads as a model.
        let model = try DecoderModel.load(huggingFaceFolder: out)
        XCTAssertEqual(model.config.layers, 5)
    }

    func testTokenizerSourceAndShards() throws {
        let out = try temporaryDirectory().appendingPathComponent("merged")
        let yaml = """
        merge_method: linear
        models:
          - {model: ../models/a, parameters: {weight: 1}}
          - {model: ../models/b, parameters: {weight: 1}}
        tokenizer_source: ../models/b
        """
        var options = Merger.Options()
        options.maxShardBytes = 4096
        try Merger.merge(try MergeConfig.parse(yaml), file: configURL("inline").path, output: out, options: options)
        let tok = try JSONParser.parse([UInt8](Data(contentsOf: out.appendingPathComponent("tokenizer_config.json"))))
        XCTAssertEqual(tok["fixture"]?.stringValue, "b")
        let index = try JSONParser.parse([UInt8](Data(contentsOf: out.appendingPathComponent("model.safetensors.index.json"))))
        XCTAssertEqual(index["weight_map"]?.objectMembers?.count, 39)
        XCTAssertGreaterThan(Set(index["weight_map"]!.objectMembers!.map { $0.value.stringValue! }).count, 2)
        XCTAssertEqual(try DecoderModel.load(huggingFaceFolder: out).config.layers, 4)
    }

    func testDAREMasksDependOnTheSeedNotTheThreadCount() throws {
        // A tensor large enough for several chunks of draws.
        let n = 300_007
        var g = RandomGenerator(seed: 9)
        let delta = Tensor.normal([n], generator: &g).scalars
        func sparsified(seed: UInt64, threads: Int) throws -> [Float] {
            let saved = ThreadPool.threadCount
            ThreadPool.threadCount = threads
            defer { ThreadPool.threadCount = saved }
            var x = delta
            try x.withUnsafeMutableBufferPointer { p in
                try Sparsify.apply(.random, delta: p.baseAddress!, count: n, rowLength: n, density: 0.3, gamma: 0, epsilon: 0, rescale: .l1,
                                   generator: Merger.maskGenerator(seed: seed, tensor: "t", input: 0), tensor: "t")
            }
            return x
        }
        let one = try sparsified(seed: 1, threads: 1)
        XCTAssertEqual(one, try sparsified(seed: 1, threads: 2))
        XCTAssertNotEqual(one, try sparsified(seed: 2, threads: 1))
        let kept = one.filter { $0 != 0 }.count
        XCTAssertEqual(Double(kept) / Double(n), 0.3, accuracy: 0.01)
        // mergekit's rescale keeps the L1 norm; PEFT's divides by the density.
        let l1 = { (v: [Float]) in v.reduce(0.0) { $0 + Double(abs($1)) } }
        XCTAssertEqual(l1(one) / l1(delta), 1, accuracy: 1e-4)
        var peft = delta
        try peft.withUnsafeMutableBufferPointer { p in
            try Sparsify.apply(.random, delta: p.baseAddress!, count: n, rowLength: n, density: 0.3, gamma: 0, epsilon: 0, rescale: .inverseDensity,
                               generator: Merger.maskGenerator(seed: 1, tensor: "t", input: 0), tensor: "t")
        }
        for i in 0..<1000 where one[i] != 0 { XCTAssertEqual(peft[i], delta[i] / 0.3, accuracy: 1e-5) }
    }

    func testVocabularyMismatchNamesTheTensorAndTheFix() throws {
        let yaml = "merge_method: linear\nmodels:\n  - {model: ../models/base, parameters: {weight: 1}}\n  - {model: ../models/vocab40, parameters: {weight: 1}}\n"
        XCTAssertThrowsError(try merge(yaml: yaml)) { error in
            guard case MergeError.vocabularyMismatch(let m) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("model.embed_tokens.weight") && m.contains("[32, 8]") && m.contains("[40, 8]"), m)
            XCTAssertTrue(m.contains("resize") && m.contains("tokenizer"), m)
        }
    }

    func testShapeMismatchNamesTheTensor() throws {
        let yaml = "merge_method: task_arithmetic\nbase_model: ../models/base\nmodels:\n  - {model: ../models/wide, parameters: {weight: 1}}\n"
        XCTAssertThrowsError(try merge(yaml: yaml)) { error in
            guard case MergeError.shapeMismatch(let m) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("model.layers.0.mlp.down_proj.weight") && m.contains("../models/wide"), m)
        }
    }

    func testNonFiniteResultStopsAndNamesTheTensor() throws {
        // Weights summing to zero with normalize: mergekit divides by 0 too.
        let yaml = "merge_method: linear\nmodels:\n  - {model: ../models/a, parameters: {weight: 1}}\n  - {model: ../models/b, parameters: {weight: -1}}\n"
        XCTAssertThrowsError(try merge(yaml: yaml)) { error in
            guard case MergeError.nonFinite(let tensor, let count) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(tensor, "model.embed_tokens.weight")
            XCTAssertEqual(count, 32 * 8)
        }
    }

    func testUnknownKeysAndParametersAreErrors() throws {
        let cases: [(String, String)] = [
            ("merge_methd: linear\nmodels: [../models/a]\n", "merge_methd"),
            ("merge_method: ties\nbase_model: ../models/base\nmodels:\n  - {model: ../models/a, parameters: {weight: 1, desnity: 0.5}}\n", "desnity"),
            ("merge_method: passthrough\nslices:\n  - sources: [{model: ../models/a, layer_range: [0, 2]}]\n    residual_weight: 0.5\n", "residual_weight"),
            ("merge_method: linear\nmodels:\n  - {model: ../models/a, paramters: {weight: 1}}\n", "paramters"),
            ("merge_method: frankenstein\nmodels: [../models/a]\n", "frankenstein"),
            ("merge_method: linear\nmodels: [../models/a]\nslices:\n  - sources: [{model: ../models/a, layer_range: [0, 2]}]\n", "exactly one of models or slices"),
        ]
        for (yaml, word) in cases {
            XCTAssertThrowsError(try merge(yaml: yaml), word) { error in
                XCTAssertTrue("\(error)".contains(word), "\(error)")
            }
        }
        // A required parameter left out names it.
        XCTAssertThrowsError(try merge(yaml: "merge_method: slerp\nbase_model: ../models/base\nmodels: [../models/base, ../models/a]\n")) { error in
            XCTAssertTrue("\(error)".contains("t: missing"), "\(error)")
        }
        // Another method's parameter is only a warning.
        let config = try MergeConfig.parse("merge_method: linear\nmodels:\n  - {model: ../models/a, parameters: {weight: 1, density: 0.5}}\n")
        let plan = try MergePlan(config: config, file: "x", models: ["../models/a"], sources: [try HuggingFaceWeights.open(root.appendingPathComponent("models/a").path)])
        XCTAssertEqual(plan.warnings, ["models[0].parameters.density is not used by linear"])
    }

    func testSettingsFollowMergekitsGradientAndFilterRules() throws {
        let config = try MergeConfig.parse("""
        merge_method: linear
        models: [../models/a]
        parameters:
          g: [0, 1, 3]
          f: [{filter: mlp, value: [2, 4]}, {filter: "*", value: 7}]
          b: [true, false]
        """)
        func eval(_ key: String, _ name: String, _ t: Double, _ kind: MergeMethod.Kind = .number) throws -> ResolvedValue? {
            try config.parameters[key]!.evaluate(tensorName: name, t: t, kind: kind)
        }
        XCTAssertEqual(try eval("g", "x", 0), .number(0))
        XCTAssertEqual(try eval("g", "x", 0.25), .number(0.5))
        XCTAssertEqual(try eval("g", "x", 0.75), .number(2))
        XCTAssertEqual(try eval("g", "x", 1), .number(3))
        XCTAssertEqual(try eval("f", "model.layers.0.mlp.up_proj.weight", 0.5), .number(3))
        XCTAssertEqual(try eval("f", "model.layers.0.self_attn.q_proj.weight", 0.5), .number(7))
        XCTAssertEqual(try eval("b", "x", 0.9, .bool), .bool(true))
        XCTAssertEqual(try eval("b", "x", 1, .bool), .bool(false))
    }
}
