import Foundation
import LatheTensor

extension SafeTensors {
    /// One tensor of a file written by ``write(streaming:metadata:to:produce:)``.
    public struct StreamedEntry: Sendable, Equatable {
        public var name: String
        public var shape: [Int]
        public var dtype: DType

        public init(name: String, shape: [Int], dtype: DType) {
            (self.name, self.shape, self.dtype) = (name, shape, dtype)
        }

        public var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }
    }

    /// Writes a safetensors file whose tensors are produced one at a time, in `entries`' order:
    /// the header (offsets from the shapes) first, then `produce(i)` for each entry, whose bytes
    /// are written (converted to the entry's dtype) before the next is asked for. Peak memory is
    /// one tensor, not the file. The data order is `entries`' order (the reference writer sorts
    /// by dtype then name; readers do not care). Written through ``AtomicFile``.
    public static func write(streaming entries: [StreamedEntry], metadata: [String: String] = [:], to url: URL,
                             produce: (Int) throws -> Tensor) throws {
        let path = url.path
        var seen = Set<String>()
        for e in entries {
            guard e.name != "__metadata__" else {
                throw SafeTensorsError.invalidInput(path: path, reason: "a tensor cannot be called \"__metadata__\" (the name is reserved)")
            }
            guard seen.insert(e.name).inserted else { throw SafeTensorsError.invalidInput(path: path, reason: "tensor \(e.name) is listed twice") }
        }
        let header = try encodeHeader(entries: entries, metadata: metadata, path: path)
        do {
            try AtomicFile.write(to: url) { handle in
                var length = UInt64(header.count).littleEndian
                try handle.write(contentsOf: Data(bytes: &length, count: 8))
                try handle.write(contentsOf: header)
                for (i, e) in entries.enumerated() {
                    var t = try produce(i)
                    guard t.shape == e.shape else {
                        throw SafeTensorsError.invalidInput(path: path, reason: "tensor \(e.name) has shape \(t.shape), its header says \(e.shape)")
                    }
                    if t.dtype != e.dtype { t = t.to(e.dtype) }
                    if t.byteCount > 0 { try t.contiguous().withUnsafeRawBytes { try handle.write(contentsOf: $0) } }
                }
            }
        } catch let error as AtomicFile.WriteError {
            throw SafeTensorsError.writeFailed(path: path, reason: error.reason)
        }
    }
}
