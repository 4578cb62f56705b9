import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What happened to one tensor when a file was written.
public struct GGUFWrittenTensor: Sendable, Equatable {
    public var name: String
    /// GGML order.
    public var dimensions: [Int]
    /// The type it had (F32 for a Hugging Face tensor) and the type written.
    public var from: GGMLType
    public var to: GGMLType
    /// Bytes written (without padding).
    public var byteCount: Int
    /// True when the bytes were copied as they were (the type did not change).
    public var copied: Bool

    public init(name: String, dimensions: [Int], from: GGMLType, to: GGMLType, byteCount: Int, copied: Bool) {
        (self.name, self.dimensions, self.from, self.to, self.byteCount, self.copied) = (name, dimensions, from, to, byteCount, copied)
    }

    /// "Q4_K 27, Q8_0 10, ...": how many of `tensors` were written in each type, most first.
    public static func typeCounts(_ tensors: [GGUFWrittenTensor]) -> String {
        var counts: [String: Int] = [:]
        for t in tensors { counts[t.to.name, default: 0] += 1 }
        return counts.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.map { "\($0.key) \($0.value)" }
            .joined(separator: ", ")
    }
}

/// A tensor written in place of the source's by
/// ``GGUFFile/requantize(to:rules:replacing:progress:)`` (calibrated quantization, folded scales).
public enum GGUFTensorReplacement: Sendable, Equatable {
    /// Float values (the tensor's element count, GGML order), converted to the type the rules
    /// choose for the tensor.
    case values([Float])
    /// Blocks of `type`, written as they are (the tensor then has that type).
    case blocks(GGMLType, [UInt8])
}

extension GGUFFile {
    /// Writes this file's model to `url` with its tensors converted as `rules` say
    /// (llama-quantize's choices, see ``GGUFTypeRules``): the metadata is copied (tokenizer, chat
    /// template, hyper-parameters and any other key) with `general.file_type` set to the new
    /// type, `general.quantization_version` to 2 and `split.*` left out; tensors keep their order
    /// and names. A tensor whose type does not change is copied byte for byte; the others are
    /// dequantised to float32 (ggml's `dequantize_row_*`) and quantised again (ggml's reference
    /// encoders), 4 Mi values at a time. Peak memory: the largest tensor's new bytes, 16 MiB of
    /// float32, and the pages of the mapped source being read.
    ///
    /// Throws ``GGUFError/unwritable(path:reason:)`` when `url` is this file, or when a tensor
    /// must change type but its type cannot be dequantised (IQ types); `progress` is called after
    /// each tensor. Returns what was written, tensor by tensor.
    ///
    /// `replacing` gives some tensors (by GGUF name) new contents instead of the source's
    /// (see ``GGUFTensorReplacement``); a name the file lacks, a wrong value count or a wrong
    /// block size is an ``GGUFError/unwritable(path:reason:)`` error before anything is written.
    @discardableResult
    public func requantize(to url: URL, rules: GGUFTypeRules, replacing: [String: GGUFTensorReplacement] = [:],
                           progress: ((GGUFWrittenTensor) -> Void)? = nil) throws -> [GGUFWrittenTensor] {
        try requantize(to: url, rules: rules, slabElements: GGUFFile.slabElements, replacing: replacing, progress: progress)
    }

    /// ``requantize(to:rules:replacing:progress:)`` converting `slabElements` values at a time (tests).
    package func requantize(to url: URL, rules: GGUFTypeRules, slabElements: Int, replacing: [String: GGUFTensorReplacement] = [:],
                            progress: ((GGUFWrittenTensor) -> Void)? = nil) throws -> [GGUFWrittenTensor] {
        if GGUFFile.sameFile(url.path, path) {
            throw GGUFError.unwritable(path: url.path, reason: "the output is the input file; write to another path")
        }
        let arch = try string("general.architecture")
        let layers: Int? = try arch.map { try int("\($0).block_count") } ?? nil
        var targets = try rules.types(for: tensors.map { GGUFTypeRules.Tensor(name: $0.name, dimensions: $0.dimensions, type: $0.type) },
                                      layers: layers)
        let names = Set(tensors.map(\.name))
        for name in replacing.keys.sorted() where !names.contains(name) {
            throw GGUFError.unwritable(path: url.path, reason: "a replacement names tensor '\(name)', which the file does not have")
        }
        for (i, t) in tensors.enumerated() {
            switch replacing[t.name] {
            case .values(let v)?:
                guard v.count == t.elementCount else {
                    throw GGUFError.unwritable(path: url.path, reason: "the replacement of '\(t.name)' has \(v.count) values, the tensor \(t.elementCount)")
                }
                guard targets[i] == .f32 || targets[i].isQuantizable, t.dimensions[0] % targets[i].blockSize == 0 else {
                    throw GGUFError.unwritable(path: url.path, reason: "the replacement of '\(t.name)' cannot be written as \(targets[i].name)")
                }
            case .blocks(let type, let bytes)?:
                guard t.dimensions[0] % type.blockSize == 0, bytes.count == type.byteCount(elementCount: t.elementCount) else {
                    throw GGUFError.unwritable(path: url.path, reason: "the replacement of '\(t.name)' has \(bytes.count) bytes, not \(t.elementCount) elements of \(type.name)")
                }
                targets[i] = type
            case nil: break
            }
        }
        for (t, target) in zip(tensors, targets) where t.type != target && !t.type.isDequantizable && replacing[t.name] == nil {
            throw GGUFError.unwritable(path: url.path, reason: "tensor '\(t.name)' is \(t.type.name), which Lathe cannot dequantise to convert it to \(target.name)")
        }
        var metadata = self.metadata.filter { !$0.key.hasPrefix("split.") }
        GGUFFile.set(&metadata, "general.file_type", .uint32(rules.fileType.id))
        GGUFFile.set(&metadata, "general.quantization_version", .uint32(2))
        let descriptors = zip(tensors, targets).map { GGUFTensorDescriptor(name: $0.name, dimensions: $0.dimensions, type: $1) }
        var written: [GGUFWrittenTensor] = []
        var floats: [Float] = []
        try GGUFWriter.write(to: url, metadata: metadata, tensors: descriptors) { i, buffer in
            let info = tensors[i], target = targets[i]
            let source = try tensorData(named: info.name)
            if let replacement = replacing[info.name] {
                switch replacement {
                case .values(let v):
                    v.withUnsafeBufferPointer { target.quantize($0, rowLength: info.dimensions[0], into: buffer) }
                case .blocks(_, let bytes):
                    bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
                }
            } else if info.type == target {
                buffer.copyMemory(from: source)
            } else {
                // A slab of rows at a time (blocks never cross rows), so that the float32 copy
                // stays small whatever the tensor's size.
                let rowLength = info.dimensions[0], rows = info.elementCount / rowLength
                let slab = max(1, slabElements / rowLength)
                let sourceRow = info.byteCount / rows, targetRow = buffer.count / rows
                if floats.count < min(rows, slab) * rowLength { floats = [Float](repeating: 0, count: min(rows, slab) * rowLength) }
                withExtendedLifetime(self) {
                    floats.withUnsafeMutableBufferPointer { f in
                        for r0 in stride(from: 0, to: rows, by: slab) {
                            let n = min(slab, rows - r0)
                            let values = UnsafeMutableBufferPointer(rebasing: f[0..<n * rowLength])
                            info.type.dequantize(UnsafeRawBufferPointer(rebasing: source[r0 * sourceRow..<(r0 + n) * sourceRow]),
                                                 count: n * rowLength, into: values)
                            target.quantize(UnsafeBufferPointer(values), rowLength: rowLength,
                                            into: UnsafeMutableRawBufferPointer(rebasing: buffer[r0 * targetRow..<(r0 + n) * targetRow]))
                        }
                    }
                }
            }
            let record = GGUFWrittenTensor(name: info.name, dimensions: info.dimensions, from: info.type, to: target,
                                           byteCount: buffer.count, copied: info.type == target && replacing[info.name] == nil)
            written.append(record)
            progress?(record)
        }
        return written
    }

    /// Values converted at a time by ``requantize(to:rules:progress:)`` (4 Mi floats, 16 MiB).
    static let slabElements = 1 << 22

    /// Replaces the value of `key` where it is, or appends it.
    static func set(_ metadata: inout [GGUFKeyValue], _ key: String, _ value: GGUFValue) {
        if let i = metadata.firstIndex(where: { $0.key == key }) {
            metadata[i] = GGUFKeyValue(key: key, value: value)
        } else {
            metadata.append(GGUFKeyValue(key: key, value: value))
        }
    }

    /// Whether two paths name the same file (the same device and inode, or the same standardised
    /// path when the first does not exist yet).
    public static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        if stat(a, &sa) == 0, stat(b, &sb) == 0 { return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino }
        return URL(fileURLWithPath: a).standardizedFileURL.resolvingSymlinksInPath().path
            == URL(fileURLWithPath: b).standardizedFileURL.resolvingSymlinksInPath().path
    }
}
