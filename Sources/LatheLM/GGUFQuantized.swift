import Foundation
import LatheCompress
import LatheIO
import LatheNN
import LatheTensor

/// GGUF blocks that Lathe's group-wise weights hold without loss, so that a layer keeps its
/// quantized weights at run time (``WeightOnlyLinear``: integer dot products with 8-bit
/// activations for a few tokens, dequantised panels and the fp32 GEMM for many):
/// - Q8_0 (`w = d q`, q int8, 32 per block) is symmetric int8 with group size 32;
/// - Q4_0 (`w = d (u - 8)`) is symmetric int4 (`fmaf(u, s, -8 s)`, the same float);
/// - Q4_1 (`w = d u + m`) is asymmetric int4 (`fmaf(u, s, m)`);
/// - Q5_0 (`w = d (u - 16)`, u 5 bits) is symmetric int8 with q = u - 16 (a byte per weight
///   instead of 5 bits: lossless, but 45% more to read than the file's blocks);
/// - Q4_K (256-element blocks of eight 32-element groups, `w = d sc u - dmin m`) is asymmetric
///   int4 with float32 scales `d sc` and mins `-dmin m` (exact in float32, not in fp16);
/// - Q5_K likewise with 5-bit codes, held as asymmetric int8;
/// - Q6_K (sixteen 16-element groups, `w = d sc (q6 - 32)`) is symmetric int8 with group size 16
///   and float32 scales.
/// Only the order of the nibbles differs for int4: a GGUF block stores element `j` in the low
/// nibble of byte `j` and element `j + 16` in its high nibble (Q4_K: `j` and `j + 32` of a
/// 64-element chunk); Lathe stores elements `2j` and `2j + 1` in byte `j`.
public enum GGUFGroupwise {
    /// Whether tensors of `type` convert to ``GroupwiseWeights`` losslessly.
    public static func supports(_ type: GGMLType) -> Bool { [.q8_0, .q4_0, .q4_1, .q5_0, .q4_K, .q5_K, .q6_K].contains(type) }

    /// The weights of a 2-D tensor of a supported type (`shape` `[rows, cols]`, cols a multiple of
    /// the type's block size).
    public static func weights(_ info: GGUFTensorInfo, bytes: UnsafeRawBufferPointer) -> GroupwiseWeights? {
        guard supports(info.type), info.shape.count == 2, info.shape[1] % info.type.blockSize == 0 else { return nil }
        let rows = info.shape[0], cols = info.shape[1]
        guard rows > 0, cols > 0, bytes.count == rows * (cols / info.type.blockSize) * info.type.bytesPerBlock else { return nil }
        switch info.type {
        case .q4_K, .q5_K, .q6_K: return kQuant(info.type, rows: rows, cols: cols, bytes: bytes)
        default: return legacy(info.type, rows: rows, cols: cols, bytes: bytes)
        }
    }

    private static func legacy(_ type: GGMLType, rows: Int, cols: Int, bytes: UnsafeRawBufferPointer) -> GroupwiseWeights {
        let blocks = cols / 32, blockBytes = type.bytesPerBlock
        let bits = type == .q8_0 || type == .q5_0 ? 8 : 4
        let rowBytes = bits == 8 ? cols : cols / 2
        var codes = [UInt8](repeating: 0, count: rows * rowBytes)
        var scales = [UInt16](repeating: 0, count: rows * blocks)
        var mins = [UInt16](repeating: 0, count: type == .q4_1 ? rows * blocks : 0)
        let bytes = UnsafeBufferPointer(start: bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), count: bytes.count)
        codes.withUnsafeMutableBufferPointer { c in
            for r in 0..<rows {
                for b in 0..<blocks {
                    let block = (r * blocks + b) * blockBytes
                    scales[r * blocks + b] = UInt16(bytes[block]) | UInt16(bytes[block + 1]) << 8
                    var q = block + 2
                    if type == .q4_1 {
                        mins[r * blocks + b] = UInt16(bytes[block + 2]) | UInt16(bytes[block + 3]) << 8
                        q += 2
                    }
                    if type == .q5_0 {
                        // qh: bit e is the fifth bit of element e; qs: nibbles as in Q4_0.
                        let qh = (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[q + $1]) << (8 * UInt32($1)) }
                        for e in 0..<32 {
                            let low = (bytes[q + 4 + e % 16] >> (e < 16 ? 0 : 4)) & 0xF
                            let u = Int(low) | Int((qh >> UInt32(e)) & 1) << 4
                            c[r * rowBytes + b * 32 + e] = UInt8(bitPattern: Int8(u - 16))
                        }
                    } else if bits == 8 {
                        (c.baseAddress! + r * rowBytes + b * 32).update(from: bytes.baseAddress! + q, count: 32)
                    } else {
                        // Element e of the block: byte e % 16, low nibble for e < 16.
                        let out = r * rowBytes + b * 16
                        for j in 0..<16 {
                            let e0 = 2 * j, e1 = 2 * j + 1
                            let lo = (bytes[q + e0 % 16] >> (e0 < 16 ? 0 : 4)) & 0xF
                            let hi = (bytes[q + e1 % 16] >> (e1 < 16 ? 0 : 4)) & 0xF
                            c[out + j] = lo | hi << 4
                        }
                    }
                }
            }
        }
        return GroupwiseWeights(scheme: GroupwiseScheme(bits: bits, groupSize: 32, symmetric: type != .q4_1), rows: rows, cols: cols,
                                codes: codes, scales: scales, mins: mins)
    }

    private static func kQuant(_ type: GGMLType, rows: Int, cols: Int, bytes: UnsafeRawBufferPointer) -> GroupwiseWeights {
        let group = type == .q6_K ? 16 : 32, groups = cols / group, blocks = cols / 256
        let bits = type == .q4_K ? 4 : 8
        var codes = [UInt8](repeating: 0, count: rows * (bits == 4 ? cols / 2 : cols))
        var scales = [Float](repeating: 0, count: rows * groups)
        var mins = [Float](repeating: 0, count: type == .q6_K ? 0 : rows * groups)
        var row = [UInt8](repeating: 0, count: cols), rowMins = [Float](repeating: 0, count: groups)
        codes.withUnsafeMutableBufferPointer { c in
            scales.withUnsafeMutableBufferPointer { s in
                for r in 0..<rows {
                    row.withUnsafeMutableBufferPointer { u in
                        rowMins.withUnsafeMutableBufferPointer { m in
                            decodeKQuantGroups(type, bytes.baseAddress! + r * blocks * type.bytesPerBlock, blocks: blocks, codes: u.baseAddress!,
                                               scales: s.baseAddress! + r * groups, mins: m.baseAddress!)
                        }
                    }
                    if type != .q6_K { for g in 0..<groups { mins[r * groups + g] = rowMins[g] } }
                    if bits == 4 {
                        for j in 0..<cols / 2 { c[r * cols / 2 + j] = row[2 * j] | row[2 * j + 1] << 4 }
                    } else {
                        for k in 0..<cols { c[r * cols + k] = row[k] }
                    }
                }
            }
        }
        return GroupwiseWeights(scheme: GroupwiseScheme(bits: bits, groupSize: group, symmetric: type == .q6_K), rows: rows, cols: cols,
                                codes: codes, float32Scales: scales, float32Mins: mins)
    }
}

/// A GGUF model's tensors under Hugging Face's names, read one at a time: float tensors
/// dequantised on request, and matrices of the ``GGUFGroupwise`` types as quantized layers.
struct GGUFTensorSource: TensorSource {
    let file: GGUFFile
    /// Hugging Face name to GGUF name.
    let names: [String: String]
    /// Keep supported matrices quantized (false: everything as float32).
    let quantized: Bool

    init(_ file: GGUFFile, gemma: Bool, quantized: Bool) throws {
        var names: [String: String] = [:]
        for info in file.tensors {
            guard let hf = DecoderModel.huggingFaceName(info.name, gemma: gemma) else {
                throw ModelFileError(file: file.path, message: "tensor \(info.name) has no place in this model")
            }
            names[hf] = info.name
        }
        (self.file, self.names, self.quantized) = (file, names, quantized)
    }

    var tensorNames: [String] { Array(names.keys) }
    func shape(of name: String) -> [Int]? { names[name].flatMap { file.tensorInfo(named: $0)?.shape } }
    func float32Tensor(named name: String) throws -> Tensor {
        guard let g = names[name] else { throw ModelFileError(file: file.path, message: "missing tensor \(name)") }
        return try file.tensor(named: g)
    }

    /// The matrix `name` as a quantized linear layer, when its type allows.
    func quantizedLinear(named name: String) throws -> WeightOnlyLinear? {
        guard quantized, let g = names[name], let info = file.tensorInfo(named: g), GGUFGroupwise.supports(info.type) else { return nil }
        return try file.withTensorData(named: g) { bytes in
            GGUFGroupwise.weights(info, bytes: bytes).map { WeightOnlyLinear(weight: $0, bias: nil) }
        }
    }
}
