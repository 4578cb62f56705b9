import LatheNN
import LatheTensor

/// An N:M sparsity mask (2:4 by default, as sparse tensor cores use; Mishra et al. 2021,
/// https://arxiv.org/abs/2104.08378): in every group of `m` consecutive weights along the
/// input dimension, the `n` largest magnitudes are kept (ties: lower index).
///
/// The weight is viewed as `[out, K]` with `K` the GEMM reduction length: `in` for a
/// ``Linear`` `[out, in]`, `in * kh * kw` for a ``Conv2d`` `[out, in, kh, kw]` (the layout
/// Lathe's im2col GEMM reads). `K` must be a multiple of `m`.
public func nmSparsityMask(_ weight: Tensor, n: Int = 2, m: Int = 4) -> Tensor {
    precondition(n >= 0 && n <= m && m > 0, "nmSparsityMask: need 0 <= n <= m, got \(n):\(m)")
    precondition(weight.rank >= 2, "nmSparsityMask: weight must be [out, in, ...], got \(weight.shape)")
    let k = weight.count / weight.shape[0]
    precondition(k % m == 0, "nmSparsityMask: the input length \(k) of \(weight.shape) is not a multiple of \(m)")
    let w = weight.detached().abs().scalars
    var mask = [Float](repeating: 0, count: w.count)
    for start in stride(from: 0, to: w.count, by: m) {
        let order = (start..<(start + m)).sorted { w[$0] != w[$1] ? w[$0] > w[$1] : $0 < $1 }
        for i in order.prefix(n) { mask[i] = 1 }
    }
    return Tensor(mask, shape: weight.shape)
}

/// Whether every group of `m` consecutive entries along the input dimension (as in
/// ``nmSparsityMask(_:n:m:)``) has at most `n` nonzeros.
public func isNMSparse(_ weight: Tensor, n: Int, m: Int) -> Bool {
    guard weight.rank >= 2, weight.count > 0, (weight.count / weight.shape[0]) % m == 0 else { return false }
    let w = weight.detached().scalars
    for start in stride(from: 0, to: w.count, by: m) where w[start..<(start + m)].filter({ $0 != 0 }).count > n {
        return false
    }
    return true
}

/// Whether `weight` is 2:4 sparse: at most 2 nonzeros in every 4 consecutive inputs.
public func is2to4Sparse(_ weight: Tensor) -> Bool { isNMSparse(weight, n: 2, m: 4) }

/// N:M masks for the chosen parameters (default: the prunable weights whose input length is
/// a multiple of `m`; others, such as a first conv with `1 * 3 * 3` inputs, are skipped).
public func semiStructuredMasks(_ model: Module, parameters: [String]? = nil, n: Int = 2, m: Int = 4) -> PruningMasks {
    let byName = Dictionary(uniqueKeysWithValues: model.namedParameters)
    let names = parameters ?? prunableParameters(model).filter { name in
        let w = byName[name]!.value
        return (w.count / w.shape[0]) % m == 0
    }
    var out: [String: Tensor] = [:]
    for name in names {
        guard let p = byName[name] else { preconditionFailure("semiStructuredMasks: the model has no parameter \(name)") }
        out[name] = nmSparsityMask(p.value, n: n, m: m)
    }
    return PruningMasks(out)
}
