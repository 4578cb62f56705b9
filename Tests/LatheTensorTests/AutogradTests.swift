import LatheTensor
import XCTest
import _LatheTestSupport

final class AutogradTests: XCTestCase {
    func testGradientAccumulatesWhenATensorIsUsedTwice() {
        let x = Tensor([1.0, 2, 3]).requiringGrad()
        let y = (x * x + x).sum()  // d/dx = 2x + 1
        y.backward()
        XCTAssertEqual(x.grad?.scalars, [3, 5, 7])
        // A second backward adds to the leaf's gradient, as in PyTorch.
        (x * 2).sum().backward()
        XCTAssertEqual(x.grad?.scalars, [5, 7, 9])
        x.zeroGrad()
        XCTAssertNil(x.grad)
    }

    func testNoGradAndDetachRecordNothing() {
        let x = Tensor([1.0, 2]).requiringGrad()
        let y = noGrad { x * 3 }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertFalse(x.detached().requiresGrad)
        let z = (x * x.detached()).sum()  // the detached factor is a constant
        z.backward()
        XCTAssertEqual(x.grad?.scalars, [1, 2])
    }

    func testSeedGradientForNonScalarOutput() {
        let x = Tensor([1.0, 2, 3], shape: [3]).requiringGrad()
        let y = x * x
        y.backward(Tensor([1.0, 0, 2]))
        XCTAssertEqual(x.grad?.scalars, [2, 0, 12])
    }

    func testCheckpointGivesTheSameGradients() {
        var rng = RandomGenerator(seed: 11)
        let w1 = Tensor.normal([8, 16], generator: &rng).requiringGrad()
        let w2 = Tensor.normal([16, 4], generator: &rng).requiringGrad()
        let x = Tensor.normal([5, 8], generator: &rng).requiringGrad()
        func block(_ inputs: [Tensor]) -> Tensor { inputs[0].matmul(w1).gelu().matmul(w2).tanh() }

        let plain = block([x]).square().sum()
        plain.backward()
        let (gx, g1, g2) = (x.grad!, w1.grad!, w2.grad!)
        for t in [x, w1, w2] { t.zeroGrad() }

        let checkpointed = checkpoint([x], block).square().sum()
        assertClose(checkpointed, plain, rtol: 0, atol: 0)
        checkpointed.backward()
        assertClose(x.grad!, gx, rtol: 1e-6, atol: 1e-7)
        assertClose(w1.grad!, g1, rtol: 1e-6, atol: 1e-7)
        assertClose(w2.grad!, g2, rtol: 1e-6, atol: 1e-7)
    }

    func testFiniteDifferences() {
        var rng = RandomGenerator(seed: 12)
        func r(_ s: [Int]) -> Tensor { Tensor.normal(s, generator: &rng) }
        assertGradientsMatchFiniteDifferences([r([3, 4]), r([4, 5])], "matmul") { $0[0].matmul($0[1]).tanh() }
        assertGradientsMatchFiniteDifferences([r([2, 4, 5])], "softmax") { $0[0].softmax(dim: 1) }
        assertGradientsMatchFiniteDifferences([r([3, 5])], "logsumexp") { $0[0].logSumExp(dims: [1]) }
        assertGradientsMatchFiniteDifferences([r([3, 5])], "var") { $0[0].variance(dims: [1]) }
        assertGradientsMatchFiniteDifferences([r([2, 2, 5, 5]), r([2, 1, 3, 3]), r([2])], "conv2d groups") {
            $0[0].conv2d(weight: $0[1], bias: $0[2], stride: (2, 1), padding: (1, 1), dilation: (1, 2), groups: 2)
        }
        assertGradientsMatchFiniteDifferences([r([1, 2, 4, 4]), r([2, 3, 3, 3])], "conv_transpose2d") {
            $0[0].convTranspose2d(weight: $0[1], stride: (2, 2), padding: (1, 1), outputPadding: (1, 1))
        }
        assertGradientsMatchFiniteDifferences([r([1, 2, 6, 6])], "avg_pool2d") {
            $0[0].avgPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1), countIncludePad: false)
        }
        assertGradientsMatchFiniteDifferences([r([4, 6])], "gather/cumsum") {
            $0[0].gathering(dim: 1, index: Tensor([0, 5, 5, 2, 1, 0, 3, 3], shape: [4, 2])).cumulativeSum(dim: 0)
        }
        assertGradientsMatchFiniteDifferences([r([3, 4]), r([4])], "broadcast div/pow") {
            ($0[0] / ($0[1].square() + 1)) + Tensor.pow($0[0].abs() + 1, $0[1])
        }
    }

    func testDeepChainDoesNotOverflowTheStack() {
        var x = Tensor([1.0]).requiringGrad()
        let leaf = x
        for _ in 0..<20_000 { x = x * 1.0001 }
        x.sum().backward()
        XCTAssertEqual(leaf.grad!.item, Float(pow(1.0001, 20_000.0)), accuracy: 1e-2)
    }

    /// A product keeps an operand for its backward only when the other one needs a gradient:
    /// scaling by a constant or by a frozen weight holds no activation until the backward.
    func testMultiplicationKeepsOnlyTheOperandsItsGradientsNeed() {
        var rng = RandomGenerator(seed: 3)
        let x = Tensor.normal([256, 1024], generator: &rng).requiringGrad()  // 1 MB
        let frozen = Tensor.normal([1024], generator: &rng)
        let before = TensorMemory.liveBytes
        var y = x * 2
        for _ in 0..<4 { y = y * frozen }
        // The five products' outputs are temporaries: only the last one is alive.
        XCTAssertLessThanOrEqual(TensorMemory.liveBytes - before, 256 * 1024 * 4 + 64 * 1024)
        y.sum().backward()
        let expected = (frozen * frozen * frozen * frozen * 2).scalars
        for row in stride(from: 0, to: 256 * 1024, by: 1024 * 37) {
            XCTAssertEqual(Array(x.grad!.scalars[row..<(row + 1024)]), expected)
        }
    }

    /// Tensor buffers are counted while alive, and a freed large buffer is reused for the next
    /// request of its size.
    func testTensorMemoryCountsLiveBuffers() {
        let before = TensorMemory.liveBytes
        TensorMemory.resetPeak()
        do {
            let t = Tensor.zeros([1 << 20])  // 4 MB
            XCTAssertEqual(TensorMemory.liveBytes - before, 4 << 20)
            XCTAssertEqual(t.sum().item, 0)
        }
        XCTAssertEqual(TensorMemory.liveBytes, before)
        XCTAssertGreaterThanOrEqual(TensorMemory.peakBytes - before, 4 << 20)
        XCTAssertGreaterThanOrEqual(TensorMemory.cachedBytes, 4 << 20, "the freed 4 MB buffer is kept for reuse")
        let again = Tensor.zeros([1 << 20])  // a reused buffer is zeroed all the same
        XCTAssertEqual(again.abs().sum().item, 0)
        TensorMemory.releaseCache()
        XCTAssertEqual(TensorMemory.cachedBytes, 0)
    }

    /// Over its bound, the buffer cache gives up small blocks freed long ago rather than a large
    /// one: a 40 MB buffer freed first survives 120 MB of 4 MB buffers freed after it (the cache
    /// holds at most 64 MB here), and the next 40 MB request is served from it.
    func testBufferCacheEvictsSmallBlocksBeforeALargeOne() {
        TensorMemory.releaseCache()
        do { _ = Tensor.zeros([10 << 20]) }  // 40 MB, freed first: the oldest cached block
        var small = (0..<30).map { _ in Tensor.zeros([1 << 20]) }  // 4 MB each, another size
        small.removeAll()
        let cached = TensorMemory.cachedBytes
        XCTAssertGreaterThanOrEqual(cached, 40 << 20)
        let again = Tensor.zeros([10 << 20])
        XCTAssertEqual(TensorMemory.cachedBytes, cached - (40 << 20), "the 40 MB request was served from the cache")
        XCTAssertEqual(again.abs().sum().item, 0)
        TensorMemory.releaseCache()
    }
}
