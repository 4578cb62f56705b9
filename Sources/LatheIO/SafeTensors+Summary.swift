import Foundation

extension SafeTensorsHeader {
    /// A human-readable table of the tensors (name, dtype, shape, bytes), totals and metadata,
    /// as `lathe inspect` prints it.
    public func summary() -> String {
        var lines: [String] = []
        lines.append("\(path): safetensors, \(Self.humanBytes(fileSize)) (header \(headerSize) bytes)")
        lines.append("")
        let rows: [[String]] = entries.map { e in
            var dtype = e.fileDType
            if e.isConvertedOnLoad { dtype += " (loads as float32)" } else if e.dtype == nil { dtype += " (not loadable)" }
            return [e.name, dtype, Self.shapeText(e.shape), "\(e.byteCount)", Self.humanBytes(e.byteCount)]
        }
        let titles = ["name", "dtype", "shape", "bytes", ""]
        var widths = titles.map(\.count)
        for row in rows { for (k, cell) in row.enumerated() { widths[k] = max(widths[k], cell.count) } }
        func line(_ cells: [String]) -> String {
            let text = cells.enumerated().map { k, cell in
                // Left-align text columns, right-align the byte count.
                k == 3 ? String(repeating: " ", count: widths[k] - cell.count) + cell
                       : cell + String(repeating: " ", count: widths[k] - cell.count)
            }.joined(separator: "  ")
            return String(text[..<(text.lastIndex { $0 != " " }.map { text.index(after: $0) } ?? text.startIndex)])
        }
        lines.append(line(titles))
        for row in rows { lines.append(line(row)) }
        lines.append("")
        let count = entries.count
        lines.append("\(count) tensor\(count == 1 ? "" : "s"), \(Self.grouped(parameterCount)) parameters, "
                     + "\(Self.grouped(dataByteCount)) bytes (\(Self.humanBytes(dataByteCount))) of data")
        let unloadable = entries.filter { $0.dtype == nil }
        if !unloadable.isEmpty {
            lines.append("\(unloadable.count) tensor\(unloadable.count == 1 ? " has a dtype" : "s have dtypes") Lathe cannot load: "
                         + Set(unloadable.map(\.fileDType)).sorted().joined(separator: ", "))
        }
        if metadata.isEmpty {
            lines.append("metadata: none")
        } else {
            lines.append("metadata:")
            for key in metadata.keys.sorted() { lines.append("  \(key): \(metadata[key] ?? "")") }
        }
        return lines.joined(separator: "\n")
    }

    /// The same information as ``summary()`` as one JSON object, for scripts.
    public func summaryJSON() -> String {
        let q = JSONWriter.quoted
        let tensors = entries.map { e in
            "{\"name\":\(q(e.name)),\"dtype\":\(q(e.fileDType)),\"lathe_dtype\":\(e.dtype.map { q($0.rawValue) } ?? "null"),"
                + "\"shape\":\(JSONWriter.intArray(e.shape)),\"elements\":\(e.elementCount),\"bytes\":\(e.byteCount),"
                + "\"data_offsets\":\(JSONWriter.intArray([e.dataOffsets.lowerBound, e.dataOffsets.upperBound]))}"
        }
        let meta = metadata.keys.sorted().map { "\(q($0)):\(q(metadata[$0] ?? ""))" }
        return "{\"file\":\(q(path)),\"file_size\":\(fileSize),\"header_size\":\(headerSize),"
            + "\"tensor_count\":\(entries.count),\"parameter_count\":\(parameterCount),\"total_bytes\":\(dataByteCount),"
            + "\"tensors\":[\(tensors.joined(separator: ","))],\"metadata\":{\(meta.joined(separator: ","))}}"
    }

    /// `[2, 3]`; `[]` for a scalar.
    static func shapeText(_ shape: [Int]) -> String { TextFormat.shape(shape) }

    /// `1234567` as `1,234,567`.
    static func grouped(_ n: Int) -> String { TextFormat.grouped(n) }

    /// Bytes in binary units: `512 B`, `1.5 KiB`, `12.0 MiB`.
    public static func humanBytes(_ n: Int) -> String { TextFormat.humanBytes(n) }
}
