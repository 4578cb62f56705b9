import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// The inference attention core against the composed definition (`softmax(q k^T * scale + mask) v`
/// with tensor ops), on awkward shapes: grouped heads, a head size unrelated to the width, an
/// offset, a window, padding, soft-capping.
final class AttentionCoreTests: XCTestCase {
    func composed(q: [Float], k: [Float], v: [Float], rows: Int, keys: Int, heads: Int, kvHeads: Int, d: Int, start: Int,
                  scale: Float, mask: AttentionMask) -> [Float] {
        var out = [Float](repeating: 0, count: rows * heads * d)
        for h in 0..<heads {
            let g = h / (heads / kvHeads)
            let qh = Tensor(q, shape: [rows, heads, d]).sliced(dim: 1, start: h, end: h + 1).reshaped([rows, d])
            let kh = Tensor(k, shape: [keys, kvHeads, d]).sliced(dim: 1, start: g, end: g + 1).reshaped([keys, d])
            let vh = Tensor(v, shape: [keys, kvHeads, d]).sliced(dim: 1, start: g, end: g + 1).reshaped([keys, d])
            var s = qh.matmul(kh.T) * scale
            if let cap = mask.softcap { s = (s / cap).tanh() * cap }
            var bias = [Float](repeating: 0, count: rows * keys)
            for r in 0..<rows {
                for j in 0..<keys {
                    var ok = mask.keyValid?[j] ?? true
                    if mask.causal { ok = ok && j <= start + r && (mask.window.map { j > start + r - $0 } ?? true) }
                    if !ok { bias[r * keys + j] = -.infinity }
                }
            }
            let p = (s + Tensor(bias, shape: [rows, keys])).softmax(dim: -1)
            let o = p.matmul(vh).scalars
            for r in 0..<rows { for e in 0..<d { out[(r * heads + h) * d + e] = o[r * d + e] } }
        }
        return out
    }

    func testCoreMatchesTheComposedDefinition() {
        var rng = TestRNG(11)
        let cases: [(rows: Int, start: Int, heads: Int, kvHeads: Int, d: Int, mask: AttentionMask)] = [
            (1, 9, 4, 2, 8, .causal),
            (5, 0, 6, 1, 12, .causal),
            (7, 3, 4, 4, 6, AttentionMask(causal: true, window: 3)),
            (4, 2, 8, 2, 10, AttentionMask(causal: true, softcap: 0.7)),
            (6, 0, 3, 3, 14, .full),
            (6, 0, 4, 2, 16, AttentionMask(causal: false, keyValid: [true, true, false, true, false, false], softcap: 2)),
        ]
        for c in cases {
            let keys = c.start + c.rows
            let q = rng.floats(c.rows * c.heads * c.d, -2, 2), k = rng.floats(keys * c.kvHeads * c.d, -2, 2), v = rng.floats(keys * c.kvHeads * c.d)
            var out = [Float](repeating: .nan, count: q.count)
            q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in out.withUnsafeMutableBufferPointer { op in
                AttentionCore.attend(q: qp.baseAddress!, qLayout: .init(rowStride: c.heads * c.d, headStride: c.d), rows: c.rows, heads: c.heads,
                                     keys: kp.baseAddress!, values: vp.baseAddress!, kvLayout: .init(rowStride: c.kvHeads * c.d, headStride: c.d),
                                     kvHeads: c.kvHeads, keyCount: keys, headDim: c.d, start: c.start, scale: 0.3, mask: c.mask,
                                     out: op.baseAddress!, outLayout: .init(rowStride: c.heads * c.d, headStride: c.d))
            } } } }
            let expected = composed(q: q, k: k, v: v, rows: c.rows, keys: keys, heads: c.heads, kvHeads: c.kvHeads, d: c.d, start: c.start,
                                    scale: 0.3, mask: c.mask)
            XCTAssertLessThan(zip(out, expected).map { abs($0 - $1) }.max()!, 1e-5, "\(c)")
        }
    }
}
