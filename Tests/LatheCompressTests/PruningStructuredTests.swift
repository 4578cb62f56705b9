import Lathe
import XCTest
import _LatheTestSupport

/// Structured pruning removes channels physically; before any fine-tuning the smaller model
/// must compute what the original computes with those channels masked out.
final class PruningStructuredTests: XCTestCase {
    /// A CNN with non-trivial BatchNorm statistics and affine parameters (fresh ones are the
    /// identity, which would hide a mistake in slicing them).
    func makeCNN(seed: UInt64) -> DigitsCNN {
        let m = DigitsCNN(seed: seed)
        var g = RandomGenerator(seed: seed &+ 100)
        for bn in [m.bn1, m.bn2] {
            let c = bn.features
            bn.runningMean.value = Tensor.normal([c], std: 0.5, generator: &g)
            bn.runningVar.value = Tensor.uniform([c], low: 0.2, high: 2, generator: &g)
            bn.weight!.value = Tensor.uniform([c], low: 0.5, high: 1.5, generator: &g)
            bn.bias!.value = Tensor.normal([c], std: 0.3, generator: &g)
        }
        m.eval()
        return m
    }

    func copyCNN(_ m: DigitsCNN, seed: UInt64) throws -> DigitsCNN {
        let c = DigitsCNN(seed: seed)
        try c.loadStateDict(m.stateDict())
        c.eval()
        return c
    }

    func channelMask(_ count: Int, kept: [Int], rank: Int) -> Tensor {
        var v = [Float](repeating: 0, count: count)
        for j in kept { v[j] = 1 }
        return Tensor(v, shape: rank == 4 ? [1, count, 1, 1] : [1, count])
    }

    /// The original CNN's forward with the removed channels' activations zeroed after the
    /// BatchNorm. (Zeroing only the conv weights would not do: a BN channel whose input is 0
    /// outputs `bias - mean * weight / sqrt(var + eps)`, which the pruned model no longer has.)
    func maskedForward(_ m: DigitsCNN, _ x: Tensor, kept: [String: [Int]]) -> Tensor {
        let m1 = channelMask(32, kept: kept["conv1"]!, rank: 4), m2 = channelMask(64, kept: kept["conv2"]!, rank: 4)
        let m3 = channelMask(128, kept: kept["fc1"]!, rank: 2)
        var h = (m.bn1(m.conv1(x)) * m1).relu().maxPool2d(kernel: (2, 2))
        h = (m.bn2(m.conv2(h)) * m2).relu().maxPool2d(kernel: (2, 2))
        return m.fc2((m.fc1(h.flattened(from: 1)) * m3).relu())
    }

    func testPrunedCNNEqualsMaskedCNN() throws {
        for (ratio, importance) in [(0.5, ChannelImportance.l1), (0.25, .l2), (0.75, .l1)] {
            let original = makeCNN(seed: 7)
            let pruned = try copyCNN(original, seed: 99)
            let result = pruneChannels(pruned, dependencies: ChannelDependency.digitsCNN, ratio: ratio, importance: importance)
            let keep = { (n: Int) in n - Int((ratio * Double(n)).rounded()) }
            XCTAssertEqual(result.kept["conv1"]!.count, keep(32))
            XCTAssertEqual(result.kept["conv2"]!.count, keep(64))
            XCTAssertEqual(result.kept["fc1"]!.count, keep(128))
            XCTAssertEqual(pruned.conv1.weight.value.shape, [keep(32), 1, 3, 3])
            XCTAssertEqual(pruned.conv2.weight.value.shape, [keep(64), keep(32), 3, 3])
            XCTAssertEqual(pruned.bn1.features, keep(32))
            XCTAssertEqual(pruned.bn2.weight!.value.shape, [keep(64)])
            XCTAssertEqual(pruned.fc1.weight.value.shape, [keep(128), keep(64) * 4])
            XCTAssertEqual(pruned.fc2.weight.value.shape, [10, keep(128)])
            XCTAssertEqual(result.parametersBefore, original.parameterCount())
            XCTAssertEqual(result.parametersAfter, pruned.parameterCount())
            XCTAssertLessThan(result.parametersAfter, result.parametersBefore)
            XCTAssertEqual(Set(pruned.stateKeys), Set(original.stateKeys))

            // The kept channels are those with the largest norms.
            let scores = channelImportance(original.conv2, importance)
            let threshold = result.kept["conv2"]!.map { scores[$0] }.min()!
            for j in 0..<64 where !result.kept["conv2"]!.contains(j) { XCTAssertLessThanOrEqual(scores[j], threshold) }

            var g = RandomGenerator(seed: 1)
            let x = Tensor.uniform([6, 1, 8, 8], generator: &g)
            let expected = noGrad { maskedForward(original, x, kept: result.kept) }
            let actual = noGrad { pruned(x) }
            assertClose(actual, expected, rtol: 1e-5, atol: 1e-5, "ratio \(ratio)")
            // Sanity: masking matters (the unmasked original differs).
            XCTAssertGreaterThan(noGrad { (original(x) - actual).abs().max().item }, 1e-3)

            // A pruned state dict loads into a fresh model, which then computes the same.
            let fresh = DigitsCNN(seed: 5)
            try loadPrunedStateDict(pruned.stateDict(), into: fresh)
            fresh.eval()
            assertClose(noGrad { fresh(x) }, actual, rtol: 0, atol: 0)
        }
    }

    /// Zeroing the BN's affine parameters of the removed channels (instead of masking the
    /// activation) is the same computation, as is zeroing the conv rows and the BN's weight and bias.
    func testMaskingBatchNormAffineIsEquivalent() throws {
        let original = makeCNN(seed: 3)
        let pruned = try copyCNN(original, seed: 0)
        let kept = pruneChannels(pruned, dependencies: ChannelDependency.digitsCNN, ratio: 0.5).kept
        let zeroed = try copyCNN(original, seed: 0)
        noGrad {
            for (conv, bn, name, n) in [(zeroed.conv1, zeroed.bn1, "conv1", 32), (zeroed.conv2, zeroed.bn2, "conv2", 64)] {
                let m = channelMask(n, kept: kept[name]!, rank: 2).reshaped([n])
                conv.weight.value = conv.weight.value * m.reshaped([n, 1, 1, 1])
                conv.bias!.value = conv.bias!.value * m
                bn.weight!.value = bn.weight!.value * m
                bn.bias!.value = bn.bias!.value * m
            }
            let m = channelMask(128, kept: kept["fc1"]!, rank: 2).reshaped([128])
            zeroed.fc1.weight.value = zeroed.fc1.weight.value * m.reshaped([128, 1])
            zeroed.fc1.bias!.value = zeroed.fc1.bias!.value * m
        }
        var g = RandomGenerator(seed: 2)
        let x = Tensor.uniform([4, 1, 8, 8], generator: &g)
        assertClose(noGrad { pruned(x) }, noGrad { zeroed(x) }, rtol: 1e-5, atol: 1e-5)
    }

    func testPrunedMLPEqualsMaskedMLP() throws {
        let original = Models.digitsMLP(hidden: 32, seed: 4)
        let pruned = Models.digitsMLP(hidden: 32, seed: 0)
        try pruned.loadStateDict(original.stateDict())
        let deps = try XCTUnwrap(ChannelDependency.plan(for: pruned))
        XCTAssertEqual(deps, [ChannelDependency(producer: "0", consumers: [.init("2")]),
                              ChannelDependency(producer: "2", consumers: [.init("4")])])
        let result = pruneChannels(pruned, dependencies: deps, ratios: ["0": 0.5, "2": 0.25])
        XCTAssertEqual(pruned.parameterCount(), 64 * 16 + 16 + 16 * 12 + 12 + 12 * 10 + 10)
        var g = RandomGenerator(seed: 3)
        let x = Tensor.normal([5, 64], generator: &g)
        let l = original.layers.compactMap { $0 as? Linear }
        let h1 = l[0](x) * channelMask(32, kept: result.kept["0"]!, rank: 2)
        let h2 = l[1](h1.relu()) * channelMask(16, kept: result.kept["2"]!, rank: 2)
        assertClose(noGrad { pruned(x) }, noGrad { l[2](h2.relu()) }, rtol: 1e-5, atol: 1e-6)
    }

    func testPlans() {
        XCTAssertNil(ChannelDependency.plan(for: SmallResNet()))
        XCTAssertEqual(ChannelDependency.plan(for: DigitsCNN()), ChannelDependency.digitsCNN)
        var g = RandomGenerator(seed: 0)
        let convChain = Sequential(Conv2d(1, 8, kernelSize: 3, generator: &g), BatchNorm(8), ReLU(), Flatten(), Linear(8 * 36, 10, generator: &g))
        XCTAssertEqual(ChannelDependency.chain(convChain), [ChannelDependency(producer: "0", norm: "1", consumers: [.init("4")])])
        let result = pruneChannels(convChain, dependencies: ChannelDependency.chain(convChain)!, ratio: 0.5)
        XCTAssertEqual(result.kept["0"]!.count, 4)
        XCTAssertEqual((convChain.layers[4] as! Linear).inFeatures, 4 * 36)
    }
}
