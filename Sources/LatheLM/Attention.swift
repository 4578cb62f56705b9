import CLatheKernels
import Foundation

/// Grouped-query attention of new positions over a layer's cached keys and values: each of
/// `heads` query heads reads kv head `h / (heads / kvHeads)`. The scores are formed one head
/// at a time (`[rows, positions]`), never as a `[heads, rows, positions]` block.
enum CachedAttention {
    /// - Parameters:
    ///   - q: `[rows, heads * headDim]`, already rotated.
    ///   - out: `[rows, heads * headDim]`.
    ///   - start: the position of the first new row; keys `0..<start + rows` are in the cache.
    ///   - window: attend to at most this many positions ending at the query's own.
    static func run(q: UnsafePointer<Float>, rows: Int, heads: Int, cache: KVCache, layer: Int, start: Int, scale: Float,
                    window: Int?, out: UnsafeMutablePointer<Float>) {
        let d = cache.headDim, total = start + rows, group = heads / cache.kvHeads
        var scores = [Float](repeating: 0, count: rows * total)
        cache.keys[layer].withUnsafeBufferPointer { kp in
            cache.values[layer].withUnsafeBufferPointer { vp in
                scores.withUnsafeMutableBufferPointer { sp in
                    let s = sp.baseAddress!
                    for h in 0..<heads {
                        let g = h / group
                        let k = kp.baseAddress! + g * cache.capacity * d, v = vp.baseAddress! + g * cache.capacity * d
                        // scores = scale * Q_h K_g^T: [rows, total]
                        lathe_sgemm(0, 1, rows, total, d, scale, q + h * d, heads * d, k, d, 0, s, total)
                        for r in 0..<rows {
                            let row = s + r * total
                            let last = start + r  // causal: positions 0...last
                            let first = window.map { Swift.max(0, last + 1 - $0) } ?? 0
                            var top = -Float.infinity
                            for j in first...last where row[j] > top { top = row[j] }
                            var sum: Float = 0
                            for j in 0..<total {
                                if j < first || j > last { row[j] = 0; continue }
                                let e = expf(row[j] - top)
                                row[j] = e
                                sum += e
                            }
                            let inv = 1 / sum
                            for j in first...last { row[j] *= inv }
                        }
                        // out_h = P V_g: [rows, d]
                        lathe_sgemm(0, 0, rows, d, total, 1, s, total, v, d, 0, out + h * d, heads * d)
                    }
                }
            }
        }
    }
}
