import Foundation

/// A tensor of a GGUF file to write: its name, its dimensions in GGML order (`ne[0]`, the
/// contiguous one along which blocks run, first) and its element type.
public struct GGUFTensorDescriptor: Sendable, Equatable {
    public var name: String
    /// GGML order: a PyTorch weight `[out, in]` is `[in, out]`.
    public var dimensions: [Int]
    public var type: GGMLType

    public init(name: String, dimensions: [Int], type: GGMLType) {
        (self.name, self.dimensions, self.type) = (name, dimensions, type)
    }

    /// A tensor of PyTorch (row-major) `shape`: the dimensions are the shape reversed.
    public init(name: String, shape: [Int], type: GGMLType) {
        self.init(name: name, dimensions: shape.reversed(), type: type)
    }

    /// The shape in PyTorch order (the dimensions reversed).
    public var shape: [Int] { dimensions.reversed() }

    /// The product of the dimensions.
    public var elementCount: Int { dimensions.reduce(1, *) }
}

/// Writes GGUF v3 files as llama.cpp's reader expects them: the header, the metadata in the
/// order given, the tensor descriptions, zeros up to the alignment (`general.alignment` if the
/// metadata has it, else 32), then each tensor's bytes in the same order, each padded with
/// zeros to the alignment (ggml's packing, which llama.cpp requires).
///
/// Files are written atomically (``AtomicFile``: a temporary file renamed into place) and
/// streamed: each tensor's bytes are asked for when it is written, into a buffer the size of
/// the largest tensor, so peak memory is the header plus one tensor, not the file.
///
/// What would make a file that Lathe's or llama.cpp's reader refuses is an error before
/// anything is written: empty, duplicate or non-printable-ASCII keys; a `general.alignment`
/// that is not a u32 power of two; tensor names empty, duplicated or over 63 bytes; no or more
/// than 4 dimensions, a dimension below 1; a first dimension that is not a whole number of the
/// type's blocks. Arrays may nest (gguf-py and Lathe read them; llama.cpp refuses them).
public enum GGUFWriter {
    /// The GGUF version written.
    public static let version: UInt32 = 3

    /// Where everything goes in a file: the bytes before the data section (header, metadata,
    /// tensor descriptions and padding) and each tensor's offset in the data section.
    public struct Layout: Sendable {
        /// The bytes before the data section, padded to the alignment.
        public let header: [UInt8]
        public let alignment: Int
        /// Each tensor's offset from the start of the data section.
        public let offsets: [Int]
        /// Each tensor's bytes.
        public let byteCounts: [Int]
        /// The size of the whole file.
        public var fileSize: Int { header.count + dataSize }
        /// The size of the data section (each tensor padded to the alignment).
        public let dataSize: Int
    }

    /// Checks the request and lays the file out (see ``GGUFWriter`` for what is refused);
    /// `path` names the file in errors.
    public static func layout(metadata: [GGUFKeyValue], tensors: [GGUFTensorDescriptor],
                              path: String = "<memory>") throws(GGUFError) -> Layout {
        var alignment = GGUFFile.defaultAlignment
        var seenKeys = Set<String>()
        for kv in metadata {
            let key = kv.key
            guard !key.isEmpty else { throw .unwritable(path: path, reason: "a metadata key is empty") }
            guard key.utf8.count <= 65_535, key.utf8.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E }) else {
                throw .unwritable(path: path, reason: "metadata key \(GGUFValue.quoted(key, maxLength: 80)) is not 1 to 65,535 characters of printable ASCII")
            }
            guard seenKeys.insert(key).inserted else {
                throw .unwritable(path: path, reason: "metadata key '\(key)' appears twice; keys must be unique")
            }
            if key == "general.alignment" {
                guard case .uint32(let a) = kv.value, a != 0, a & (a - 1) == 0 else {
                    throw .unwritable(path: path, reason: "general.alignment is \(kv.value) of type \(kv.value.typeName); it must be a u32 power of two")
                }
                alignment = Int(a)
            }
            try checkDepth(kv.value, key: key, path: path)
        }
        var out = ByteWriter()
        out.append(Array("GGUF".utf8))
        out.append(version)
        out.append(UInt64(tensors.count))
        out.append(UInt64(metadata.count))
        for kv in metadata {
            out.appendString(kv.key)
            out.append(kv.value.type.rawValue)
            out.appendValue(kv.value)
        }
        var seenNames = Set<String>()
        var offsets: [Int] = [], byteCounts: [Int] = []
        var dataSize = 0
        for t in tensors {
            func bad(_ reason: String) -> GGUFError { .unwritable(path: path, reason: "tensor '\(t.name)': \(reason)") }
            guard !t.name.isEmpty else { throw .unwritable(path: path, reason: "a tensor name is empty") }
            guard t.name.utf8.count <= GGUFFile.maxTensorNameLength else {
                throw bad("the name is \(t.name.utf8.count) bytes long; GGML allows at most \(GGUFFile.maxTensorNameLength)")
            }
            guard seenNames.insert(t.name).inserted else { throw bad("the name appears twice; tensor names must be unique") }
            guard (1...4).contains(t.dimensions.count) else { throw bad("it has \(t.dimensions.count) dimensions; GGML tensors have 1 to 4") }
            guard t.dimensions.allSatisfy({ $0 >= 1 }) else { throw bad("its dimensions \(t.dimensions) include one below 1") }
            var elements = 1
            for d in t.dimensions {
                let (p, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw bad("its dimensions \(t.dimensions) hold more elements than Int can count") }
                elements = p
            }
            guard t.dimensions[0] % t.type.blockSize == 0 else {
                throw bad("\(t.type.name) stores blocks of \(t.type.blockSize) elements along dimension 0, but dimension 0 is \(t.dimensions[0])")
            }
            guard let bytes = t.type.byteCount(elementCount: elements),
                  case let (padded, overflow) = bytes.addingReportingOverflow(alignment - 1), !overflow,
                  case let (end, overflow2) = dataSize.addingReportingOverflow(padded / alignment * alignment), !overflow2 else {
                throw bad("its size overflows Int")
            }
            out.appendString(t.name)
            out.append(UInt32(t.dimensions.count))
            for d in t.dimensions { out.append(UInt64(d)) }
            out.append(t.type.rawValue)
            out.append(UInt64(dataSize))
            offsets.append(dataSize)
            byteCounts.append(bytes)
            dataSize = end
        }
        // The data section starts at the next multiple of the alignment.
        let pad = (alignment - out.bytes.count % alignment) % alignment
        out.bytes.append(contentsOf: repeatElement(0, count: pad))
        return Layout(header: out.bytes, alignment: alignment, offsets: offsets, byteCounts: byteCounts, dataSize: dataSize)
    }

    /// Writes the GGUF file at `url`, replacing it atomically. `data(i, buffer)` fills tensor
    /// `i`'s bytes (`buffer.count` is exactly its size, the buffer zeroed); tensors are asked for
    /// in order, once each. Errors thrown by `data` are rethrown as they are; file-system
    /// failures are ``GGUFError/unwritable(path:reason:)``. On any error `url` is left as it was.
    public static func write(to url: URL, metadata: [GGUFKeyValue], tensors: [GGUFTensorDescriptor],
                             data: (_ index: Int, _ buffer: UnsafeMutableRawBufferPointer) throws -> Void) throws {
        let layout = try self.layout(metadata: metadata, tensors: tensors, path: url.path)
        var failure: (any Error)?
        do {
            try AtomicFile.write(to: url) { handle in
                do {
                    try stream(layout, tensors: tensors, data: data) { chunk in
                        try handle.write(contentsOf: Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: chunk.baseAddress!),
                                                          count: chunk.count, deallocator: .none))
                    }
                } catch {
                    failure = error
                    throw error
                }
            }
        } catch let error as AtomicFile.WriteError {
            if let failure, !(failure is CocoaError), !(failure is POSIXError) { throw failure }
            throw GGUFError.unwritable(path: url.path, reason: error.reason)
        }
    }

    /// The whole file in memory (tests and small files); `data` as for
    /// ``write(to:metadata:tensors:data:)``.
    public static func bytes(metadata: [GGUFKeyValue], tensors: [GGUFTensorDescriptor],
                             data: (_ index: Int, _ buffer: UnsafeMutableRawBufferPointer) throws -> Void) throws -> [UInt8] {
        let layout = try self.layout(metadata: metadata, tensors: tensors)
        var out: [UInt8] = []
        out.reserveCapacity(layout.fileSize)
        try stream(layout, tensors: tensors, data: data) { out.append(contentsOf: $0) }
        return out
    }

    /// Sends the file to `sink` in pieces: the header, then each tensor and its padding.
    static func stream(_ layout: Layout, tensors: [GGUFTensorDescriptor],
                       data: (Int, UnsafeMutableRawBufferPointer) throws -> Void,
                       sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try layout.header.withUnsafeBytes { try sink($0) }
        let largest = layout.byteCounts.max() ?? 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(largest, layout.alignment), alignment: 64)
        defer { buffer.deallocate() }
        let zeros = [UInt8](repeating: 0, count: layout.alignment)
        for i in tensors.indices {
            let n = layout.byteCounts[i]
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
            slice.initializeMemory(as: UInt8.self, repeating: 0)
            try data(i, slice)
            try sink(UnsafeRawBufferPointer(slice))
            let pad = (layout.alignment - n % layout.alignment) % layout.alignment
            if pad > 0 { try zeros.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<pad])) } }
        }
    }

    /// Arrays nest at most ``GGUFFile/maxArrayDepth`` deep (what Lathe's reader accepts).
    private static func checkDepth(_ value: GGUFValue, key: String, path: String) throws(GGUFError) {
        func depth(_ a: GGUFArray) -> Int {
            if case .array(let inner) = a { return 1 + (inner.map(depth).max() ?? 0) }
            return 1
        }
        if case .array(let a) = value, depth(a) > GGUFFile.maxArrayDepth + 1 {
            throw .unwritable(path: path, reason: "metadata '\(key)': arrays nest more than \(GGUFFile.maxArrayDepth) deep")
        }
    }
}

/// Little-endian serialisation of GGUF's fields.
private struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func append(_ b: [UInt8]) { bytes.append(contentsOf: b) }

    mutating func append<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func appendString(_ s: String) {
        append(UInt64(s.utf8.count))
        bytes.append(contentsOf: s.utf8)
    }

    mutating func appendValue(_ v: GGUFValue) {
        switch v {
        case .uint8(let x): append(x)
        case .int8(let x): append(x)
        case .uint16(let x): append(x)
        case .int16(let x): append(x)
        case .uint32(let x): append(x)
        case .int32(let x): append(x)
        case .uint64(let x): append(x)
        case .int64(let x): append(x)
        case .float32(let x): append(x.bitPattern)
        case .float64(let x): append(x.bitPattern)
        case .bool(let x): append(UInt8(x ? 1 : 0))
        case .string(let s): appendString(s)
        case .array(let a): appendArray(a)
        }
    }

    /// Element type, count, elements.
    mutating func appendArray(_ a: GGUFArray) {
        append(a.elementType.rawValue)
        append(UInt64(a.count))
        switch a {
        case .uint8(let xs): bytes.append(contentsOf: xs)
        case .int8(let xs): for x in xs { append(x) }
        case .uint16(let xs): for x in xs { append(x) }
        case .int16(let xs): for x in xs { append(x) }
        case .uint32(let xs): for x in xs { append(x) }
        case .int32(let xs): for x in xs { append(x) }
        case .uint64(let xs): for x in xs { append(x) }
        case .int64(let xs): for x in xs { append(x) }
        case .float32(let xs): for x in xs { append(x.bitPattern) }
        case .float64(let xs): for x in xs { append(x.bitPattern) }
        case .bool(let xs): for x in xs { append(UInt8(x ? 1 : 0)) }
        case .string(let xs): for x in xs { appendString(x) }
        case .array(let xs): for x in xs { appendArray(x) }
        }
    }
}
