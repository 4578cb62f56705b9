import LatheNN
import LatheTensor
import XCTest
import _LatheTestSupport

/// Model surgery by path: wrappers are ordinary parents of the layer they wrap.
final class SurgeryTests: XCTestCase {
    /// `y = base(x) + scale * x[:, :out]`: a stand-in for a LoRA-style wrapper.
    final class Wrapper: Module {
        let base: Module
        let scale: Parameter
        init(_ base: Module) {
            self.base = base
            scale = Parameter(Tensor([0.5], shape: [1]))
        }
        override func forward(_ x: Tensor) -> Tensor { base(x) * scale.value }
    }

    func testWrapperAtAPathRunsAndNamesItsChildren() throws {
        let m = DigitsCNN(seed: 1)
        m.eval()
        var g = RandomGenerator(seed: 2)
        let x = Tensor.normal([2, 1, 8, 8], generator: &g)
        let before = noGrad { m(x) }
        let original = m.fc2
        try m.setModule(Wrapper(original), at: "fc2")
        XCTAssertTrue(m.module(at: "fc2") is Wrapper)
        XCTAssertTrue(m.module(at: "fc2.base") === original)
        XCTAssertTrue(m.stateKeys.contains("fc2.base.weight") && m.stateKeys.contains("fc2.scale"), "\(m.stateKeys)")
        XCTAssertFalse(m.stateKeys.contains("fc2.weight"))
        let after = noGrad { m(x) }
        XCTAssertEqual(after.scalars, (before * 0.5).scalars, "the wrapper runs in the layer's place, once (no recursion)")
        // Surgery of the same type keeps typed access.
        let fresh = Linear(64 * 2 * 2, 128, generator: &g)
        try m.setModule(fresh, at: "fc1")
        XCTAssertTrue(m.fc1 === fresh)
    }

    func testSequentialSnapshotRestoreAndNestedPaths() throws {
        var g = RandomGenerator(seed: 4)
        let inner = Sequential(Linear(4, 4, generator: &g), ReLU())
        let model = Sequential(Linear(3, 4, generator: &g), inner, Linear(4, 2, generator: &g))
        let snapshot = model.snapshot()
        let old = model.layers[1]
        try model.setModule(Wrapper(inner.layers[0]), at: "1.0")
        XCTAssertTrue(inner.layers[0] is Wrapper)
        XCTAssertEqual(model.module(at: "1.0.base").map { ObjectIdentifier($0) }, ObjectIdentifier(snapshot.first { $0.0 == "1.0" }!.1))
        try model.setModule(Identity(), at: "2")
        XCTAssertTrue(model.layers[2] is Identity)
        model.restore(snapshot)
        XCTAssertTrue(model.layers[1] === old)
        XCTAssertTrue(inner.layers[0] is Linear)
        XCTAssertTrue(model.layers[2] is Linear)
        XCTAssertEqual(model.stateKeys, ["0.weight", "0.bias", "1.0.weight", "1.0.bias", "2.weight", "2.bias"])
    }

    func testBadSurgeryIsAClearError() throws {
        let gpt = CharGPT(CharGPT.Config(vocab: 10, context: 8, dModel: 16, heads: 2, layers: 1))
        // Replaceable: the attention's projections.
        try gpt.setModule(Wrapper(gpt.blocks[0].attn.qkv), at: "blocks.0.attn.qkv")
        XCTAssertTrue(gpt.module(at: "blocks.0.attn.qkv") is Wrapper)
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertTrue(message { try gpt.setModule(Identity(), at: "blocks.0.ln1") }.contains("declare it @Child var"))
        XCTAssertTrue(message { try gpt.setModule(Identity(), at: "blocks.0.nope") }.contains("there is no module there"))
        XCTAssertTrue(message { try gpt.setModule(Identity(), at: "") }.contains("root"))
        let attn = gpt.blocks[0].attn
        XCTAssertTrue(message { try gpt.setModule(Wrapper(attn), at: "blocks.0.attn.proj") }.contains("cycle"))
    }

    /// `@Child(key:)` spells state-dict names the property naming cannot (BERT's `LayerNorm`, PEFT's `lora_A`).
    func testKeyOverrides() throws {
        final class Adapter: Module {
            @Child(key: "base_layer") var base: Linear
            @Child(key: "lora_A") var loraA: Linear
            @Child(key: "LayerNorm") var norm: LayerNorm
            init(_ g: inout RandomGenerator) {
                super.init()  // keyed slots start empty and are filled after super.init
                base = Linear(4, 4, generator: &g)
                loraA = Linear(4, 2, bias: false, generator: &g)
                norm = LayerNorm(4)
            }
            override func forward(_ x: Tensor) -> Tensor { $norm($base(x)) }
        }
        var g = RandomGenerator(seed: 9)
        let a = Adapter(&g)
        XCTAssertEqual(a.stateKeys, ["base_layer.weight", "base_layer.bias", "lora_A.weight", "LayerNorm.weight", "LayerNorm.bias"])
        try a.setModule(Identity(), at: "LayerNorm")
        XCTAssertTrue(a.module(at: "LayerNorm") is Identity)
        XCTAssertEqual(a.stateKeys, ["base_layer.weight", "base_layer.bias", "lora_A.weight"])
    }
}
