import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// LoRALinear's math, initialisation and gradients, and PEFT's rules for which modules an
/// adapter config targets.
final class LoRATests: XCTestCase {
    final class Blocks: Module {
        let blocks: [TransformerBlock]
        init(_ blocks: [TransformerBlock]) { self.blocks = blocks }
    }

    func linear(_ input: Int, _ output: Int, seed: UInt64 = 1, bias: Bool = true) -> Linear {
        var g = RandomGenerator(seed: seed)
        return Linear(input, output, bias: bias, generator: &g)
    }

    func testPEFTInitialisationStartsAsTheBase() throws {
        let base = linear(16, 6)
        let layer = LoRALinear(base: base, rank: 4, scaling: 2, initialization: .kaimingUniform(seed: 9))
        XCTAssertEqual(layer.loraA.weight.value.shape, [4, 16])
        XCTAssertEqual(layer.loraB.weight.value.shape, [6, 4])
        let a = layer.loraA.weight.value.scalars
        XCTAssertLessThanOrEqual(a.map(abs).max()!, 1 / Float(16).squareRoot(), "Kaiming-uniform a = sqrt(5): bound 1/sqrt(in)")
        XCTAssertGreaterThan(a.map(abs).max()!, 0.8 / Float(16).squareRoot())
        XCTAssertEqual(Set(layer.loraB.weight.value.scalars), [0])
        var g = RandomGenerator(seed: 2)
        let x = Tensor.normal([3, 16], generator: &g)
        XCTAssertEqual(layer(x).scalars, base(x).scalars)
        XCTAssertEqual(layer.stateKeys, ["base_layer.weight", "base_layer.bias", "lora_A.weight", "lora_B.weight"])
        // DoRA starts from m = ||W|| per row, and is the base too.
        let dora = LoRALinear(base: base, rank: 4, scaling: 2, dora: true, initialization: .kaimingUniform(seed: 9))
        let norms = base.weight.value.square().sum(dim: 1).sqrt().scalars
        XCTAssertEqual(dora.loraMagnitudeVector?.value.scalars, norms)
        XCTAssertLessThan(zip(dora(x).scalars, base(x).scalars).map { abs($0 - $1) }.max()!, 1e-5)
        XCTAssertTrue(dora.stateKeys.contains("lora_magnitude_vector"))
    }

    /// `y = Wx + b + s B A x`, and DoRA's `(m / ||W + s B A||) (W + s B A) x + b` without dropout.
    func testForwardFormulas() throws {
        let base = linear(5, 3)
        var g = RandomGenerator(seed: 4)
        let x = Tensor.normal([2, 5], generator: &g)
        for dora in [false, true] {
            let layer = LoRALinear(base: base, rank: 2, scaling: 1.5, dora: dora, initialization: .zeros)
            layer.loraA.weight.value = Tensor.normal([2, 5], generator: &g)
            layer.loraB.weight.value = Tensor.normal([3, 2], generator: &g)
            let merged = base.weight.value + layer.deltaWeight
            var expected = x.matmul(merged.T)
            if let m = layer.loraMagnitudeVector {
                m.value = m.value * 1.3
                expected = expected * (m.value / merged.square().sum(dim: 1).sqrt())
            }
            expected = expected + base.bias!.value
            assertClose(layer(x), expected, rtol: 1e-5, atol: 1e-5)
        }
        // In evaluation mode DoRA keeps its row norms while A and B stay the same, and no longer.
        let dora = LoRALinear(base: base, rank: 2, scaling: 1, dora: true, initialization: .kaimingUniform(seed: 3))
        dora.eval()
        XCTAssertLessThan(zip(dora(x).scalars, base(x).scalars).map { abs($0 - $1) }.max()!, 1e-5)
        dora.loraB.weight.value = Tensor.normal([3, 2], generator: &g)
        let merged = base.weight.value + dora.deltaWeight
        let m = dora.loraMagnitudeVector!.value
        assertClose(dora(x), x.matmul(merged.T) * (m / merged.square().sum(dim: 1).sqrt()) + base.bias!.value, rtol: 1e-5, atol: 1e-5)
    }

    /// LoRA's gradients (x, A, B) and DoRA's (x, m; its norm is a constant by design) against
    /// finite differences; the base gets none.
    func testGradientsMatchFiniteDifferences() throws {
        var g = RandomGenerator(seed: 5)
        for dora in [false, true] {
            let base = linear(4, 3, seed: 6)
            base.freeze()
            let layer = LoRALinear(base: base, rank: 2, scaling: 0.7, dora: dora, initialization: .kaimingUniform(seed: 1))
            layer.loraB.weight.value = Tensor.normal([3, 2], generator: &g)
            let x = Tensor.normal([2, 4], generator: &g)
            let params = [layer.loraA.weight, layer.loraB.weight] + (layer.loraMagnitudeVector.map { [$0] } ?? [])
            let checked = dora ? [2] : [0, 1]
            let weights = Tensor.normal([2, 3], generator: &g)
            let input = x.requiringGrad()
            (layer(input) * weights).sum().backward()
            XCTAssertNil(base.weight.grad, "the base is frozen")
            func objective() -> Double { noGrad { Double((layer(x) * weights).sum().item) } }
            for k in checked {
                let p = params[k]
                let analytic = p.grad!.scalars
                var values = p.value.scalars
                for i in values.indices {
                    let old = values[i], eps: Float = 1e-2
                    values[i] = old + eps; p.value = Tensor(values, shape: p.value.shape); let plus = objective()
                    values[i] = old - eps; p.value = Tensor(values, shape: p.value.shape); let minus = objective()
                    values[i] = old; p.value = Tensor(values, shape: p.value.shape)
                    XCTAssertEqual(analytic[i], Float((plus - minus) / Double(2 * eps)), accuracy: 2e-3, "dora \(dora) parameter \(k) element \(i)")
                }
            }
            assertGradientsMatchFiniteDifferences([x], "dora \(dora) input") { layer($0[0]) }
        }
    }

    /// Without dropout DoRA's forward holds one `[rows, out]` tensor more than LoRA's for the
    /// backward (the sum that its magnitude scales), not two (PEFT's form keeps `W x` and `B A x`).
    func testDoRAKeepsOneActivationMoreThanLoRA() throws {
        let (rows, inputs, outputs) = (256, 64, 512)
        let activation = rows * outputs * 4
        var g = RandomGenerator(seed: 8)
        let x = Tensor.normal([rows, inputs], generator: &g).requiringGrad()
        func held(dora: Bool) -> Int {
            let base = linear(inputs, outputs, seed: 3, bias: true)
            base.freeze()
            let layer = LoRALinear(base: base, rank: 4, scaling: 2, dora: dora, initialization: .kaimingUniform(seed: 1))
            let before = TensorMemory.liveBytes
            let y = layer(x)
            let bytes = TensorMemory.liveBytes - before
            y.sum().backward()  // the graph was whole
            XCTAssertNotNil(layer.loraMagnitudeVector?.grad ?? layer.loraA.weight.grad)
            return bytes
        }
        let lora = held(dora: false), dora = held(dora: true)
        XCTAssertGreaterThanOrEqual(dora - lora, activation, "DoRA keeps the scaled sum")
        XCTAssertLessThan(dora - lora, activation + activation / 4, "DoRA holds \(dora - lora) bytes more than LoRA")
    }

    func testDropoutOnlyInTraining() throws {
        let layer = LoRALinear(base: linear(8, 4), rank: 2, scaling: 1, dropout: 0.5, initialization: .kaimingUniform(seed: 2))
        var g = RandomGenerator(seed: 3)
        layer.loraB.weight.value = Tensor.normal([4, 2], generator: &g)
        let x = Tensor.normal([6, 8], generator: &g)
        layer.eval()
        let a = layer(x).scalars, b = layer(x).scalars
        XCTAssertEqual(a, b)
        layer.train()
        XCTAssertNotEqual(layer(x).scalars, a, "dropout on the adapter's input in training")
    }

    /// PEFT's matching rules (tuners_utils.check_target_module_exists, get_pattern_key).
    func testTargetRulesFollowPEFT() throws {
        let q = "model.layers.0.self_attn.q_proj", down = "model.layers.11.mlp.down_proj", head = "lm_head"
        var c = LoRAConfig(targets: .names(["q_proj", "mlp.down_proj"]))
        XCTAssertTrue(c.adapts(q))
        XCTAssertTrue(c.adapts(down))
        XCTAssertFalse(c.adapts("model.layers.0.self_attn.qq_proj"), "a suffix after a dot, not any suffix")
        c.layers = [11]
        XCTAssertFalse(c.adapts(q))
        XCTAssertTrue(c.adapts(down))
        c.layersPattern = ["blocks"]
        XCTAssertFalse(c.adapts(down), "no '.blocks.<n>.' in the key")
        XCTAssertTrue(c.adapts("blocks.11.mlp.down_proj"))
        let regex = LoRAConfig(targets: .regex(#".*\.(q|v)_proj"#))
        XCTAssertTrue(regex.adapts(q))
        XCTAssertFalse(regex.adapts(q + ".x"), "the regex matches the whole key")
        let all = LoRAConfig(targets: .allLinear, excluded: .names(["down_proj"]))
        XCTAssertTrue(all.adapts(q))
        XCTAssertFalse(all.adapts(head, isOutput: true))
        XCTAssertFalse(all.adapts(down))
        var p = LoRAConfig(targets: .allLinear, rank: 8, alpha: 16)
        p.rankPattern = [.init("down_proj", 2), .init(#"layers\.0\..*"#, 4)]
        p.alphaPattern = [.init("q_proj", 3)]
        XCTAssertEqual(p.rank(for: down), 2)
        XCTAssertEqual(p.rank(for: q), 4)
        XCTAssertEqual(p.rank(for: "model.layers.1.self_attn.k_proj"), 8)
        XCTAssertEqual(p.alpha(for: q), 3)
        XCTAssertEqual(p.scaling(for: q), 0.75)
        p.useRSLoRA = true
        XCTAssertEqual(p.scaling(for: "model.layers.1.self_attn.k_proj"), Float(16 / Double(8).squareRoot()))
        XCTAssertEqual(LoRAConfig.lastLayers(2, of: 5), [3, 4])
        XCTAssertEqual(LoRAConfig.lastLayers(9, of: 3), [0, 1, 2])
    }

    /// Surgery on a small model: only the targets are wrapped, only adapters train, and the
    /// config survives adapter_config.json.
    func testSurgeryFreezesTheBaseAndConfigRoundTrips() throws {
        var g = RandomGenerator(seed: 1)
        let model = Blocks([TransformerBlock(dModel: 8, heads: 2, generator: &g), TransformerBlock(dModel: 8, heads: 2, generator: &g)])
        // PEFT finds the layer index after a name and a dot: "blocks.1." here, with layers_pattern.
        var config = LoRAConfig(targets: .names(["qkv", "fc"]), rank: 2, alpha: 4, layers: [1], useDoRA: true)
        XCTAssertThrowsError(try model.addLoRA(config))
        config.layersPattern = ["blocks"]
        let paths = try model.addLoRA(config)
        XCTAssertEqual(paths, ["blocks.1.attn.qkv", "blocks.1.mlp.fc"])
        XCTAssertEqual(model.loraLayers.map(\.0), paths)
        XCTAssertEqual(model.namedParameters.filter { $0.1.requiresGrad }.map(\.0).sorted(),
                       ["blocks.1.attn.qkv.lora_A.weight", "blocks.1.attn.qkv.lora_B.weight", "blocks.1.attn.qkv.lora_magnitude_vector",
                        "blocks.1.mlp.fc.lora_A.weight", "blocks.1.mlp.fc.lora_B.weight", "blocks.1.mlp.fc.lora_magnitude_vector"])
        var x = Tensor.normal([1, 3, 8], generator: &g)
        for block in model.blocks { x = block(x) }
        x.sum().backward()
        let bGrad = (model.module(at: "blocks.1.attn.qkv") as? LoRALinear)?.loraB.weight.grad?.scalars ?? []
        XCTAssertGreaterThan(bGrad.map(abs).max() ?? 0, 0, "the adapter learns")
        XCTAssertNil(model.blocks[0].ln1.weight?.grad, "frozen")
        XCTAssertThrowsError(try model.addLoRA(config)) { XCTAssertTrue("\($0)".contains("already has a LoRA adapter"), "\($0)") }
        XCTAssertThrowsError(try Sequential(Linear(2, 2, generator: &g)).addLoRA(LoRAConfig(targets: .names(["q_proj"])))) {
            XCTAssertTrue("\($0)".contains("matches none of the model's 1 linear layers"), "\($0)")
        }
        config.alphaPattern = [.init("fc", 2.5)]
        config.excluded = .regex(".*proj")
        config.baseModel = "tiny"
        let text = JSONWriter.serialize(config.peftJSON())
        XCTAssertEqual(try LoRAConfig.peft(JSONParser.parse(text)), config)
        XCTAssertTrue(text.contains("\"lora_alpha\": 4,") && text.contains("\"fc\": 2.5"), text)
    }
}
