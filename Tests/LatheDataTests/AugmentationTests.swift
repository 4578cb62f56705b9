import LatheData
import LatheTensor
import XCTest

/// Random shifts and flips of training images.
final class AugmentationTests: XCTestCase {
    /// `count` images [1, h, w] with distinct, non-zero pixel values.
    func images(_ count: Int, _ h: Int, _ w: Int) -> Tensor {
        Tensor((0..<(count * h * w)).map { Float($0 + 1) }, shape: [count, 1, h, w])
    }

    /// Image `x` shifted by (dy, dx) with zero fill, then mirrored when `flip`, as in torchvision.
    func reference(_ x: [Float], _ h: Int, _ w: Int, dy: Int, dx: Int, flip: Bool) -> [Float] {
        var out = [Float](repeating: 0, count: h * w)
        for r in 0..<h {
            for c in 0..<w where (0..<h).contains(r - dy) && (0..<w).contains(c - dx) {
                out[r * w + (flip ? w - 1 - c : c)] = x[(r - dy) * w + c - dx]
            }
        }
        return out
    }

    func testEachImageIsAShiftedOrMirroredCopyAndAllOptionsOccur() {
        let (n, h, w, shift) = (200, 5, 6, 2)
        let x = images(n, h, w)
        var g = RandomGenerator(seed: 7)
        let y = ImageAugmentation(shift: shift, horizontalFlip: true).apply(x, generator: &g)
        XCTAssertEqual(y.shape, x.shape)
        let xs = x.scalars, ys = y.scalars
        var seen = Set<[Int]>()
        for i in 0..<n {
            let src = Array(xs[(i * h * w)..<((i + 1) * h * w)]), got = Array(ys[(i * h * w)..<((i + 1) * h * w)])
            var matches: [[Int]] = []
            for dy in -shift...shift {
                for dx in -shift...shift {
                    for flip in [false, true] where reference(src, h, w, dy: dy, dx: dx, flip: flip) == got {
                        matches.append([dy, dx, flip ? 1 : 0])
                    }
                }
            }
            XCTAssertEqual(matches.count, 1, "image \(i) is not exactly one shifted/mirrored copy of its source")
            if let m = matches.first { seen.insert(m) }
        }
        // 5 x 5 shifts x 2 flips = 50 outcomes; 200 uniform draws miss any one with probability ~1.7e-2,
        // so ask for most of them and both ends of each range.
        XCTAssertGreaterThan(seen.count, 40)
        for v in [-shift, shift] {
            XCTAssertTrue(seen.contains { $0[0] == v } && seen.contains { $0[1] == v }, "shift \(v) never drawn")
        }
        XCTAssertEqual(Set(seen.map { $0[2] }), [0, 1])
    }

    func testDeterministicPerGeneratorAndIdentityWhenOff() {
        let x = images(16, 8, 8)
        let a = ImageAugmentation(shift: 1)
        var g1 = RandomGenerator(seed: 3, offset: 100), g2 = RandomGenerator(seed: 3, offset: 100), g3 = RandomGenerator(seed: 3, offset: 200)
        XCTAssertEqual(a.apply(x, generator: &g1).scalars, a.apply(x, generator: &g2).scalars)
        XCTAssertNotEqual(a.apply(x, generator: &g3).scalars, a.apply(x, generator: &g1).scalars)
        XCTAssertTrue(ImageAugmentation().isIdentity)
        var g = RandomGenerator(seed: 1)
        XCTAssertEqual(ImageAugmentation().apply(x, generator: &g).scalars, x.scalars)
        // Channels move together.
        let rgb = Tensor((0..<(4 * 3 * 4 * 4)).map { Float($0 % 16 + 1) }, shape: [4, 3, 4, 4])
        let out = ImageAugmentation(shift: 1, horizontalFlip: true).apply(rgb, generator: &g).scalars
        for i in 0..<4 {
            let planes = (0..<3).map { Array(out[((i * 3 + $0) * 16)..<((i * 3 + $0 + 1) * 16)]) }
            XCTAssertEqual(planes[0], planes[1])
            XCTAssertEqual(planes[0], planes[2])
        }
    }
}
