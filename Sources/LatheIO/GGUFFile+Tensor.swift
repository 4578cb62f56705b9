import LatheTensor

extension GGUFFile {
    /// The tensor called `name` as a float32 ``Tensor`` in PyTorch order (the GGML dimensions
    /// reversed: `token_embd` `[576, 49152]` in the file is `[49152, 576]`), dequantised as
    /// ggml's `dequantize_row_*` does. Reads only that tensor's bytes from the mapping and
    /// allocates only the result.
    ///
    /// Throws ``GGUFError/tensorNotFound(path:name:)``, or
    /// ``GGUFError/unsupportedType(path:tensor:type:)`` for types Lathe does not convert
    /// (``GGMLType/isDequantizable``).
    public func tensor(named name: String) throws(GGUFError) -> Tensor {
        guard let info = tensorInfo(named: name) else { throw .tensorNotFound(path: path, name: name) }
        guard info.type.isDequantizable else { throw .unsupportedType(path: path, tensor: name, type: info.type) }
        let bytes = try tensorData(named: name)
        var tensor = Tensor.zeros(info.shape)
        withExtendedLifetime(self) {
            tensor.withUnsafeMutableBufferPointer { info.type.dequantize(bytes, count: info.elementCount, into: $0) }
        }
        return tensor
    }
}
