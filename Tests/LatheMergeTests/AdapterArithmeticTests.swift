import Foundation
import LatheIO
import LatheLM
import LatheMerge
import LatheNN
import LatheTensor
import XCTest
import _LatheTestSupport

/// Adapter arithmetic against PEFT 0.21.2's `add_weighted_adapter` on two tiny adapters
/// (Tools/reference/make_adapter_arithmetic_fixtures.py writes Tests/Fixtures/lora/arithmetic).
final class AdapterArithmeticTests: XCTestCase {
    let root = fixturesDirectory.appendingPathComponent("lora/arithmetic")

    func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-adapters-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func inputs(_ weights: [Double]) throws -> [(adapter: AdapterArithmetic.Adapter, weight: Double)] {
        try zip(["a", "b"], weights).map { (try AdapterArithmetic.Adapter.read(folder: root.appendingPathComponent($0.0)), $0.1) }
    }

    /// Per module, `scaling · B A` in double precision.
    func deltas(config: LoRAConfig, tensors: [String: Tensor]) -> [String: (shape: [Int], values: [Double])] {
        var out: [String: (shape: [Int], values: [Double])] = [:]
        for (name, a) in tensors where name.hasSuffix(".lora_A.weight") {
            let module = String(name.dropFirst(PEFTAdapter.prefix.count).dropLast(".lora_A.weight".count))
            let b = tensors[PEFTAdapter.prefix + module + ".lora_B.weight"]!
            let (r, n, m) = (a.shape[0], a.shape[1], b.shape[0])
            let av = a.scalars, bv = b.scalars
            let s = config.alpha(for: module) / (config.useRSLoRA ? Double(config.rank(for: module)).squareRoot() : Double(config.rank(for: module)))
            var d = [Double](repeating: 0, count: m * n)
            for i in 0..<m { for j in 0..<n { var t = 0.0; for k in 0..<r { t += Double(bv[i * r + k]) * Double(av[k * n + j]) }; d[i * n + j] = t * s } }
            out[module] = ([m, n], d)
        }
        return out
    }

    func readFolder(_ folder: URL) throws -> (LoRAConfig, [String: Tensor]) {
        let config = try PEFTAdapter.readConfig(folder: folder)
        let file = try MappedSafeTensors(contentsOf: folder.appendingPathComponent(PEFTAdapter.weightsFile))
        var tensors: [String: Tensor] = [:]
        for name in file.tensorNames { tensors[name] = try file.float32Tensor(named: name) }
        return (config, tensors)
    }

    func maxDifference(_ a: [String: (shape: [Int], values: [Double])], _ b: [String: (shape: [Int], values: [Double])]) -> Double {
        XCTAssertEqual(Set(a.keys), Set(b.keys))
        var worst = 0.0
        for (k, x) in a {
            guard let y = b[k], y.shape == x.shape else { XCTFail("\(k): shapes differ"); return .infinity }
            for i in x.values.indices { worst = max(worst, abs(x.values[i] - y.values[i])) }
        }
        return worst
    }

    func same(_ a: [String: Tensor], _ b: [String: Tensor]) -> Bool {
        a.count == b.count && a.allSatisfy { k, t in b[k].map { $0.shape == t.shape && $0.scalars == t.scalars } ?? false }
    }

    func testCatIsExactlyTheSumOfTheWeightedDeltas() throws {
        let weights = [0.8, -0.5]
        let adapters = try inputs(weights)
        let result = try AdapterArithmetic.combine(adapters, options: .init(method: .cat))
        XCTAssertEqual(result.config.rank, 8, "r 4 + r 4 (down_proj's rank_pattern 2 is padded)")
        XCTAssertEqual(result.config.alpha, 8)
        XCTAssertEqual(result.config.targets, .names(["down_proj", "o_proj", "q_proj", "v_proj"]))
        XCTAssertEqual(result.modules, 8)
        // Bit for bit: A's rows are (Aᵢ·wᵢ)·sᵢ in float32, B's columns the Bᵢ.
        var offsets: [String: Int] = [:]
        for (adapter, w) in adapters {
            for (path, m) in adapter.modules.sorted(by: { $0.key < $1.key }) {
                let a = result.tensors[PEFTAdapter.prefix + path + ".lora_A.weight"]!, b = result.tensors[PEFTAdapter.prefix + path + ".lora_B.weight"]!
                let (r, n, out) = (m.a.shape[0], m.a.shape[1], m.b.shape[0])
                let o = offsets[path, default: 0]
                let s = Float(adapter.config.alpha(for: path) / Double(adapter.config.rank(for: path)))
                let av = a.scalars, bv = b.scalars, ai = m.a.scalars, bi = m.b.scalars
                XCTAssertEqual(Array(av[o * n ..< (o + r) * n]), ai.map { $0 * Float(w) * s }, "\(path): rows of A")
                XCTAssertTrue((0..<out).allSatisfy { i in (0..<r).allSatisfy { bv[i * 8 + o + $0] == bi[i * r + $0] } }, "\(path): columns of B")
                offsets[path] = o + r
            }
        }
        // As a delta: B A = Σ wᵢ sᵢ Bᵢ Aᵢ (a module only one adapter has gets only its term).
        let combined = deltas(config: result.config, tensors: result.tensors)
        var expected: [String: (shape: [Int], values: [Double])] = [:]
        for (adapter, w) in adapters {
            var tensors: [String: Tensor] = [:]
            for (path, m) in adapter.modules { tensors[PEFTAdapter.prefix + path + ".lora_A.weight"] = m.a; tensors[PEFTAdapter.prefix + path + ".lora_B.weight"] = m.b }
            for (k, d) in deltas(config: adapter.config, tensors: tensors) {
                var e = expected[k] ?? (d.shape, [Double](repeating: 0, count: d.values.count))
                for i in d.values.indices { e.values[i] += w * d.values[i] }
                expected[k] = e
            }
        }
        let gap = maxDifference(combined, expected)
        let size = expected.values.map { $0.values.map(abs).max()! }.max()!
        XCTAssertLessThan(gap, 1e-6 * size, "cat delta vs the weighted sum")
        XCTAssertGreaterThan(size, 0.5)
        print("cat: max |BA - Σ w s B_i A_i| = \(gap) (largest entry \(size))")
    }

    /// Every case of cases.json, run by Lathe, against the adapter PEFT wrote (as deltas B·A:
    /// SVD factors are defined up to signs, and PEFT stores linear's down_proj unpadded).
    func testMatchesPEFTAddWeightedAdapter() throws {
        let cases = try JSONParser.parse([UInt8](Data(contentsOf: root.appendingPathComponent("cases.json"))))
        let weights = cases["weights"]!.arrayValue!.map { $0.doubleValue! }
        let list = cases["cases"]!.arrayValue!
        XCTAssertEqual(list.count, 8)
        var methods: Set<String> = []
        for c in list {
            let name = c["name"]!.stringValue!
            let method = try XCTUnwrap(AdapterArithmetic.Method(rawValue: c["combination_type"]!.stringValue!), name)
            methods.insert(method.rawValue)
            var options = AdapterArithmetic.Options(method: method, rank: c["svd_rank"]?.intValue, density: c["density"]?.doubleValue)
            if let m = c["majority_sign_method"]?.stringValue { options.majoritySign = try XCTUnwrap(AdapterArithmetic.MajoritySign(rawValue: m)) }
            let result = try AdapterArithmetic.combine(try inputs(weights), options: options)
            let (peftConfig, peftTensors) = try readFolder(root.appendingPathComponent(name))
            XCTAssertEqual(result.config.rank, peftConfig.rank, name)
            XCTAssertEqual(result.config.alpha, peftConfig.alpha, name)
            XCTAssertEqual(result.config.targets, peftConfig.targets, name)
            let expected = deltas(config: peftConfig, tensors: peftTensors)
            let gap = maxDifference(deltas(config: result.config, tensors: result.tensors), expected)
            let size = expected.values.map { $0.values.map(abs).max()! }.max()!
            XCTAssertLessThan(gap, 1e-5, name)
            XCTAssertGreaterThan(size, 0.5, name)
            print("\(name): max |Lathe - PEFT| delta \(gap) (largest entry \(size))")
        }
        XCTAssertEqual(methods, ["cat", "linear", "svd", "ties_svd", "magnitude_prune_svd", "ties", "magnitude_prune"])
    }

    func testDAREIsSeededAndIsTheUnprunedMethodAtDensityOne() throws {
        let adapters = try inputs([0.8, -0.5])
        func deltasOf(_ options: AdapterArithmetic.Options) throws -> [String: (shape: [Int], values: [Double])] {
            let r = try AdapterArithmetic.combine(adapters, options: options)
            return deltas(config: r.config, tensors: r.tensors)
        }
        let svd = try deltasOf(.init(method: .svd))
        XCTAssertLessThan(maxDifference(try deltasOf(.init(method: .dareLinearSVD, density: 1)), svd), 1e-6)
        let linear = try deltasOf(.init(method: .linear))
        XCTAssertEqual(maxDifference(try deltasOf(.init(method: .dareLinear, density: 1)), linear), 0)

        var options = AdapterArithmetic.Options(method: .dareTies, density: 0.5)
        options.seed = 7
        let once = try AdapterArithmetic.combine(adapters, options: options), again = try AdapterArithmetic.combine(adapters, options: options)
        XCTAssertTrue(same(once.tensors, again.tensors), "one seed, one result")
        options.seed = 8
        XCTAssertFalse(same(try AdapterArithmetic.combine(adapters, options: options).tensors, once.tensors), "another seed, another mask")
        // DARE keeps about half the entries of each factor and scales them by 1/density: with one adapter at
        // weight 1 and scale 1 the kept entries of A are exactly 2·A.
        let one = try AdapterArithmetic.Adapter(name: "one", config: LoRAConfig(targets: .names(["q_proj"]), rank: 2, alpha: 2),
                                                tensors: ["base_model.model.x.q_proj.lora_A.weight": Tensor((0..<400).map { Float($0 % 13) + 1 }, shape: [2, 200]),
                                                          "base_model.model.x.q_proj.lora_B.weight": Tensor([Float](repeating: 1, count: 6), shape: [3, 2])])
        let dare = try AdapterArithmetic.combine([(one, 1)], options: .init(method: .dareLinear, density: 0.5))
        let a = dare.tensors["base_model.model.x.q_proj.lora_A.weight"]!.scalars, original = one.modules["x.q_proj"]!.a.scalars
        let kept = zip(a, original).filter { $0.0 != 0 }
        XCTAssertTrue(kept.allSatisfy { $0.0 == 2 * $0.1 })
        XCTAssertTrue((150...250).contains(kept.count), "kept \(kept.count) of 400")
    }

    func testSVDClampAndResultLoadsIntoTheModel() throws {
        var options = AdapterArithmetic.Options(method: .svd, rank: 2)
        options.clamp = 0.9
        let clamped = try AdapterArithmetic.combine(try inputs([1, 1]), options: options)
        let plain = try AdapterArithmetic.combine(try inputs([1, 1]), options: .init(method: .svd, rank: 2))
        // Per module: h = the 0.9 quantile (linear interpolation) of B's and A's entries together; both clamped to [−h, h].
        for name in plain.tensors.keys where name.hasSuffix(".lora_A.weight") {
            let bName = name.replacingOccurrences(of: ".lora_A.", with: ".lora_B.")
            let entries = (plain.tensors[bName]!.scalars + plain.tensors[name]!.scalars).sorted()
            let position = 0.9 * Double(entries.count - 1), lo = Int(position)
            let h = entries[lo] + Float(position - Double(lo)) * (entries[lo + 1] - entries[lo])
            XCTAssertGreaterThan(h, 0)
            for n in [name, bName] {
                XCTAssertEqual(clamped.tensors[n]!.scalars, plain.tensors[n]!.scalars.map { min(max($0, -h), h) }, n)
            }
        }
        XCTAssertFalse(same(clamped.tensors, plain.tensors), "the 0.9 quantile clamps some entries")

        // The written folder loads into llama-tiny with every tensor in place.
        let out = try temporaryDirectory().appendingPathComponent("combined")
        try AdapterArithmetic.write(plain, to: out)
        let model = try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/llama-tiny"))
        let config = try PEFTAdapter.load(folder: out, into: model)
        XCTAssertEqual(config.rank, 2)
        XCTAssertEqual(model.loraLayers.count, 8)
        let q = Dictionary(uniqueKeysWithValues: model.loraLayers)["model.layers.0.self_attn.q_proj"]!
        XCTAssertEqual(q.scaling, 1)
    }

    func testBadInputsGiveClearErrors() throws {
        let adapters = try inputs([1, 1])
        func message(_ options: AdapterArithmetic.Options, _ list: [(adapter: AdapterArithmetic.Adapter, weight: Double)]? = nil) -> String {
            do { _ = try AdapterArithmetic.combine(list ?? adapters, options: options); return "no error" } catch { return "\(error)" }
        }
        XCTAssertTrue(message(.init(method: .ties)).contains("needs a density"))
        XCTAssertTrue(message(.init(method: .ties, density: 1.5)).contains("density must be in [0, 1]"))
        XCTAssertTrue(message(.init(method: .cat, rank: 4)).contains("takes no rank"))
        XCTAssertTrue(message(.init(method: .svd, rank: 0)).contains("rank must be in"))
        XCTAssertTrue(message(.init(method: .linear, density: 0.5)).contains("takes no density"))
        XCTAssertTrue(message(.init(method: .cat), []).contains("no adapters"))

        // Ranks: linear needs equal ones.
        let r2 = try AdapterArithmetic.Adapter(name: "r2", config: LoRAConfig(targets: .names(["q_proj"]), rank: 2, baseModel: "llama-tiny"),
                                               tensors: ["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": Tensor.zeros([2, 64]),
                                                         "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": Tensor.zeros([64, 2])])
        XCTAssertTrue(message(.init(method: .linear), [adapters[0], (r2, 1)]).contains("needs adapters of one rank"), message(.init(method: .linear), [adapters[0], (r2, 1)]))
        XCTAssertEqual(try AdapterArithmetic.combine([adapters[0], (r2, 1)], options: .init(method: .svd)).config.rank, 4)
        // Shapes: a q_proj of another size.
        let wide = try AdapterArithmetic.Adapter(name: "wide", config: LoRAConfig(targets: .names(["q_proj"]), rank: 4),
                                                 tensors: ["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": Tensor.zeros([4, 128]),
                                                           "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": Tensor.zeros([64, 4])])
        XCTAssertTrue(message(.init(method: .cat), [adapters[0], (wide, 1)]).contains("adapts a [64, 64] weight but wide a [64, 128] one"))
        // Bases.
        let other = try AdapterArithmetic.Adapter(name: "other", config: LoRAConfig(targets: .names(["q_proj"]), rank: 2, baseModel: "gpt2"),
                                                  tensors: r2.modules.reduce(into: [String: Tensor]()) { d, m in
                                                      d[PEFTAdapter.prefix + m.key + ".lora_A.weight"] = m.value.a; d[PEFTAdapter.prefix + m.key + ".lora_B.weight"] = m.value.b })
        XCTAssertTrue(message(.init(method: .cat), [adapters[0], (other, 1)]).contains("different base models"))
        var allow = AdapterArithmetic.Options(method: .cat)
        allow.allowDifferentBases = true
        XCTAssertEqual(try AdapterArithmetic.combine([adapters[0], (other, 1)], options: allow).config.rank, 6)
        // DoRA, missing folders, non-finite weights.
        XCTAssertThrowsError(try AdapterArithmetic.Adapter.read(folder: fixturesDirectory.appendingPathComponent("lora/qwen2-dora"))) {
            XCTAssertTrue("\($0)".contains("DoRA"), "\($0)")
        }
        XCTAssertThrowsError(try AdapterArithmetic.combine(folders: [(root.appendingPathComponent("nope"), 1)], options: .init(method: .cat))) {
            XCTAssertTrue("\($0)".contains("no such adapter folder"), "\($0)")
        }
        XCTAssertTrue(message(.init(method: .cat), [(adapters[0].adapter, .nan)]).contains("not a finite number"))
    }
}
