import CLatheKernels

/// What the C kernels chose on this machine.
public enum KernelInfo {
    /// The instruction set in use ("avx512", "avx2", "neon" or "scalar").
    public static var isaName: String { String(cString: lathe_isa_name(lathe_active_isa())) }

    /// Forces the kernels to an instruction set no better than the CPU has; returns false if
    /// the CPU lacks it.
    @discardableResult
    public static func useISA(_ name: String) -> Bool {
        let table = ["scalar": LATHE_ISA_SCALAR, "avx2": LATHE_ISA_AVX2, "avx512": LATHE_ISA_AVX512, "neon": LATHE_ISA_NEON]
        guard let isa = table[name] else { return false }
        return lathe_set_isa(isa) == 0
    }

    /// `C = A · B` for row-major float32 buffers through the C GEMM (for benchmarks):
    /// A is [m, k] (or [k, m] when `transA`), B is [k, n] (or [n, k] when `transB`).
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                             a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>) {
        lathe_sgemm(transA ? 1 : 0, transB ? 1 : 0, m, n, k, 1, a, transA ? m : k, b, transB ? k : n, 0, c, n)
    }
}
