import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// QLoRA: adapters train on a decoder whose base stays quantized (Lathe int4 group-wise, or a
/// GGUF file loaded quantized). The quantized layers pass gradients to their inputs, so every
/// adapter in every layer trains, with the gradients of the same adapters on the dequantised
/// float base.
final class QLoRATests: XCTestCase {
    func llamaTiny() throws -> DecoderModel {
        try DecoderModel.load(huggingFaceFolder: fixturesDirectory.appendingPathComponent("llm/llama-tiny"))
    }

    /// A batch of two rows of llama-tiny's vocabulary, labels the ids (next-token loss).
    let ids = Tensor([1, 17, 40, 5, 88, 2, 63, 9, 31, 77, 1, 44, 12, 60, 3, 95, 21, 8, 50, 71], shape: [2, 10])

    /// The model's quantized layers replaced by float `Linear`s holding their dequantised weights.
    func dequantisedTwin(of model: DecoderModel, fresh: DecoderModel) throws -> DecoderModel {
        for (path, m) in model.namedModules {
            guard let q = m as? WeightOnlyLinear else { continue }
            try fresh.setModule(Linear(weight: q.denseWeight, bias: q.denseBias), at: path)
        }
        return fresh
    }

    /// Adapters on every linear layer, B drawn small (not zero, so A's gradients are not zero
    /// by construction), the same in both models.
    func addAdapters(_ model: DecoderModel, dora: Bool = false) throws {
        try model.addLoRA(LoRAConfig(targets: .allLinear, rank: 4, alpha: 8, useDoRA: dora), initialization: .kaimingUniform(seed: 5))
        var rng = TestRNG(21)
        for (_, layer) in model.loraLayers {
            let b = layer.loraB.weight.value
            layer.loraB.weight.value = Tensor(rng.floats(b.count, -0.05, 0.05), shape: b.shape)
        }
    }

    func testEveryAdapterOfAnInt4BaseTrainsLikeOnTheDequantisedBase() throws {
        for dora in [false, true] {
            let model = try llamaTiny()
            let quantized = try quantize(model: model, config: QuantizationConfig(scheme: .weightOnly(GroupwiseScheme(bits: 4, groupSize: 32))))
            XCTAssertEqual(quantized.count, 14, "7 projections in each of 2 layers")
            let twin = try dequantisedTwin(of: model, fresh: try llamaTiny())
            try addAdapters(model, dora: dora)
            try addAdapters(twin, dora: dora)
            XCTAssertEqual(model.loraLayers.count, 14)
            XCTAssertTrue(model.loraLayers.allSatisfy { $0.1.base is WeightOnlyLinear })
            model.train(); twin.train()
            let loss = try model.loss(ids, labels: ids), twinLoss = try twin.loss(ids, labels: ids)
            XCTAssertEqual(loss.item, twinLoss.item, accuracy: 1e-4)
            loss.backward(); twinLoss.backward()
            let twins = Dictionary(uniqueKeysWithValues: twin.loraLayers)
            for (path, layer) in model.loraLayers {
                let other = try XCTUnwrap(twins[path])
                for (name, p, q) in [("A", layer.loraA.weight, other.loraA.weight), ("B", layer.loraB.weight, other.loraB.weight)] {
                    let g = try XCTUnwrap(p.grad, "\(path) \(name) has no gradient (dora \(dora))")
                    XCTAssertGreaterThan(g.scalars.map(abs).max() ?? 0, 1e-6, "\(path) \(name) gradient is zero (dora \(dora))")
                    assertClose(g, try XCTUnwrap(q.grad), rtol: 1e-3, atol: 1e-6, "\(path) \(name) (dora \(dora))")
                }
            }
            // The quantized base has no trainable state: only the adapters.
            XCTAssertEqual(model.parameters.filter(\.requiresGrad).count, dora ? 42 : 28)
        }
    }

    func testLossDecreasesOverAFewSteps() throws {
        let model = try llamaTiny()
        try quantize(model: model, config: QuantizationConfig(scheme: .weightOnly(GroupwiseScheme(bits: 4, groupSize: 32))))
        try model.addLoRA(LoRAConfig(targets: .allLinear, rank: 4, alpha: 8), initialization: .kaimingUniform(seed: 2))
        let optimizer = AdamW(model.namedParameters.filter { $0.1.requiresGrad }, learningRate: 1e-2, weightDecay: 0)
        model.train()
        var losses: [Float] = []
        for _ in 0..<6 {
            optimizer.zeroGrad()
            let loss = try model.loss(ids, labels: ids)
            losses.append(loss.item)
            loss.backward()
            optimizer.step()
        }
        XCTAssertTrue(losses.allSatisfy(\.isFinite), "\(losses)")
        XCTAssertLessThan(losses.last!, losses.first! - 0.2, "\(losses)")
        for i in 1..<losses.count { XCTAssertLessThan(losses[i], losses[i - 1], "\(losses)") }
    }
}
