import CLatheKernels
import LatheNN
import LatheTensor

extension GroupwiseWeights {
    /// Rows of W dequantised at a time by ``inputGradient(_:rows:into:)``: about 256 Ki floats
    /// (1 MiB) per panel, a multiple of 16 rows.
    public func gradientPanelRows() -> Int {
        Swift.max(16, Swift.min(rows, ((1 << 18) / Swift.max(cols, 1)) / 16 * 16))
    }

    /// The gradient of `x W^T` with respect to `x`: `dX [M, K] = dY [M, N] · W [N, K]`, with W
    /// dequantised a panel of rows at a time (``gradientPanelRows()``) and each panel's product
    /// accumulated by the fp32 GEMM, `dX += dY[:, n0..<n1] · W[n0..<n1, :]`, so memory stays at
    /// one panel whatever the size of W. The dequantised values are those of the forward
    /// (`lathe_wq_dequantize`), so the gradient is that of the float layer with `dequant(W)`, up
    /// to float summation order.
    /// - Parameters:
    ///   - dy: `[rows, self.rows]` row-major.
    ///   - rows: M, the number of input rows.
    ///   - panelRows: rows per panel (default ``gradientPanelRows()``; tests use small panels).
    ///   - dx: `[rows, cols]` row-major, overwritten.
    public func inputGradient(_ dy: UnsafePointer<Float>, rows m: Int, panelRows: Int? = nil, into dx: UnsafeMutablePointer<Float>) {
        let (n, k) = (rows, cols)
        guard m > 0, k > 0 else { return }
        guard n > 0 else { dx.initialize(repeating: 0, count: m * k); return }
        let p = Swift.max(1, panelRows ?? gradientPanelRows())
        let panel = UnsafeMutablePointer<Float>.allocate(capacity: Swift.min(p, n) * k)
        defer { panel.deallocate() }
        withMatrix { mat in
            for n0 in stride(from: 0, to: n, by: p) {
                let n1 = Swift.min(n, n0 + p)
                lathe_wq_dequantize(mat, n, k, n0, n1, panel, k)
                lathe_sgemm(0, 0, m, k, n1 - n0, 1, dy + n0, n, panel, k, n0 == 0 ? 0 : 1, dx, k)
            }
        }
    }
}

/// A weight-only quantized layer is a frozen linear layer an adapter can wrap (QLoRA, Dettmers et
/// al. 2023, https://arxiv.org/abs/2305.14314): its forward records the input gradient, so
/// adapters in earlier layers train through it.
extension WeightOnlyLinear: LinearLayer {
    /// The dequantised weight `[out, in]` (a float copy of the whole matrix: DoRA's row norms
    /// need it; the forward and backward never do).
    public var denseWeight: Tensor { Tensor(weight.dequantized(), shape: [outFeatures, inFeatures]) }
    public var denseBias: Tensor? { bias.map { Tensor($0) } }
}
