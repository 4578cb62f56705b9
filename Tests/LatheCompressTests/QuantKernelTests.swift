import CLatheKernels
import LatheCompress
import LatheTensor
import XCTest
import _LatheTestSupport

/// Runs `body` on every ISA the CPU has and with 1 and 2 threads, labelled with the int8 GEMM variant.
func forEveryISAAndThreadCount(_ body: (String) throws -> Void) rethrows {
    try forEachISAAndThreads { _ in try body("\(String(cString: lathe_qgemm_variant())) threads=\(ThreadPool.threadCount)") }
}

let awkwardGemmSizes: [(m: Int, n: Int, k: Int)] = [
    (1, 1, 1), (1, 7, 17), (7, 17, 63), (17, 129, 63), (63, 7, 129), (1, 129, 64), (64, 128, 64),
    (5, 33, 3), (130, 70, 300), (2, 16, 4), (49, 65, 129),
]

final class Int8GemmTests: XCTestCase {
    func testQuantizeU8MatchesTheReferenceOnEveryISA() {
        var rng = TestRNG(77)
        var x = rng.floats(203, -12, 40)
        x += [.nan, .infinity, -.infinity, 1e30, -1e30, 0, -0.0, 0.5, 1.5, 2.5, -0.5, -1.5, 3e7, -3e7]
        let p = AffineParams(min: -3, max: 9)
        forEveryISAAndThreadCount { variant in
            for n in [0, 1, 15, 16, 17, x.count] {
                var q = [UInt8](repeating: 7, count: n)
                x.withUnsafeBufferPointer { xs in q.withUnsafeMutableBufferPointer { lathe_quantize_u8(xs.baseAddress!, n, 1 / p.scale, p.zeroPoint, $0.baseAddress!) } }
                XCTAssertEqual(q, x.prefix(n).map { p.quantize($0) }, "\(variant) n=\(n)")
            }
        }
    }

    func testChannelsLastUnfoldingAndTransposes() {
        // The channels-last unfolding equals the NCHW one with each row's columns reordered (c, ki, kj) -> (ki, kj, c).
        var rng = TestRNG(78)
        let (b, c, h, w, k) = (2, 3, 5, 4, 3)
        let x = (0..<b * c * h * w).map { _ in UInt8(rng.int(0...255)) }
        let (oh, ow) = ((h + 2 - k) / 2 + 1, (w + 2 - k) / 2 + 1)
        var nchw = [UInt8](repeating: 0, count: b * oh * ow * c * k * k), nhwc = nchw, xl = x
        lathe_im2col_u8(x, b, c, h, w, k, k, 2, 2, 1, 1, 1, 1, oh, ow, 9, &nchw)
        lathe_transpose_u8(x, b, c, h * w, &xl)
        for i in 0..<b { for ch in 0..<c { for p in 0..<h * w { XCTAssertEqual(xl[(i * h * w + p) * c + ch], x[(i * c + ch) * h * w + p]) } } }
        lathe_im2col_nhwc_u8(xl, b, c, h, w, k, k, 2, 2, 1, 1, 1, 1, oh, ow, 9, &nhwc)
        let kdim = c * k * k
        for row in 0..<b * oh * ow {
            for ch in 0..<c { for t in 0..<k * k { XCTAssertEqual(nhwc[row * kdim + t * c + ch], nchw[row * kdim + ch * k * k + t]) } }
        }
        let f = rng.floats(3 * 17 * 20)
        var ft = [Float](repeating: 0, count: f.count)
        lathe_transpose_f32(f, 3, 17, 20, &ft)
        for i in 0..<3 { for r in 0..<17 { for col in 0..<20 { XCTAssertEqual(ft[i * 340 + col * 17 + r], f[i * 340 + r * 20 + col]) } } }
    }

    func testEveryVariantIsExercised() {
        var seen: [String] = []
        forEveryISAAndThreadCount { seen.append($0) }
        print("int8 GEMM variants tested: \(seen)")
        XCTAssertTrue(seen.contains("scalar threads=1") && seen.contains("scalar threads=2"))
        #if arch(x86_64)
        XCTAssertTrue(seen.contains { $0.hasPrefix("avx2") })
        #endif
    }

    func testPackUnpackRoundTrip() {
        var rng = TestRNG(1)
        for (n, k) in [(1, 1), (7, 17), (33, 63), (129, 5)] {
            let codes = (0..<n * k).map { _ in Int8(rng.int(-128...127)) }
            let p = PackedInt8Weights(codes: codes, scales: [Float](repeating: 1, count: n), rows: n, cols: k)
            XCTAssertEqual(p.codes, codes, "[\(n), \(k)]")
        }
    }

    func testKernelMatchesReferenceExactly() {
        var rng = TestRNG(2)
        for (m, n, k) in awkwardGemmSizes {
            let a = (0..<m * k).map { _ in UInt8(rng.int(0...255)) }
            // Extreme values included: -128 and 127 weights, 0 and 255 activations.
            let w = (0..<n * k).map { i in i % 11 == 0 ? Int8(-128) : Int8(rng.int(-127...127)) }
            let za = Int32(rng.int(0...255))
            let aScale = rng.float(0.001, 0.1), wScale = rng.floats(n, 0.001, 0.05), bias = rng.floats(n)
            let relu = m % 2 == 1, outInv: Float = 1 / rng.float(0.01, 0.5), outZp = Int32(rng.int(0...255))
            let refAcc = QuantReference.qgemmAccumulators(a: a, w: w, m: m, n: n, k: k, aZeroPoint: za)
            let ref = QuantReference.qgemmEpilogue(acc: refAcc, n: n, aScale: aScale, wScale: wScale, bias: bias, relu: relu,
                                                   outInvScale: outInv, outZeroPoint: outZp)
            let packed = PackedInt8Weights(codes: w, scales: wScale, rows: n, cols: k)
            forEveryISAAndThreadCount { label in
                var acc = [Int32](repeating: 0, count: m * n), out = [Float](repeating: .nan, count: m * n)
                var outQ = [UInt8](repeating: 0, count: m * n)
                packed.testRun(a, m: m, za: za, aScale: aScale, bias: bias, relu: relu, outInv: outInv, outZp: outZp,
                               acc: &acc, out: &out, outQ: &outQ)
                XCTAssertEqual(acc, refAcc, "accumulators \(m)x\(n)x\(k) \(label)")
                XCTAssertEqual(out.map(\.bitPattern), ref.out.map(\.bitPattern), "float output \(m)x\(n)x\(k) \(label)")
                XCTAssertEqual(outQ, ref.outQ, "requantised output \(m)x\(n)x\(k) \(label)")
            }
        }
    }

    func testIm2colMatchesReference() {
        var rng = TestRNG(3)
        for (b, c, h, w, kh, kw, s, p, d) in [(1, 1, 5, 5, 3, 3, 1, 1, 1), (2, 3, 7, 6, 3, 2, 2, 1, 1), (1, 2, 8, 8, 3, 3, 1, 2, 2)] {
            let x = (0..<b * c * h * w).map { _ in UInt8(rng.int(0...255)) }
            let ref = QuantReference.im2col(x, b: b, c: c, h: h, w: w, kh: kh, kw: kw, stride: (s, s), padding: (p, p), dilation: (d, d), pad: 7)
            var out = [UInt8](repeating: 0, count: ref.cols.count)
            lathe_im2col_u8(x, b, c, h, w, kh, kw, s, s, p, p, d, d, ref.oh, ref.ow, 7, &out)
            XCTAssertEqual(out, ref.cols)
        }
    }

    func testActivationQuantizationMatchesScalarFormula() {
        var rng = TestRNG(4)
        let x = rng.floats(1000, -3, 5) + [0, -0.0, 1e30, -1e30, 0.5, 1.5]
        let p = AffineParams(min: -3, max: 5)
        let q = x.withUnsafeBufferPointer { QuantMath.quantizeU8($0, p) }
        XCTAssertEqual(q, x.map { p.quantize($0) })
    }
}

extension PackedInt8Weights {
    /// Runs the kernel with every output requested.
    func testRun(_ a: [UInt8], m: Int, za: Int32, aScale: Float, bias: [Float], relu: Bool, outInv: Float, outZp: Int32,
                 acc: inout [Int32], out: inout [Float], outQ: inout [UInt8]) {
        let w = codes
        let n = rows, k = cols
        // Re-pack through the C API to exercise the raw entry point as the layers do.
        var packed = [Int8](repeating: 0, count: lathe_qgemm_packed_size(n, k)), sums = [Int32](repeating: 0, count: n)
        lathe_qgemm_pack_s8(n, k, w, k, &packed, &sums)
        scales.withUnsafeBufferPointer { ws in
            bias.withUnsafeBufferPointer { b in
                acc.withUnsafeMutableBufferPointer { accp in
                    out.withUnsafeMutableBufferPointer { o in
                        outQ.withUnsafeMutableBufferPointer { oq in
                            var ep = lathe_qgemm_epilogue(a_zero_point: za, a_scale: aScale, w_scale: ws.baseAddress, bias: b.baseAddress,
                                                          relu: relu ? 1 : 0, out: o.baseAddress, ld_out: n, out_q: oq.baseAddress, ld_out_q: n,
                                                          out_inv_scale: outInv, out_zero_point: outZp, out_acc: accp.baseAddress, ld_acc: n)
                            lathe_qgemm_u8s8(m, n, k, a, k, packed, sums, &ep)
                        }
                    }
                }
            }
        }
    }
}

final class WeightOnlyKernelTests: XCTestCase {
    static let schemes: [GroupwiseScheme] = [8, 4].flatMap { bits in
        [32, 64, 128].flatMap { g in [true, false].map { GroupwiseScheme(bits: bits, groupSize: g, symmetric: $0) } }
    }

    func testDequantizeMatchesReferenceExactly() {
        var rng = TestRNG(5)
        for scheme in Self.schemes {
            for (n, k) in [(1, 1), (7, 17), (3, 63), (5, 129), (2, 200)] {
                let g = GroupwiseWeights(quantizing: rng.floats(n * k, -2, 1), rows: n, cols: k, scheme: scheme)
                let ref = QuantReference.dequantize(g)
                forEveryISAAndThreadCount { label in
                    XCTAssertEqual(g.dequantized().map(\.bitPattern), ref.map(\.bitPattern), "\(scheme) [\(n), \(k)] \(label)")
                }
            }
        }
    }

    func testGemmMatchesReference() {
        var rng = TestRNG(6)
        for scheme in Self.schemes {
            for (m, n, k) in [(1, 7, 17), (1, 33, 129), (3, 17, 63), (7, 9, 200), (64, 40, 64), (1, 1, 1)] {
                let g = GroupwiseWeights(quantizing: rng.floats(n * k), rows: n, cols: k, scheme: scheme)
                let x = rng.floats(m * k), bias = rng.floats(n)
                let ref = QuantReference.weightOnlyMatmul(x: x, m: m, weights: g, bias: bias)
                let layer = WeightOnlyLinear(weight: g, bias: bias)
                forEveryISAAndThreadCount { label in
                    let y = layer(Tensor(x, shape: [m, k])).scalars
                    for i in 0..<y.count {
                        XCTAssertEqual(y[i], ref[i], accuracy: 1e-4 * (1 + abs(ref[i])) * Float(k).squareRoot(),
                                       "\(scheme) \(m)x\(n)x\(k) \(label) at \(i)")
                    }
                }
            }
        }
    }
}

/// The decode kernel with 8-bit activations (`lathe_wq_gemv_repacked`) against a naive twin written
/// from its definition, on every ISA and thread count: the same bits.
final class Int8ActivationGemvTests: XCTestCase {
    /// x quantized per 32-block (d = amax / 127, roundf), integer dots of each weight group's codes
    /// read as unsigned (symmetric int8: q + 128), then group by group acc += isum * (s d),
    /// off += c * (d sum) with c the group's offset for the unsigned codes.
    /// `fiveBit`: symmetric int8 codes read as q + 16 with c = -16 s (the 5-bit layout).
    func reference(x: [Float], w: GroupwiseWeights, bias: [Float]?, fiveBit: Bool = false) -> [Float] {
        let symmetricBias: Int32 = fiveBit ? 16 : 128
        let k = w.cols, nb = k / 32, gs = w.scheme.groupSize
        var y = [Float](repeating: 0, count: w.rows)
        var q = [Int32](repeating: 0, count: k), d = [Float](repeating: 0, count: nb)
        for b in 0..<nb {
            let amax = x[b * 32..<(b + 1) * 32].map { abs($0) }.max()!
            d[b] = amax / 127
            let id: Float = d[b] != 0 ? 1 / d[b] : 0
            for j in 0..<32 { q[b * 32 + j] = Int32((x[b * 32 + j] * id).rounded(.toNearestOrAwayFromZero)) }
        }
        for n in 0..<w.rows {
            var acc: Float = 0, off: Float = 0
            for gi in 0..<w.groups {
                let b = gi * gs / 32
                var isum: Int32 = 0, xsum: Int32 = 0
                for kk in gi * gs..<(gi + 1) * gs {
                    let byte = w.codes[n * w.rowBytes + (w.scheme.bits == 4 ? kk / 2 : kk)]
                    let u: Int32 = w.scheme.bits == 4 ? Int32((byte >> UInt8((kk & 1) * 4)) & 0xF)
                        : w.scheme.symmetric ? Int32(Int8(bitPattern: byte)) + symmetricBias : Int32(byte)
                    isum += u * q[kk]
                    xsum += q[kk]
                }
                let (s, offset) = w.scaleAndOffset(group: n * w.groups + gi)
                let c: Float = w.scheme.symmetric ? s * (w.scheme.bits == 4 ? -8 : -Float(symmetricBias)) : offset
                acc = acc.addingProduct(Float(isum), s * d[b])
                off = off.addingProduct(c, d[b] * Float(xsum))
            }
            y[n] = acc + off + (bias?[n] ?? 0)
        }
        return y
    }

    /// The same codes with float32 scales (and mins) that are not fp16 values, as K-quants have.
    func float32Scaled(_ g: GroupwiseWeights) -> GroupwiseWeights {
        let scales = g.scales.enumerated().map { i, h in Float(Float16(bitPattern: h)) * (1 + Float(i % 7 + 1) * 1e-4) }
        let mins = g.mins.enumerated().map { i, h in Float(Float16(bitPattern: h)) * (1 - Float(i % 5 + 1) * 1e-4) }
        return GroupwiseWeights(scheme: g.scheme, rows: g.rows, cols: g.cols, codes: g.codes, float32Scales: scales, float32Mins: mins)
    }

    func testMatchesTheNaiveTwinBitForBitAndStaysCloseToFloat() {
        var rng = TestRNG(21)
        // Q4_0/Q4_1/Q8_0 (fp16 scales), Q4_K (int4 asymmetric, float32), Q5_K (int8 asymmetric,
        // float32), Q6_K (int8 symmetric in groups of 16, float32).
        let schemes: [(GroupwiseScheme, Bool)] = [
            (GroupwiseScheme(bits: 4, groupSize: 32, symmetric: true), false), (GroupwiseScheme(bits: 4, groupSize: 32, symmetric: false), false),
            (GroupwiseScheme(bits: 8, groupSize: 32, symmetric: true), false), (GroupwiseScheme(bits: 4, groupSize: 32, symmetric: false), true),
            (GroupwiseScheme(bits: 8, groupSize: 32, symmetric: false), true), (GroupwiseScheme(bits: 8, groupSize: 16, symmetric: true), true)]
        // int8 codes that fit in 5 bits (Q5_0: q in [-16, 15]; Q5_K: u in [0, 31]) take the 5-bit layout.
        let fiveBit: [(GroupwiseScheme, Bool)] = [(GroupwiseScheme(bits: 8, groupSize: 32, symmetric: true), false),
                                                  (GroupwiseScheme(bits: 8, groupSize: 32, symmetric: false), true)]
        for (index, (scheme, f32)) in (schemes + fiveBit).enumerated() {
            let narrow = index >= schemes.count
            for (m, n, k) in [(1, 1, 32), (1, 17, 64), (1, 33, 288), (2, 40, 576), (4, 5, 1536), (1, 300, 96)] {
                var quantized = GroupwiseWeights(quantizing: rng.floats(n * k, -1.5, 1), rows: n, cols: k, scheme: scheme)
                if narrow {
                    let codes = quantized.codes.map { UInt8(bitPattern: scheme.symmetric ? Int8(Int($0) % 32 - 16) : Int8($0 % 32)) }
                    quantized = GroupwiseWeights(scheme: scheme, rows: n, cols: k, codes: codes, scales: quantized.scales, mins: quantized.mins)
                    let wide = GroupwiseWeights(quantizing: rng.floats(n * k, -1.5, 1), rows: n, cols: k, scheme: scheme)
                    let (small, large) = (quantized.withMatrix { lathe_wq_repacked_size($0, n, k) }, wide.withMatrix { lathe_wq_repacked_size($0, n, k) })
                    XCTAssertLessThan(small, large * 3 / 4, "5-bit codes take the 5-bit layout")
                }
                let g = f32 ? float32Scaled(quantized) : quantized
                XCTAssertTrue(g.supportsInt8Activations, "\(scheme)")
                var x = rng.floats(m * k, -3, 3)
                if k >= 64 { for j in 32..<64 { x[j] = 0 } }  // an all-zero block
                let bias = rng.floats(n)
                let layer = WeightOnlyLinear(weight: g, bias: bias)
                layer.int8Activations = true
                let expected = (0..<m).flatMap { r in reference(x: Array(x[r * k..<(r + 1) * k]), w: g, bias: bias, fiveBit: narrow) }
                let dense = QuantReference.weightOnlyMatmul(x: x, m: m, weights: g, bias: bias)
                let label = "\(scheme)\(f32 ? " f32" : "")\(narrow ? " 5-bit" : "") \(m)x\(n)x\(k)"
                forEachISAAndThreads { isa in
                    let y = layer(Tensor(x, shape: [m, k])).scalars
                    XCTAssertEqual(y.map(\.bitPattern), expected.map(\.bitPattern), "\(label) \(isa) \(String(cString: lathe_wq_gemv_variant()))")
                    // 8-bit activations cost a little precision: each x moves by at most 1/254 of its block's
                    // largest |x| (3 here), times weights up to 1.5 in size, over k terms of random sign.
                    let worst = zip(y, dense).map { abs($0 - $1) }.max()!
                    XCTAssertLessThan(worst, 2 * Float(k).squareRoot() * 1.5 * 3 / 254, "\(label) \(isa)")
                    // The float-activation path (more rows than int8ActivationRows) with these scales.
                    let rows = WeightOnlyLinear.int8ActivationRows + 1
                    let xs = (0..<rows).flatMap { _ in x[0..<k] }
                    let yf = layer(Tensor(xs, shape: [rows, k])).scalars
                    let densef = QuantReference.weightOnlyMatmul(x: Array(xs), m: rows, weights: g, bias: bias)
                    XCTAssertLessThan(zip(yf, densef).map { abs($0 - $1) }.max()!, 1e-3, "\(label) \(isa) float path")
                }
            }
        }
        // Weights the decode kernel does not take: int4 in groups of 16, K not a multiple of 32.
        XCTAssertFalse(GroupwiseWeights(quantizing: rng.floats(64), rows: 2, cols: 32, scheme: GroupwiseScheme(bits: 4, groupSize: 16)).supportsInt8Activations)
        XCTAssertFalse(GroupwiseWeights(quantizing: rng.floats(96), rows: 2, cols: 48, scheme: GroupwiseScheme(bits: 8, groupSize: 16)).supportsInt8Activations)
    }
}

/// Several quantized layers over one input in one kernel call (fused q/k/v, gate/up): the same
/// bits as one call per layer, on every ISA and thread count, with layers of different formats.
final class FusedProjectionTests: XCTestCase {
    func testOneCallEqualsOneCallPerLayer() {
        var rng = TestRNG(5)
        let k = 320
        func layer(_ n: Int, _ scheme: GroupwiseScheme, narrow: Bool = false) -> WeightOnlyLinear {
            var w = GroupwiseWeights(quantizing: rng.floats(n * k, -1, 1), rows: n, cols: k, scheme: scheme)
            if narrow { w = GroupwiseWeights(scheme: scheme, rows: n, cols: k, codes: w.codes.map { UInt8(bitPattern: Int8(Int($0) % 32 - 16)) },
                                             scales: w.scales, mins: w.mins) }
            let l = WeightOnlyLinear(weight: w, bias: n % 2 == 0 ? rng.floats(n) : nil)
            l.int8Activations = true
            return l
        }
        let layers = [layer(64, GroupwiseScheme(bits: 8, groupSize: 32), narrow: true), layer(17, GroupwiseScheme(bits: 4, groupSize: 32, symmetric: false)),
                      layer(300, GroupwiseScheme(bits: 8, groupSize: 16)), layer(48, GroupwiseScheme(bits: 8, groupSize: 32))]
        for m in [1, 3] {
            let x = Tensor(rng.floats(m * k, -2, 2), shape: [m, k])
            forEachISAAndThreads { label in
                let fused = WeightOnlyLinear.forward(layers, sharing: x)
                XCTAssertNotNil(fused, label)
                for (i, l) in layers.enumerated() {
                    XCTAssertEqual(fused?[i].shape, [m, l.outFeatures])
                    XCTAssertEqual(fused?[i].scalars.map(\.bitPattern), l(x).scalars.map(\.bitPattern), "layer \(i) m \(m) \(label)")
                }
            }
        }
        // Not the decode path: too many rows, float activations, or different input widths.
        XCTAssertNil(WeightOnlyLinear.forward(layers, sharing: Tensor(rng.floats((WeightOnlyLinear.int8ActivationRows + 1) * k), shape: [WeightOnlyLinear.int8ActivationRows + 1, k])))
        let plain = WeightOnlyLinear(weight: GroupwiseWeights(quantizing: rng.floats(32 * k), rows: 32, cols: k, scheme: GroupwiseScheme(bits: 4, groupSize: 32)), bias: nil)
        XCTAssertNil(WeightOnlyLinear.forward([layers[0], plain], sharing: Tensor(rng.floats(k), shape: [1, k])))
    }
}

final class QuantizedEmbeddingTests: XCTestCase {
    /// A lookup gives the dequantised rows of its ids, in the ids' shape.
    func testLookupGivesTheDequantisedRows() {
        var rng = TestRNG(8)
        for scheme in [GroupwiseScheme(bits: 8, groupSize: 32), GroupwiseScheme(bits: 4, groupSize: 32, symmetric: false)] {
            let w = GroupwiseWeights(quantizing: rng.floats(50 * 96, -1, 1), rows: 50, cols: 96, scheme: scheme)
            let table = w.dequantized(), e = QuantizedEmbedding(weight: w)
            let ids = [3, 49, 0, 3, 17, 8]
            let y = e(Tensor(ids, shape: [2, 3]))
            XCTAssertEqual(y.shape, [2, 3, 96])
            XCTAssertEqual(y.scalars, ids.flatMap { table[$0 * 96..<($0 + 1) * 96] }, "\(scheme)")
        }
    }
}
