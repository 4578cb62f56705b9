import CLatheKernels
import Foundation

/// Which keys each query may attend to, and how its scores are shaped.
public struct AttentionMask: Sendable, Equatable {
    /// Query `r` (at position `start + r`) sees keys at positions `0...start + r` only (decoders);
    /// false: every key (encoders).
    public var causal: Bool
    /// With `causal`, at most this many positions ending at the query's own (sliding window).
    public var window: Int?
    /// Per key position, whether it is a real token (false: padding, never attended to).
    public var keyValid: [Bool]?
    /// Scores become `cap * tanh(score / cap)` before the softmax (Gemma 2's attention soft-capping).
    public var softcap: Float?

    public init(causal: Bool, window: Int? = nil, keyValid: [Bool]? = nil, softcap: Float? = nil) {
        (self.causal, self.window, self.keyValid, self.softcap) = (causal, window, keyValid, softcap)
    }

    public static let causal = AttentionMask(causal: true)
    public static let full = AttentionMask(causal: false)
}

/// Scaled dot-product attention of `rows` queries over `keyCount` keys and values, with grouped
/// heads (query head `h` reads key/value head `h / (heads / kvHeads)`), any head dimension, and an
/// ``AttentionMask``. The scores are formed one head at a time (`[rows, keyCount]`), never as a
/// `[heads, rows, keys]` block; a row whose keys are all masked out gives zeros.
///
/// Layouts are given by strides, so that the same core reads a KV cache (`[kvHeads, capacity,
/// headDim]`) and the packed projections of an encoder (`[tokens, heads * headDim]`).
public enum AttentionCore {
    public struct Layout: Sendable {
        /// Floats between consecutive positions, and between consecutive heads.
        public var rowStride: Int, headStride: Int
        public init(rowStride: Int, headStride: Int) { (self.rowStride, self.headStride) = (rowStride, headStride) }
    }

    /// - Parameters:
    ///   - q: queries, row `r` head `h` at `q + r * qLayout.rowStride + h * qLayout.headStride`.
    ///   - start: the position of the first query (keys are at positions `0..<keyCount`).
    ///   - out: written like `q`, with `outLayout`.
    public static func attend(q: UnsafePointer<Float>, qLayout: Layout, rows: Int, heads: Int,
                              keys: UnsafePointer<Float>, values: UnsafePointer<Float>, kvLayout: Layout, kvHeads: Int, keyCount: Int,
                              headDim d: Int, start: Int, scale: Float, mask: AttentionMask,
                              out: UnsafeMutablePointer<Float>, outLayout: Layout) {
        precondition(heads % kvHeads == 0, "AttentionCore: \(heads) query heads are not a multiple of \(kvHeads) kv heads")
        precondition(mask.keyValid == nil || mask.keyValid!.count >= keyCount, "AttentionCore: the padding mask has too few keys")
        guard rows > 0 else { return }
        let group = heads / kvHeads, total = keyCount
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(rows * total, 1))
        defer { scores.deallocate() }
        for h in 0..<heads {
            let g = h / group
            let k = keys + g * kvLayout.headStride, v = values + g * kvLayout.headStride
            // scores = scale * Q_h K_g^T: [rows, total]
            lathe_sgemm(0, 1, rows, total, d, scale, q + h * qLayout.headStride, qLayout.rowStride, k, kvLayout.rowStride, 0, scores, total)
            for r in 0..<rows {
                let row = scores + r * total
                var first = 0, last = total - 1
                if mask.causal {
                    last = Swift.min(total - 1, start + r)
                    if let w = mask.window { first = Swift.max(0, start + r + 1 - w) }
                }
                if let cap = mask.softcap {
                    for j in first...Swift.max(first, last) where j <= last { row[j] = cap * tanhf(row[j] / cap) }
                }
                var top = -Float.infinity
                if first <= last {
                    for j in first...last where mask.keyValid?[j] ?? true { top = Swift.max(top, row[j]) }
                }
                var sum: Float = 0
                for j in 0..<total {
                    guard j >= first, j <= last, mask.keyValid?[j] ?? true, top > -.infinity else { row[j] = 0; continue }
                    let e = expf(row[j] - top)
                    row[j] = e
                    sum += e
                }
                if sum > 0 {
                    let inv = 1 / sum
                    for j in first...last { row[j] *= inv }
                }
            }
            // out_h = P V_g: [rows, d]
            lathe_sgemm(0, 0, rows, d, total, 1, scores, total, v, kvLayout.rowStride, 0, out + h * outLayout.headStride, outLayout.rowStride)
        }
    }
}

/// Grouped-query attention of new positions over a layer's cached keys and values.
enum CachedAttention {
    /// - Parameters:
    ///   - q: `[rows, heads * headDim]`, already rotated.
    ///   - out: `[rows, heads * headDim]`.
    ///   - start: the position of the first new row; keys `0..<start + rows` are in the cache.
    ///   - window: attend to at most this many positions ending at the query's own.
    ///   - softcap: Gemma 2's attention logit soft-capping.
    static func run(q: UnsafePointer<Float>, rows: Int, heads: Int, cache: KVCache, layer: Int, start: Int, scale: Float,
                    window: Int?, softcap: Float? = nil, out: UnsafeMutablePointer<Float>) {
        let d = cache.headDim
        let layout = AttentionCore.Layout(rowStride: heads * d, headStride: d)
        cache.keys[layer].withUnsafeBufferPointer { kp in
            cache.values[layer].withUnsafeBufferPointer { vp in
                AttentionCore.attend(q: q, qLayout: layout, rows: rows, heads: heads, keys: kp.baseAddress!, values: vp.baseAddress!,
                                     kvLayout: .init(rowStride: d, headStride: cache.capacity * d), kvHeads: cache.kvHeads,
                                     keyCount: start + rows, headDim: d, start: start, scale: scale,
                                     mask: AttentionMask(causal: true, window: window, softcap: softcap), out: out, outLayout: layout)
            }
        }
    }
}
