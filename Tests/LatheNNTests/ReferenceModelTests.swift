import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// Each reference model starts from PyTorch-exported weights and one fixed batch, runs 5
/// AdamW steps, and must match PyTorch's losses, first-step gradients and final weights
/// (fixtures from `Tools/reference/make_model_fixtures.py`).
final class ReferenceModelTests: XCTestCase {
    func load(_ model: String, _ file: String) throws -> [String: Tensor] {
        try SafeTensors.read(contentsOf: fixturesDirectory.appendingPathComponent("models/\(model)/\(file)")).tensors
    }

    func expected(_ model: String) throws -> [String: Any] {
        let data = try Data(contentsOf: fixturesDirectory.appendingPathComponent("models/\(model)/expected.json"))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    func runFiveSteps(_ name: String, _ model: Module, file: StaticString = #filePath, line: UInt = #line) throws {
        let exp = try expected(name)
        try model.loadStateDict(load(name, "init.safetensors"))
        model.train()
        let batch = try load(name, "batch.safetensors")
        let (x, y) = (batch["x"]!, batch["y"]!)
        let opt = exp["optimizer"] as! [String: Any]
        let betas = (opt["betas"] as! [NSNumber]).map(\.floatValue)
        let optimizer = AdamW(model.namedParameters, learningRate: (opt["lr"] as! NSNumber).floatValue, betas: (betas[0], betas[1]),
                              eps: (opt["eps"] as! NSNumber).floatValue, weightDecay: (opt["weight_decay"] as! NSNumber).floatValue)
        let losses = (exp["losses"] as! [NSNumber]).map(\.floatValue)
        let grads1 = try load(name, "grads1.safetensors")
        for step in 0..<losses.count {
            optimizer.zeroGrad()
            let logits = model(x)
            let v = logits.shape.last!
            let loss = Loss.crossEntropy(logits.reshaped([-1, v]), y.reshaped([-1]))
            XCTAssertEqual(loss.item, losses[step], accuracy: 2e-5 * Swift.max(1, Swift.abs(losses[step])),
                           "\(name) loss at step \(step + 1)", file: file, line: line)
            loss.backward()
            if step == 0 {
                for (key, p) in model.namedParameters {
                    guard let g = p.grad, let e = grads1[key] else { XCTFail("\(name): no gradient for \(key)", file: file, line: line); continue }
                    assertClose(g, e, rtol: 1e-3, atol: 2e-6, "\(name) step-1 gradient of \(key)", file: file, line: line)
                }
            }
            optimizer.step()
        }
        // Keys whose true gradient is zero (a conv bias before BatchNorm): AdamW turns rounding noise
        // into steps of up to lr in either direction, so they can differ by 2 * steps * lr.
        let noisy = Set(((exp["float64_reference"] as? [String: Any])?["noise_dominated"] as? [String]) ?? [])
        let final = try load(name, "final.safetensors")
        let state = model.stateDict()
        XCTAssertEqual(Set(state.keys), Set(final.keys), "\(name) state_dict keys", file: file, line: line)
        for (key, e) in final {
            guard let v = state[key] else { continue }
            if e.dtype == .int64 {
                XCTAssertEqual(v.intScalars, e.intScalars, "\(name) \(key)", file: file, line: line)
            } else {
                assertClose(v, e, rtol: 1e-3, atol: noisy.contains(key) ? 0.1 : 2e-4, "\(name) final \(key)", file: file, line: line)
            }
        }
    }

    func testMLPMatchesPyTorch() throws { try runFiveSteps("mlp", Models.digitsMLP()) }
    func testCNNMatchesPyTorch() throws { try runFiveSteps("cnn", DigitsCNN()) }
    func testResNetMatchesPyTorch() throws { try runFiveSteps("resnet", SmallResNet()) }

    func testCharGPTMatchesPyTorch() throws {
        let config = try expected("gpt")["config"] as! [String: Any]
        func int(_ k: String) -> Int { (config[k] as! NSNumber).intValue }
        let gpt = CharGPT(CharGPT.Config(vocab: int("vocab"), context: int("context"), dModel: int("d_model"),
                                         heads: int("heads"), layers: int("layers"), rope: (config["rope"] as! NSNumber).boolValue))
        try runFiveSteps("gpt", gpt)
    }

    func testCheckpointedGPTGivesTheSameGradients() throws {
        let config = CharGPT.Config(vocab: 11, context: 8, dModel: 16, heads: 2, layers: 3)
        let a = CharGPT(config, seed: 3), b = CharGPT(config, seed: 3)
        b.checkpointing = true
        XCTAssertTrue(b.checkpointing)
        XCTAssertEqual(b.blocks.map(\.checkpointing), [true, true, false], "every block but the last")
        var rng = RandomGenerator(seed: 5)
        let ids = Tensor.randint([3, 8], low: 0, high: 11, generator: &rng)
        let targets = Tensor.randint([3, 8], low: 0, high: 11, generator: &rng)
        for m in [a, b] { Loss.crossEntropy(m(ids).reshaped([-1, 11]), targets.reshaped([-1])).backward() }
        for ((key, p), (_, q)) in zip(a.namedParameters, b.namedParameters) {
            assertClose(q.grad!, p.grad!, rtol: 1e-5, atol: 1e-7, "checkpointed gradient of \(key)")
        }
    }

    /// A GPT and a digits-CNN training step (forward, loss, backward, AdamW) give the same
    /// bits on 1 and 2 threads.
    func testGPTAndCNNStepsAreBitIdenticalAcrossThreadCounts() {
        func step(_ makeModel: () -> Module, _ x: Tensor, _ y: Tensor, classes: Int) -> [Float] {
            let model = makeModel()
            model.train()
            let opt = AdamW(model.namedParameters, learningRate: 1e-3)
            var out: [Float] = []
            for _ in 0..<2 {
                opt.zeroGrad()
                let loss = Loss.crossEntropy(model(x).reshaped([-1, classes]), y.reshaped([-1]))
                loss.backward()
                opt.step()
                out.append(loss.item)
            }
            for (_, p) in model.namedParameters { out += p.value.scalars }
            return out
        }
        var rng = RandomGenerator(seed: 12)
        let ids = Tensor.randint([16, 16], low: 0, high: 13, generator: &rng), next = Tensor.randint([16, 16], low: 0, high: 13, generator: &rng)
        let images = Tensor.normal([16, 1, 8, 8], generator: &rng), labels = Tensor.randint([16], low: 0, high: 10, generator: &rng)
        let config = CharGPT.Config(vocab: 13, context: 16, dModel: 64, heads: 4, layers: 2)  // big enough to thread the GEMMs
        let threads = ThreadPool.threadCount
        defer { ThreadPool.threadCount = threads }
        var results: [[[Float]]] = []
        for t in [1, 2] {
            ThreadPool.threadCount = t
            results.append([step({ CharGPT(config, seed: 1) }, ids, next, classes: 13),
                            step({ DigitsCNN(seed: 1) }, images, labels, classes: 10)])
        }
        XCTAssertEqual(results[0][0], results[1][0], "GPT")
        XCTAssertEqual(results[0][1], results[1][1], "CNN")
    }

    func testFusedAttentionLayerMatchesComposedOps() {
        for rope in [true, false] {
            var g = RandomGenerator(seed: 4)
            let attn = CausalSelfAttention(dModel: 24, heads: 3, rope: rope, generator: &g)
            let x = Tensor.normal([2, 11, 24], generator: &g)
            let seed = Tensor.normal([2, 11, 24], generator: &g)
            func run(_ f: (Tensor) -> Tensor) -> [String: Tensor] {
                for (_, p) in attn.namedParameters { p.zeroGrad() }
                let leaf = x.requiringGrad()
                let y = f(leaf)
                (y * seed).sum().backward()
                var out = ["y": y.detached(), "x.grad": leaf.grad!]
                for (k, p) in attn.namedParameters { out[k] = p.grad! }
                return out
            }
            let fused = run { attn($0) }, composed = run { attn.forwardComposed($0) }
            XCTAssertEqual(Set(fused.keys), Set(composed.keys))
            for (k, v) in composed { assertClose(fused[k]!, v, rtol: 1e-4, atol: 1e-5, "\(k) rope \(rope)") }
        }
    }

    func testSaveAndLoadRoundTripThroughSafeTensors() throws {
        let url = try temporaryDirectory().appendingPathComponent("model.safetensors")
        let a = DigitsCNN(seed: 1), b = DigitsCNN(seed: 2)
        try a.save(to: url)
        try b.load(contentsOf: url)
        for (key, value) in a.stateDict() {
            XCTAssertEqual(b.stateDict()[key]?.scalars, value.scalars, key)
        }
        XCTAssertThrowsError(try Models.digitsMLP().load(contentsOf: url)) { error in
            XCTAssertTrue("\(error)".contains("missing keys"), "\(error)")
        }
    }
}

/// A parameter shared by two modules (tied weights) is one parameter.
final class TiedParameterTests: XCTestCase {
    /// A layer that holds another layer's parameter (an output head tied to an embedding).
    final class TiedHead: Module {
        let weight: Parameter
        init(_ weight: Parameter) { self.weight = weight }
        override func forward(_ x: Tensor) -> Tensor { x.matmul(weight.value.T) }
    }

    func testSharedParameterIsListedSavedAndSteppedOnce() throws {
        var g = RandomGenerator(seed: 1)
        let embedding = Embedding(10, 4, generator: &g)
        let model = Sequential(embedding, TiedHead(embedding.weight))
        XCTAssertEqual(model.namedParameters.map(\.0), ["0.weight"])
        XCTAssertEqual(model.parameterCount(), 40)
        XCTAssertEqual(Set(model.stateDict().keys), ["0.weight"])
        // A file without the tied key loads strictly.
        try model.loadStateDict(["0.weight": Tensor.ones([10, 4])], strict: true)
        XCTAssertEqual(embedding.weight.value.scalars, [Float](repeating: 1, count: 40))
        // One optimiser step moves the shared weight once.
        let opt = SGD(model.namedParameters, learningRate: 0.1)
        model.parameters[0].grad = Tensor.ones([10, 4])
        opt.step()
        XCTAssertEqual(embedding.weight.value.scalars[0], 0.9, accuracy: 1e-6)
    }
}
