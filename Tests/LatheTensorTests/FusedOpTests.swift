import CLatheKernels
import LatheTensor
import XCTest
import _LatheTestSupport

/// Fused ops against the composed ops they replace, forward and backward, every ISA and 1
/// and 2 threads.
final class FusedOpTests: XCTestCase {
    /// lathe_sgemm_bias gives the bits of lathe_sgemm followed by a separate bias add.
    func testGEMMWithBiasIsGEMMThenBiasAdd() {
        var rng = RandomGenerator(seed: 2)
        forEachISAAndThreads { label in
            for (m, n, k) in [(1, 1, 1), (7, 17, 63), (129, 63, 17), (300, 70, 600), (64, 2100, 9), (5, 3, 0)] {
                for (ta, tb) in [(Int32(0), Int32(0)), (1, 0), (0, 1), (1, 1)] {
                    let a = Tensor.normal([m * Swift.max(k, 1)], generator: &rng).scalars
                    let b = Tensor.normal([n * Swift.max(k, 1)], generator: &rng).scalars
                    let bias = Tensor.normal([n], generator: &rng).scalars
                    let lda = ta == 1 ? m : k, ldb = tb == 1 ? k : n
                    var expected = [Float](repeating: 0, count: m * n), fused = [Float](repeating: .nan, count: m * n)
                    lathe_sgemm(ta, tb, m, n, k, 1, a, Swift.max(lda, 1), b, Swift.max(ldb, 1), 0, &expected, n)
                    for i in 0..<m { for j in 0..<n { expected[i * n + j] += bias[j] } }
                    lathe_sgemm_bias(ta, tb, m, n, k, 1, a, Swift.max(lda, 1), b, Swift.max(ldb, 1), 0, &fused, n, bias)
                    XCTAssertEqual(fused, expected, "\(label) \(m)x\(n)x\(k) ta \(ta) tb \(tb)")
                }
            }
        }
    }

    func testLinearMatchesMatmulPlusBias() {
        var rng = RandomGenerator(seed: 5)
        forEachISAAndThreads { label in
            for (m, k, n, withBias, transposedInput) in [(64, 64, 128, true, false), (3, 5, 7, false, false), (33, 17, 9, true, true),
                                                          (1, 130, 65, true, false), (200, 40, 30, false, true)] {
                let x0 = Tensor.normal(transposedInput ? [k, m] : [m, k], generator: &rng)
                let w0 = Tensor.normal([n, k], generator: &rng), b0 = Tensor.normal([n], generator: &rng)
                let seed = Tensor.normal([m, n], generator: &rng)
                func run(_ f: (Tensor, Tensor, Tensor?) -> Tensor) -> [Tensor] {
                    let x = x0.requiringGrad(), w = w0.requiringGrad(), b = b0.requiringGrad()
                    let input = transposedInput ? x.T : x
                    let y = f(input, w, withBias ? b : nil)
                    (y * seed).sum().backward()
                    return [y.detached(), x.grad!, w.grad!] + (withBias ? [b.grad!] : [])
                }
                let fused = run { $0.linear(weight: $1, bias: $2) }
                let composed = run { x, w, b in b.map { x.matmul(w.T) + $0 } ?? x.matmul(w.T) }
                let what = "\(label) m \(m) k \(k) n \(n) bias \(withBias) transposed \(transposedInput)"
                XCTAssertEqual(fused[0].scalars, composed[0].scalars, "output " + what)
                for (i, name) in ["output", "input grad", "weight grad", "bias grad"].enumerated() where i < fused.count {
                    assertClose(fused[i], composed[i], rtol: 1e-5, atol: 1e-5, name + " " + what)
                }
                XCTAssertTrue(fused[2].isContiguous, "weight grad is laid out as the weight")
            }
        }
    }

    /// The padded-plane im2col / col2im give the bits of the row-run kernels (col2im into zeros).
    func testSmallPlaneIm2colAndCol2imMatchRowKernels() {
        var rng = RandomGenerator(seed: 8)
        // (n, c, c0, channels, h, w, kh, kw, stride, padding, dilation)
        let cases = [(2, 3, 0, 3, 8, 8, 3, 3, (1, 1), (1, 1), (1, 1)), (3, 4, 2, 2, 4, 4, 3, 3, (1, 1), (1, 1), (1, 1)),
                     (1, 2, 0, 2, 7, 5, 3, 2, (2, 1), (1, 0), (1, 2)), (2, 1, 0, 1, 12, 12, 5, 5, (1, 1), (2, 2), (1, 1)),
                     (1, 3, 1, 1, 9, 6, 2, 3, (2, 2), (0, 1), (2, 1)), (4, 2, 0, 2, 1, 1, 1, 1, (1, 1), (0, 0), (1, 1))]
        for (n, c, c0, channels, h, w, kh, kw, s, p, d) in cases {
            let outH = (h + 2 * p.0 - d.0 * (kh - 1) - 1) / s.0 + 1, outW = (w + 2 * p.1 - d.1 * (kw - 1) - 1) / s.1 + 1
            var g = lathe_conv_geometry(in_h: h, in_w: w, kh: kh, kw: kw, sh: s.0, sw: s.1, ph: p.0, pw: p.1, dh: d.0, dw: d.1,
                                        out_h: outH, out_w: outW)
            XCTAssertEqual(lathe_conv_small_ok(&g), 1)
            let rows = channels * kh * kw, nl = n * outH * outW
            let x = Tensor.normal([n * c * h * w], generator: &rng).scalars
            var a = [Float](repeating: .nan, count: rows * nl), b = a
            lathe_im2col_f32(x, n, c, c0, &g, 0, rows, &a)
            lathe_im2col_small_f32(x, n, c, c0, channels, &g, 0, n * channels, &b)
            XCTAssertEqual(a, b, "im2col \(h)x\(w) k\(kh)x\(kw) s \(s) p \(p) d \(d)")
            let cols = Tensor.normal([rows * nl], generator: &rng).scalars
            var dx = [Float](repeating: 0, count: n * c * h * w), dxSmall = dx
            lathe_col2im_f32(cols, n, c, c0, channels, &g, 0, n * channels, &dx)
            lathe_col2im_small_f32(cols, n, c, c0, channels, &g, 0, n * channels, &dxSmall)
            XCTAssertEqual(dx, dxSmall, "col2im \(h)x\(w) k\(kh)x\(kw) s \(s) p \(p) d \(d)")
        }
    }

    func testMaxPool2x2WithoutGradientGivesTheSameValues() {
        // The inference path (no indices) against the training path, with ties, NaNs and odd sizes.
        // Widths cover the vector kernel's full 16-output steps, masked tails and odd columns;
        // values include -0 and +0 ties and NaNs of different payloads.
        var rng = RandomGenerator(seed: 10)
        forEachISAAndThreads { label in
            for (n, c, h, w) in [(2, 3, 4, 4), (1, 2, 5, 7), (3, 1, 8, 2), (4, 16, 28, 28), (2, 3, 6, 64), (1, 2, 4, 75)] {
                var values = Tensor.randint([n, c, h, w], low: -1, high: 3, generator: &rng).to(.float32).scalars.map { $0 == -1 ? -Float(0) : $0 }
                for i in stride(from: 5, to: values.count, by: 17) { values[i] = Float(nan: UInt32(i % 7), signaling: false) }
                let x = Tensor(values, shape: [n, c, h, w])
                let inference = noGrad { x.maxPool2d(kernel: (2, 2)) }
                let training = x.requiringGrad().maxPool2d(kernel: (2, 2))
                XCTAssertTrue(training.requiresGrad)
                XCTAssertEqual(inference.scalars.map(\.bitPattern), training.detached().scalars.map(\.bitPattern), "\(label) [\(n), \(c), \(h), \(w)]")
                XCTAssertTrue(inference.scalars.contains { $0.isNaN })
            }
        }
    }

    func testMaxPool2x2GradientGoesToTheFirstMaximum() {
        var rng = RandomGenerator(seed: 9)
        forEachISAAndThreads { label in
            for (n, c, h, w) in [(2, 3, 4, 4), (1, 2, 5, 7), (3, 1, 8, 2)] {
                // Values from a small set, so windows have ties.
                let x = (Tensor.randint([n, c, h, w], low: 0, high: 3, generator: &rng).to(.float32)).requiringGrad()
                let y = x.maxPool2d(kernel: (2, 2))
                let seed = Tensor.normal(y.shape, generator: &rng)
                (y * seed).sum().backward()
                let xs = x.scalars, gs = seed.scalars
                var expected = [Float](repeating: 0, count: xs.count)
                let (oh, ow) = (h / 2, w / 2)
                for p in 0..<(n * c) {
                    for oy in 0..<oh {
                        for ox in 0..<ow {
                            var best = -Float.infinity, bi = -1
                            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                                let i = p * h * w + (2 * oy + dy) * w + 2 * ox + dx
                                if xs[i] > best { best = xs[i]; bi = i }
                            }
                            expected[bi] += gs[(p * oh + oy) * ow + ox]
                        }
                    }
                }
                XCTAssertEqual(x.grad!.scalars, expected, "\(label) \(n)x\(c)x\(h)x\(w)")
            }
        }
    }

    func testConvGradientsMatchReferenceOnSmallAndLargePlanes() {
        var rng = RandomGenerator(seed: 10)
        // The conv backward (bias from the [O, N*L] gradient, col2im) on both kernel paths.
        for (h, w) in [(4, 4), (20, 24)] {  // padded-plane kernels, then the row-run kernels
            assertGradientsMatchFiniteDifferences([Tensor.normal([2, 2, h, w], generator: &rng), Tensor.normal([3, 2, 3, 3], generator: &rng),
                                                   Tensor.normal([3], generator: &rng)], "conv2d \(h)x\(w)") {
                $0[0].conv2d(weight: $0[1], bias: $0[2], padding: (1, 1))
            }
        }
    }

    /// index_select's backward (row adds) gives the bits of the scatter_add formulation.
    func testIndexSelectGradientIsScatterAdd() {
        var rng = RandomGenerator(seed: 11)
        for (shape, dim) in [([7, 5], 0), ([3, 6, 4], 1), ([4, 9], 1), ([65, 16], 0)] {
            let x = Tensor.normal(shape, generator: &rng).requiringGrad()
            let ids = [2, 0, 2, -1, 3, 2, 1, 0, -2]
            let index = Tensor(ids, shape: [ids.count])
            let y = x.indexSelect(dim: dim, index: index)
            let seed = Tensor.normal(y.shape, generator: &rng)
            (y * seed).sum().backward()
            var ishape = [Int](repeating: 1, count: y.rank)
            ishape[dim] = ids.count
            let positive = Tensor(ids.map { $0 < 0 ? $0 + shape[dim] : $0 }, shape: ishape).expanded(to: y.shape).contiguous()
            let expected = Tensor.zeros(shape).scatteringAdd(dim: dim, index: positive, source: seed)
            XCTAssertEqual(x.grad!.scalars, expected.scalars, "index_select \(shape) dim \(dim)")
        }
    }

    /// gelu's fused forward gives the unary kernel's values (bits), and its saved derivative
    /// the unary backward kernel's gradients (to a few ulps).
    func testGELUForwardWithDerivativeMatchesUnaryKernels() {
        var rng = RandomGenerator(seed: 12)
        forEachISAAndThreads { label in
            let x0 = Tensor.normal([5, 1001], generator: &rng) * 4
            let special = Tensor([0, -0.0, 1e-30, -1e-30, 0.3, -0.71, 1.42, -1.42, 9, -9, .infinity, -.infinity, .nan], shape: [13])
            for x in [x0.flattened(), special] {
                let leaf = x.requiringGrad()
                let y = leaf.gelu()
                let seed = Tensor.normal(x.shape, generator: &rng)
                (y * seed).sum().backward()
                let xs = x.scalars, gs = seed.scalars, n = xs.count
                var ey = [Float](repeating: 0, count: n), eg = ey
                lathe_unary_f32(Int32(LATHE_U_GELU_ERF.rawValue), xs, 1, &ey, 1, n)
                lathe_unary_backward_f32(Int32(LATHE_U_GELU_ERF.rawValue), xs, ey, gs, &eg, n)
                let ys = y.scalars, dxs = leaf.grad!.scalars
                for i in 0..<n {
                    XCTAssertTrue(ys[i] == ey[i] || (ys[i].isNaN && ey[i].isNaN), "\(label) gelu(\(xs[i])) = \(ys[i]), kernel \(ey[i])")
                    // The derivative's Gaussian comes from erfc's exp: a few ulps of d in [-0.17, 1.13].
                    XCTAssertTrue(Swift.abs(dxs[i] - eg[i]) <= 1e-6 * Swift.abs(gs[i]) || (dxs[i].isNaN && eg[i].isNaN),
                                  "\(label) gelu'(\(xs[i])) = \(dxs[i]), kernel \(eg[i])")
                }
            }
        }
    }

    /// A weight packed once (PackedGEMMOperand) gives the bits of the ordinary linear, forward
    /// and backward, with ragged panels, several K blocks, a bias and a transposed input.
    func testLinearWithPackedWeightGivesTheSameBits() {
        var rng = RandomGenerator(seed: 11)
        forEachISAAndThreads { label in
            for (m, k, n, withBias, transposedInput) in [(128, 576, 192, false, false), (7, 1100, 45, true, false), (33, 17, 9, true, true),
                                                          (1, 130, 65, false, false), (300, 600, 70, true, false)] {
                let x0 = Tensor.normal(transposedInput ? [k, m] : [m, k], generator: &rng)
                let w0 = Tensor.normal([n, k], generator: &rng), b0 = Tensor.normal([n], generator: &rng)
                let seed = Tensor.normal([m, n], generator: &rng)
                let packed = PackedGEMMOperand(transposedOf: w0)
                XCTAssertEqual([packed.rows, packed.columns], [k, n])
                func run(_ p: PackedGEMMOperand?) -> (Tensor, Tensor) {
                    let x = x0.requiringGrad()
                    let input = transposedInput ? x.T : x
                    let y = input.linear(weight: w0, bias: withBias ? b0 : nil, packedWeight: p)
                    (y * seed).sum().backward()
                    return (y, x.grad!)
                }
                let (y0, g0) = run(nil), (y1, g1) = run(packed)
                XCTAssertEqual(y1.scalars, y0.scalars, "\(label) \(m)x\(k)x\(n)")
                XCTAssertEqual(g1.scalars, g0.scalars, "\(label) \(m)x\(k)x\(n) input gradient")
            }
        }
    }

    /// swiglu(gate, up) gives the bits of silu(gate) * up, and of its gradients.
    func testSwiGLUMatchesSiluTimesUp() {
        var rng = RandomGenerator(seed: 12)
        forEachISAAndThreads { label in
            for shape in [[3, 5], [64, 1536], [1, 70001]] {
                let g0 = Tensor.normal(shape, generator: &rng) * 4, u0 = Tensor.normal(shape, generator: &rng)
                let seed = Tensor.normal(shape, generator: &rng)
                func run(_ f: (Tensor, Tensor) -> Tensor) -> [[Float]] {
                    let g = g0.requiringGrad(), u = u0.requiringGrad()
                    let y = f(g, u)
                    (y * seed).sum().backward()
                    return [y.scalars, g.grad!.scalars, u.grad!.scalars]
                }
                let fused = run { $0.swiglu($1) }, composed = run { $0.silu() * $1 }
                XCTAssertEqual(fused[0], composed[0], "\(label) \(shape) values")
                XCTAssertEqual(fused[1], composed[1], "\(label) \(shape) gate gradient")
                XCTAssertEqual(fused[2], composed[2], "\(label) \(shape) up gradient")
            }
        }
    }

    /// loraLinear gives the bits of linear + addingLinear(linear(x, A), B) and of their gradients:
    /// the input gradient summed in one buffer is the tape's sum of the two. With a packed
    /// weight, a bias, a transposed input, and a trained or frozen weight.
    func testLoRALinearMatchesTheComposedOps() {
        var rng = RandomGenerator(seed: 13)
        forEachISAAndThreads { label in
            for (m, k, n, r, withBias, transposedInput, trainW) in [(128, 576, 192, 8, false, false, false), (7, 130, 45, 4, true, false, true),
                                                                    (33, 17, 9, 2, true, true, false), (300, 600, 70, 8, false, false, true)] {
                let x0 = Tensor.normal(transposedInput ? [k, m] : [m, k], generator: &rng)
                let w0 = Tensor.normal([n, k], generator: &rng), b0 = Tensor.normal([n], generator: &rng)
                let a0 = Tensor.normal([r, k], generator: &rng), bb0 = Tensor.normal([n, r], generator: &rng)
                let seed = Tensor.normal([m, n], generator: &rng)
                let packed = trainW ? nil : PackedGEMMOperand(transposedOf: w0)
                func run(fused: Bool) -> [[Float]] {
                    let x = x0.requiringGrad(), a = a0.requiringGrad(), bb = bb0.requiringGrad()
                    let w = trainW ? w0.requiringGrad() : w0, bias = withBias ? (trainW ? b0.requiringGrad() : b0) : nil
                    let input = transposedInput ? x.T : x
                    let y = fused
                        ? input.loraLinear(weight: w, bias: bias, packedWeight: packed, a: a, b: bb, scale: 0.75)
                        : input.linear(weight: w, bias: bias, packedWeight: packed).addingLinear(input.linear(weight: a), weight: bb, scale: 0.75)
                    (y * seed).sum().backward()
                    var out = [y.scalars, x.grad!.scalars, a.grad!.scalars, bb.grad!.scalars]
                    if trainW { out.append(w.grad!.scalars) }
                    if trainW, let bias { out.append(bias.grad!.scalars) }
                    return out
                }
                let fused = run(fused: true), composed = run(fused: false)
                for (i, what) in ["values", "input gradient", "A gradient", "B gradient", "weight gradient", "bias gradient"].prefix(fused.count).enumerated() {
                    XCTAssertEqual(fused[i], composed[i], "\(label) \(m)x\(k)x\(n) rank \(r): \(what)")
                }
            }
        }
    }
}
