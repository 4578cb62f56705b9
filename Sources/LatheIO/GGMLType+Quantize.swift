import CLatheKernels

// Quantisation of float32 to GGML blocks, as ggml's reference `quantize_row_*_ref` functions
// do it (ggml `src/ggml-quants.c`): the C kernels of CLatheKernels (lathe_ggml.h), with a naive
// Swift twin in GGMLQuantizeReference.swift.

extension GGMLType {
    /// True for the types Lathe writes: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K,
    /// Q5_K, Q6_K.
    public var isQuantizable: Bool { lathe_ggml_can_quantize(rawValue) != 0 }

    /// The types ``quantize(_:rowLength:into:)`` writes, in ggml's id order.
    public static var quantizable: [GGMLType] { allCases.filter(\.isQuantizable) }

    /// Bytes of one row of `rowLength` elements, or nil if `rowLength` is not a whole number of
    /// blocks.
    public func rowByteCount(_ rowLength: Int) -> Int? { byteCount(elementCount: rowLength) }

    /// Converts `source` (rows of `rowLength` floats, row-major) to blocks of `self` in
    /// `destination`, rows spread over the thread pool; the bytes do not depend on the thread
    /// count.
    ///
    /// The blocks are ggml's reference encoder's: byte-identical to llama.cpp's
    /// `llama-quantize` without an importance matrix and, for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
    /// F16 and BF16, to gguf-py's `gguf.quants.quantize` (for finite inputs whose `1/d` is
    /// finite; for a Q4_0/Q5_0 block whose first element is -0 and all others zero, Lathe writes
    /// the scale -0 as ggml does, where gguf-py writes +0). F16 and BF16 round to nearest even.
    ///
    /// Preconditions: ``isQuantizable``; `rowLength` a multiple of ``blockSize`` and
    /// `source.count` of `rowLength`; `destination` holds the result
    /// (`source.count / blockSize * bytesPerBlock` bytes).
    public func quantize(_ source: UnsafeBufferPointer<Float>, rowLength: Int, into destination: UnsafeMutableRawBufferPointer) {
        precondition(isQuantizable, "GGMLType.quantize: Lathe does not write \(name)")
        precondition(rowLength > 0 && rowLength % blockSize == 0, "GGMLType.quantize: rows of \(rowLength) are not whole \(name) blocks")
        precondition(source.count % rowLength == 0, "GGMLType.quantize: \(source.count) values are not whole rows of \(rowLength)")
        let rows = source.count / rowLength
        let bytes = rows * (rowLength / blockSize) * bytesPerBlock
        precondition(destination.count >= bytes, "GGMLType.quantize: room for \(destination.count) bytes, need \(bytes)")
        guard rows > 0, let x = source.baseAddress, let y = destination.baseAddress else { return }
        let written = lathe_ggml_quantize(rawValue, x, y, rows, rowLength)
        precondition(written == bytes, "GGMLType.quantize: the kernel wrote \(written) bytes, expected \(bytes)")
    }

    /// `values` (rows of `rowLength`, default one row) as blocks of `self` (see
    /// ``quantize(_:rowLength:into:)``).
    public func quantized(_ values: [Float], rowLength: Int? = nil) -> [UInt8] {
        let n = rowLength ?? values.count
        let bytes = values.count / blockSize * bytesPerBlock
        return [UInt8](unsafeUninitializedCapacity: bytes) { out, initialized in
            values.withUnsafeBufferPointer { quantize($0, rowLength: n, into: UnsafeMutableRawBufferPointer(out)) }
            initialized = bytes
        }
    }
}
