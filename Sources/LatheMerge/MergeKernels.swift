import Foundation
import LatheTensor

/// The per-tensor math of each method, over float32 buffers of `n` elements, with mergekit's
/// formulas (mergekit/merge_methods/*.py). Inputs may be overwritten (task vectors are formed
/// in place); the result goes to `out`. Elementwise loops run on the thread pool in fixed
/// chunks and reductions are added chunk by chunk in order, so results do not depend on the
/// thread count.
enum MergeKernels {
    static let grain = 1 << 16

    static func parallel(_ n: Int, _ body: (Range<Int>) -> Void) { ThreadPool.forChunks(n, grain: grain, body) }

    /// Σ f(i) over 0..<n in float64, by fixed chunks.
    static func sum(_ n: Int, _ f: (Int) -> Double) -> Double {
        let chunks = (n + grain - 1) / grain
        var partial = [Double](repeating: 0, count: chunks)
        partial.withUnsafeMutableBufferPointer { p in
            let pp = p.baseAddress!
            ThreadPool.forEach(chunks) { c in
                var s: Double = 0
                for i in c * grain..<min(n, (c + 1) * grain) { s += f(i) }
                pp[c] = s
            }
        }
        return partial.reduce(0, +)
    }

    /// `linear`: Σ wᵢθᵢ, divided by Σ wᵢ when `normalize` (weights in float32, as mergekit).
    static func linear(_ x: [UnsafeMutablePointer<Float>], weights: [Double], normalize: Bool, n: Int, out: UnsafeMutablePointer<Float>) {
        let w = weights.map { Float($0) }
        let denominator = w.reduce(Float(0), +)
        parallel(n) { r in
            for i in r {
                var acc: Float = 0
                for k in 0..<x.count { acc += x[k][i] * w[k] }
                out[i] = normalize ? acc / denominator : acc
            }
        }
    }

    /// `slerp` from `v0` (the base, t = 0) to `v1` over the flattened tensors: with unit vectors
    /// (norms ≤ 1e-8 taken as 1), d = clamp(⟨v̂0, v̂1⟩, −1, 1); if |d| > 0.9995 the result is
    /// (1 − t)·v0 + t·v1, else with ω = acos d: sin((1 − t)ω)/sin ω · v0 + sin(tω)/sin ω · v1.
    static func slerp(t: Double, _ v0: UnsafeMutablePointer<Float>, _ v1: UnsafeMutablePointer<Float>, n: Int, out: UnsafeMutablePointer<Float>) {
        let eps = 1e-8, threshold = 0.9995
        var na = sum(n) { Double(v0[$0]) * Double(v0[$0]) }.squareRoot()
        var nb = sum(n) { Double(v1[$0]) * Double(v1[$0]) }.squareRoot()
        if !(na > eps) { na = 1 }
        if !(nb > eps) { nb = 1 }
        let dot = min(1, max(-1, sum(n) { Double(v0[$0]) / na * (Double(v1[$0]) / nb) }))
        let a: Float, b: Float
        let tf = Double(Float(t))
        if abs(dot) > threshold {
            (a, b) = (Float(1 - tf), Float(tf))
        } else {
            let theta = acos(dot), s = sin(theta)
            (a, b) = (Float(sin((1 - tf) * theta) / s), Float(sin(tf * theta) / s))
        }
        parallel(n) { r in for i in r { out[i] = a * v0[i] + b * v1[i] } }
    }

    /// Task arithmetic and its sparsified / sign-consensus relatives (mergekit's
    /// `GeneralizedTaskArithmeticMerge`): δᵢ = θᵢ − θ_base, sparsified, times wᵢ; with TIES
    /// consensus the majority sign is sign(Σδᵢ) (≥ 0 counts as +) and only δᵢ of that sign are
    /// summed, the divisor being Σ wᵢ over them (0 → 1); without it Σδᵢ over Σwᵢ (|Σw| < 1e-8 → 1).
    /// `normalize` divides by the divisor, `lambda` scales; the result is θ_base + that.
    static func taskArithmetic(base: UnsafeMutablePointer<Float>, others x: [UnsafeMutablePointer<Float>], weights: [Double], consensus: Bool,
                               normalize: Bool, lambda: Double, n: Int, out: UnsafeMutablePointer<Float>) {
        let w = weights.map { Float($0) }
        let lam = Float(lambda)
        let divisorAll: Float = { let s = w.reduce(Float(0), +); return abs(s) < 1e-8 ? 1 : s }()
        parallel(n) { r in
            for i in r {
                var mixed: Float = 0
                var divisor = divisorAll
                if consensus {
                    var s: Float = 0
                    for k in 0..<x.count { s += x[k][i] }
                    let majority: Float = s >= 0 ? 1 : -1
                    divisor = 0
                    for k in 0..<x.count {
                        let d = x[k][i]
                        let sign: Float = d > 0 ? 1 : (d < 0 ? -1 : 0)
                        if sign == majority { mixed += d; divisor += w[k] }
                    }
                    if divisor == 0 { divisor = 1 }
                } else {
                    for k in 0..<x.count { mixed += x[k][i] }
                }
                if normalize { mixed /= divisor }
                if lam != 1 { mixed *= lam }
                out[i] = base[i] + mixed
            }
        }
    }

    /// `model_stock` (Jang et al. 2024): with offsets δᵢ = θᵢ − θ_base of the N non-base models,
    /// c = mean over pairs of clamp(⟨δᵢ, δⱼ⟩ / max(‖δᵢ‖‖δⱼ‖, 1e-6), −1, 1), t = N·c / (1 + (N − 1)·c)
    /// (0 when the denominator is below 1e-6), θ = t·mean(θᵢ) + (1 − t)·θ_base; per row of the
    /// last dimension with `filterWise`, over the whole tensor otherwise.
    static func modelStock(base: UnsafeMutablePointer<Float>, others x: [UnsafeMutablePointer<Float>], n: Int, rowLength: Int,
                           filterWise: Bool, out: UnsafeMutablePointer<Float>) {
        let cols = filterWise ? max(1, rowLength) : n
        let rows = cols == 0 ? 0 : n / cols
        let count = x.count
        func rowMerge(_ row: Int) {
            let o = row * cols
            var cosines: [Float] = []
            for a in 0..<count {
                for b in (a + 1)..<max(a + 1, count) {
                    var dot: Double = 0, na: Double = 0, nb: Double = 0
                    for i in o..<o + cols {
                        let da = Double(x[a][i] - base[i]), db = Double(x[b][i] - base[i])
                        dot += da * db; na += da * da; nb += db * db
                    }
                    let denominator = max(Float(na.squareRoot()) * Float(nb.squareRoot()), 1e-6)
                    cosines.append(min(1, max(-1, Float(dot) / denominator)))
                }
            }
            let c = cosines.reduce(Float(0), +) / Float(cosines.count)
            let denominator = 1 + Float(count - 1) * c
            let t: Float = abs(denominator) < 1e-6 ? 0 : Float(count) * c / denominator
            for i in o..<o + cols {
                var s: Float = 0
                for k in 0..<count { s += x[k][i] }
                out[i] = t * (s / Float(count)) + (1 - t) * base[i]
            }
        }
        if filterWise {
            ThreadPool.forChunks(rows, grain: max(1, grain / cols)) { r in for row in r { rowMerge(row) } }
        } else if rows > 0 {
            rowMerge(0)
        }
    }
}
