// GGML tensor element types as GGUF files store them (ids of `enum ggml_type` in ggml's
// `include/ggml.h`; block layouts in `src/ggml-common.h`).

/// The element type of a tensor in a GGUF file: a plain number type or a block-quantised format
/// whose blocks of ``blockSize`` elements take ``bytesPerBlock`` bytes each.
///
/// The raw values are ggml's `ggml_type` ids. Every type of ggml's enum is named here so that
/// `lathe inspect` can list any file; ``isDequantizable`` says which ones Lathe converts to
/// float32 (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K ... Q6_K, Q8_K). Ids ggml removed
/// (4, 5, 31-33, 36-38) and ids past the end of the enum are not cases: a file that uses them is
/// rejected when it is opened.
public enum GGMLType: Int32, CaseIterable, Sendable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39, nvfp4 = 40, q1_0 = 41, q2_0 = 42

    /// ggml's name of the type (`"Q4_K"`, `"F32"`, `"IQ4_NL"`, ...).
    public var name: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"
        case .q5_1: "Q5_1"
        case .q8_0: "Q8_0"
        case .q8_1: "Q8_1"
        case .q2_K: "Q2_K"
        case .q3_K: "Q3_K"
        case .q4_K: "Q4_K"
        case .q5_K: "Q5_K"
        case .q6_K: "Q6_K"
        case .q8_K: "Q8_K"
        case .iq2_xxs: "IQ2_XXS"
        case .iq2_xs: "IQ2_XS"
        case .iq3_xxs: "IQ3_XXS"
        case .iq1_s: "IQ1_S"
        case .iq4_nl: "IQ4_NL"
        case .iq3_s: "IQ3_S"
        case .iq2_s: "IQ2_S"
        case .iq4_xs: "IQ4_XS"
        case .i8: "I8"
        case .i16: "I16"
        case .i32: "I32"
        case .i64: "I64"
        case .f64: "F64"
        case .iq1_m: "IQ1_M"
        case .bf16: "BF16"
        case .tq1_0: "TQ1_0"
        case .tq2_0: "TQ2_0"
        case .mxfp4: "MXFP4"
        case .nvfp4: "NVFP4"
        case .q1_0: "Q1_0"
        case .q2_0: "Q2_0"
        }
    }

    public var description: String { name }

    /// Elements per block (1 for the plain number types).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .i8, .i16, .i32, .i64, .f64: 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_nl, .mxfp4: 32
        case .nvfp4, .q2_0: 64
        case .q1_0: 128
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq2_xxs, .iq2_xs, .iq3_xxs, .iq1_s, .iq3_s, .iq2_s,
             .iq4_xs, .iq1_m, .tq1_0, .tq2_0: 256
        }
    }

    /// Bytes per block (`sizeof(block_*)` in `ggml-common.h`; the element size for plain types).
    public var bytesPerBlock: Int {
        switch self {
        case .i8: 1
        case .f16, .bf16, .i16: 2
        case .f32, .i32: 4
        case .i64, .f64: 8
        case .q4_0, .iq4_nl: 18  // d, qs[16]
        case .q4_1: 20  // d, m, qs[16]
        case .q5_0: 22  // d, qh[4], qs[16]
        case .q5_1: 24  // d, m, qh[4], qs[16]
        case .q8_0: 34  // d, qs[32]
        case .q8_1: 36  // d, s, qs[32]
        case .q2_K: 84  // scales[16], qs[64], d, dmin
        case .q3_K: 110  // hmask[32], qs[64], scales[12], d
        case .q4_K: 144  // d, dmin, scales[12], qs[128]
        case .q5_K: 176  // d, dmin, scales[12], qh[32], qs[128]
        case .q6_K: 210  // ql[128], qh[64], scales[16], d
        case .q8_K: 292  // float d, qs[256], bsums[16] (int16)
        case .iq2_xxs: 66
        case .iq2_xs: 74
        case .iq3_xxs: 98
        case .iq1_s: 50
        case .iq3_s: 110
        case .iq2_s: 82
        case .iq4_xs: 136
        case .iq1_m: 56
        case .tq1_0: 54
        case .tq2_0: 66
        case .mxfp4: 17  // e (E8M0), qs[16]
        case .nvfp4: 36  // d[4] (UE4M3), qs[32]
        case .q1_0: 18  // d, qs[16]
        case .q2_0: 18  // d, qs[16]
        }
    }

    /// True for the types Lathe converts to float32 (``GGMLType/dequantize(_:count:into:)``).
    public var isDequantizable: Bool {
        switch self {
        case .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K: true
        default: false
        }
    }

    /// The types ``dequantize(_:count:into:)`` accepts, in ggml's id order.
    public static var dequantizable: [GGMLType] { allCases.filter(\.isDequantizable) }

    /// ggml's name of an id ggml no longer defines (`nil` for any other id).
    static func removedName(_ id: Int32) -> String? {
        switch id {
        case 4: "Q4_2"
        case 5: "Q4_3"
        case 31: "Q4_0_4_4"
        case 32: "Q4_0_4_8"
        case 33: "Q4_0_8_8"
        case 36: "IQ4_NL_4_4"
        case 37: "IQ4_NL_4_8"
        case 38: "IQ4_NL_8_8"
        default: nil
        }
    }

    /// Bytes that `elementCount` elements take, or `nil` if `elementCount` is not a whole number
    /// of blocks or the size overflows `Int`.
    public func byteCount(elementCount: Int) -> Int? {
        guard elementCount >= 0, elementCount % blockSize == 0 else { return nil }
        let (bytes, overflow) = (elementCount / blockSize).multipliedReportingOverflow(by: bytesPerBlock)
        return overflow ? nil : bytes
    }
}
