import LatheTensor
import XCTest
import _LatheTestSupport

final class TensorTests: XCTestCase {
    func testCreation() {
        XCTAssertEqual(Tensor.arange(0, 1, step: 0.25).scalars, [0, 0.25, 0.5, 0.75])
        XCTAssertEqual(Tensor.arange(4).intScalars, [0, 1, 2, 3])
        XCTAssertEqual(Tensor.linspace(-1, 1, count: 5).scalars, [-1, -0.5, 0, 0.5, 1])
        XCTAssertEqual(Tensor.eye(2, 3).scalars, [1, 0, 0, 0, 1, 0])
        XCTAssertEqual(Tensor.full([2], 7).scalars, [7, 7])
        XCTAssertEqual(Tensor.zeros([2, 3]).shape, [2, 3])
        XCTAssertTrue(Tensor.ones([3]).isContiguous)
    }

    func testCopyOnWrite() {
        let a = Tensor([1.0, 2, 3])
        var b = a
        b.withUnsafeMutableBufferPointer { $0[0] = 9 }
        XCTAssertEqual(a.scalars, [1, 2, 3])
        XCTAssertEqual(b.scalars, [9, 2, 3])
        var c = Tensor([1.0, 2, 3, 4], shape: [2, 2]).transposed(0, 1)  // a view: mutation makes it dense first
        c.withUnsafeMutableBufferPointer { XCTAssertEqual(Array($0), [1, 3, 2, 4]) }
    }

    func testDTypeConversions() {
        let x = Tensor([1.5, -2.75, 65504, 70000, 1e-8])
        XCTAssertEqual(x.to(.float16).to(.float32).scalars, [1.5, -2.75, 65504, .infinity, 0])
        XCTAssertEqual(Tensor([1.00390625]).to(.bfloat16).to(.float32).scalars, [1])  // ties to even
        XCTAssertEqual(Tensor([-1.7, 2.9, 300]).to(.int64).intScalars, [-1, 2, 300])
        XCTAssertEqual(Tensor([300.0]).to(.uint8).intScalars, [44])
        XCTAssertEqual(Tensor([0, 0.5, -3]).to(.bool).intScalars, [0, 1, 1])
        XCTAssertEqual(Tensor([3, 4], dtype: .int32).to(.float32).scalars, [3, 4])
        XCTAssertEqual(Tensor([-5, 7], dtype: .int8).to(.int64).intScalars, [-5, 7])
        // Integer to integer is exact (no Float32 round trip): 2^24 + 1 survives.
        XCTAssertEqual(Tensor([16_777_217, -3], dtype: .int64).to(.int32).to(.int64).intScalars, [16_777_217, -3])
        XCTAssertEqual(Tensor([300, 0, -1], dtype: .int64).to(.uint8).intScalars, [44, 0, 255])
        XCTAssertEqual(Tensor([2, 0], dtype: .int32).to(.bool).intScalars, [1, 0])
    }

    func testBroadcastErrorNamesTheOpAndBothShapes() {
        XCTAssertEqual(try Shape.broadcast([3, 1, 4], [2, 4]), [3, 2, 4])
        XCTAssertThrowsError(try Shape.broadcast([3, 4], [2, 4], op: "add")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("add") && text.contains("[3, 4]") && text.contains("[2, 4]"), text)
        }
    }

    func testViewsShareStorageAndReshapeCopiesWhenNeeded() {
        let x = Tensor((0..<12).map(Float.init), shape: [3, 4])
        let t = x.transposed(0, 1)
        XCTAssertFalse(t.isContiguous)
        XCTAssertEqual(t.reshaped([12]).scalars, [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])
        XCTAssertEqual(x.expanded(to: [2, 3, 4]).strides, [0, 4, 1])
        XCTAssertEqual(x.sliced(dim: 1, start: -3, end: nil, step: 2).scalars, [1, 3, 5, 7, 9, 11])
        XCTAssertEqual(x.split(size: 2, dim: 0).map(\.shape), [[2, 4], [1, 4]])
    }

    func testRandomIsSeededAndThreadIndependent() {
        let threads = ThreadPool.threadCount
        defer { ThreadPool.threadCount = threads }
        var g1 = RandomGenerator(seed: 42)
        ThreadPool.threadCount = 1
        let a = Tensor.normal([100_001], generator: &g1)
        var g2 = RandomGenerator(seed: 42)
        ThreadPool.threadCount = 2
        let b = Tensor.normal([100_001], generator: &g2)
        XCTAssertEqual(a.scalars, b.scalars)
        XCTAssertEqual(g1, g2)
        // Moments of a large sample.
        XCTAssertEqual(a.mean().item, 0, accuracy: 0.02)
        XCTAssertEqual(a.standardDeviation().item, 1, accuracy: 0.02)
        let u = Tensor.uniform([100_000], low: -2, high: 2, generator: &g1)
        XCTAssertGreaterThanOrEqual(u.min().item, -2)
        XCTAssertLessThan(u.max().item, 2)
        XCTAssertEqual(u.mean().item, 0, accuracy: 0.03)
        let coin = Tensor.bernoulli([100_000], p: 0.3, generator: &g1)
        XCTAssertEqual(coin.mean().item, 0.3, accuracy: 0.01)
        let ints = Tensor.randint([10_000], low: 3, high: 9, generator: &g1).intScalars
        XCTAssertEqual(Set(ints), Set(3..<9))
        let perm = Tensor.permutation(50, generator: &g1).intScalars
        XCTAssertEqual(perm.sorted(), Array(0..<50))
        XCTAssertNotEqual(perm, Array(0..<50))
        // Different seeds differ.
        var g3 = RandomGenerator(seed: 43)
        XCTAssertNotEqual(Tensor.normal([8], generator: &g3).scalars, Array(a.scalars[0..<8]))
    }

    func testInitialisersHaveTheDocumentedScale() {
        var g = RandomGenerator(seed: 1)
        let w = Init.kaimingUniform([256, 512], generator: &g)
        let bound = (2.0 as Float).squareRoot() * (3.0 / 512).squareRoot()
        XCTAssertLessThanOrEqual(w.abs().max().item, bound)
        XCTAssertEqual(w.standardDeviation().item, bound / (3 as Float).squareRoot(), accuracy: 0.002)
        let x = Init.xavierNormal([200, 300, 3, 3], generator: &g)
        XCTAssertEqual(x.standardDeviation().item, (2.0 / Float(300 * 9 + 200 * 9)).squareRoot(), accuracy: 0.0005)
    }

    func testReductionsOfAScalar() {
        let x = Tensor(3).requiringGrad()
        let s = x.sum()
        XCTAssertEqual(s.shape, [])
        XCTAssertEqual(s.item, 3)
        XCTAssertEqual(x.mean().item, 3)
        XCTAssertEqual(x.max().item, 3)
        (s * 2).backward()
        XCTAssertEqual(x.grad?.scalars, [2])
    }

    func testMatmulOfABroadcastOperandCopiesItFirst() {
        var g = RandomGenerator(seed: 8)
        let row = Tensor.normal([1, 5], generator: &g), w = Tensor.normal([5, 3], generator: &g)
        let expanded = row.expanded(to: [4, 5])  // row stride 0: the GEMM cannot read it in place
        let y = expanded.matmul(w)
        let once = row.matmul(w).scalars
        XCTAssertEqual(y.scalars, once + once + once + once)
    }
}
