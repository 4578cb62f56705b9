import LatheTensor

/// Random augmentation of training images `[N, C, H, W]`, as torchvision's
/// `RandomCrop(size, padding: shift)` followed by `RandomHorizontalFlip()`.
///
/// Each image is translated by a whole number of pixels drawn uniformly from `-shift...shift`
/// on each axis (the uncovered border is zero, the padding value), then, with
/// `horizontalFlip`, mirrored left to right with probability 1/2. Draws come from the generator
/// only, so a batch's augmentation is reproducible from its seed.
public struct ImageAugmentation: Sendable, Equatable {
    /// Largest translation in pixels, on each axis.
    public var shift: Int
    /// Mirror half the images left to right (not for digits or text, whose meaning it changes).
    public var horizontalFlip: Bool

    public init(shift: Int = 0, horizontalFlip: Bool = false) {
        precondition(shift >= 0, "ImageAugmentation: shift must be non-negative, got \(shift)")
        (self.shift, self.horizontalFlip) = (shift, horizontalFlip)
    }

    /// True when ``apply(_:generator:)`` returns its input unchanged.
    public var isIdentity: Bool { shift == 0 && !horizontalFlip }

    /// The augmented batch (a new tensor; `x` is not modified).
    public func apply(_ x: Tensor, generator: inout RandomGenerator) -> Tensor {
        precondition(x.rank == 4, "ImageAugmentation: expected images [N, C, H, W], got shape \(x.shape)")
        if isIdentity { return x }
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        precondition(shift < Swift.min(h, w), "ImageAugmentation: a shift of \(shift) pixels would empty \(h)x\(w) images")
        // Per image: dy, dx and flip, from draws in [0, 2(2 shift + 1)) so that both `% (2 shift + 1)`
        // and `% 2` are uniform.
        let draws = Tensor.randint([n, 3], low: 0, high: 2 * (2 * shift + 1), generator: &generator).intScalars
        var out = Tensor.zeros(x.shape)
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for i in 0..<n {
                    let dy = draws[3 * i] % (2 * shift + 1) - shift, dx = draws[3 * i + 1] % (2 * shift + 1) - shift
                    let flip = horizontalFlip && draws[3 * i + 2] % 2 == 1
                    // Output (r, col) reads input (r - dy, col' - dx), col' the (possibly mirrored) column.
                    let r0 = Swift.max(0, dy), r1 = Swift.min(h, h + dy)
                    let c0 = Swift.max(0, dx), c1 = Swift.min(w, w + dx)
                    guard r0 < r1, c0 < c1 else { continue }
                    for ch in 0..<c {
                        let plane = (i * c + ch) * h * w
                        for r in r0..<r1 {
                            let s = plane + (r - dy) * w, d = plane + r * w
                            if flip {
                                // Mirror after the shift: out[r][w-1-col] = shifted[r][col].
                                for col in c0..<c1 { dst[d + w - 1 - col] = src[s + col - dx] }
                            } else {
                                for col in c0..<c1 { dst[d + col] = src[s + col - dx] }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
