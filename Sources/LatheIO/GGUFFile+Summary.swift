extension GGUFFile {
    /// Total elements over all tensors.
    public var parameterCount: Int { tensors.reduce(0) { $0 + $1.elementCount } }
    /// Total bytes of tensor data (without padding).
    public var dataByteCount: Int { tensors.reduce(0) { $0 + $1.byteCount } }

    /// Tensor counts by type, the most frequent first (ties by type id).
    public var typeCounts: [(type: GGMLType, count: Int)] {
        var counts: [GGMLType: Int] = [:]
        for t in tensors { counts[t.type, default: 0] += 1 }
        return counts.map { (type: $0.key, count: $0.value) }
            .sorted { $0.count != $1.count ? $0.count > $1.count : $0.type.rawValue < $1.type.rawValue }
    }

    /// A human-readable description as `lathe inspect` prints it: the header, the metadata in file
    /// order (arrays cut after `maxElements` elements, strings after `maxStringLength`
    /// characters), the tensors (name, type, shape in PyTorch order, bytes), totals and warnings.
    public func summary(maxElements: Int = 8, maxStringLength: Int = 120) -> String {
        var lines: [String] = []
        lines.append("\(path): GGUF v\(version), \(TextFormat.humanBytes(fileSize)), alignment \(alignment), "
                     + "data section at byte \(TextFormat.grouped(dataOffset))")
        lines.append("")
        lines.append("metadata (\(metadata.count) key\(metadata.count == 1 ? "" : "s")):")
        let metaRows = metadata.map { kv in
            ["  " + kv.key, kv.value.typeName, kv.value.formatted(maxElements: maxElements, maxStringLength: maxStringLength)]
        }
        lines += TextFormat.table(metaRows)
        lines.append("")
        if !tensors.isEmpty {
            lines.append("tensors (shape in PyTorch order, GGML's ne reversed):")
            let rows = [["name", "type", "shape", "bytes", ""]] + tensors.map { t in
                [t.name, t.type.isDequantizable ? t.type.name : t.type.name + " (not loadable)", TextFormat.shape(t.shape),
                 "\(t.byteCount)", TextFormat.humanBytes(t.byteCount)]
            }
            lines += TextFormat.table(rows, rightAligned: [3])
            lines.append("")
        }
        lines.append("\(tensors.count) tensor\(tensors.count == 1 ? "" : "s"), \(TextFormat.grouped(parameterCount)) parameters, "
                     + "\(TextFormat.grouped(dataByteCount)) bytes (\(TextFormat.humanBytes(dataByteCount))) of data")
        if !tensors.isEmpty {
            lines.append("types: " + typeCounts.map { "\($0.type.name) x \($0.count)" }.joined(separator: ", "))
        }
        let unloadable = Set(tensors.filter { !$0.type.isDequantizable }.map(\.type))
        if !unloadable.isEmpty {
            let n = tensors.filter { !$0.type.isDequantizable }.count
            lines.append("\(n) tensor\(n == 1 ? " has a type" : "s have types") Lathe cannot convert to float32: "
                         + unloadable.sorted { $0.rawValue < $1.rawValue }.map(\.name).joined(separator: ", "))
        }
        for w in warnings { lines.append("warning: " + w) }
        return lines.joined(separator: "\n")
    }

    /// The same information as ``summary(maxElements:maxStringLength:)`` as one JSON object, for
    /// scripts. Metadata is an array of `{"key", "type", "value"}` in file order; an array value
    /// also has `"count"`, and when it is longer than `maxElements`, `"truncated": true` and only
    /// its first `maxElements` elements (inner arrays are cut the same way); strings are whole; non-finite floats are `null`. Tensors give `shape`
    /// (PyTorch order) and `ne` (GGML order), `offset` relative to the data section.
    public func summaryJSON(maxElements: Int = 8) -> String {
        let q = JSONWriter.quoted
        let meta = metadata.map { kv in
            var members = [("key", q(kv.key)), ("type", q(kv.value.typeName))]
            if case .array(let a) = kv.value {
                members.append(("count", "\(a.count)"))
                if a.count > maxElements { members.append(("truncated", "true")) }
            }
            members.append(("value", Self.json(kv.value, maxElements: maxElements)))
            return JSONWriter.object(members)
        }
        let tensorObjects = tensors.map { t in
            JSONWriter.object([
                ("name", q(t.name)), ("type", q(t.type.name)), ("type_id", "\(t.type.rawValue)"),
                ("loadable", t.type.isDequantizable ? "true" : "false"), ("shape", JSONWriter.intArray(t.shape)),
                ("ne", JSONWriter.intArray(t.dimensions)), ("elements", "\(t.elementCount)"), ("bytes", "\(t.byteCount)"),
                ("offset", "\(t.offset)"),
            ])
        }
        return JSONWriter.object([
            ("file", q(path)), ("format", q("gguf")), ("version", "\(version)"), ("file_size", "\(fileSize)"),
            ("alignment", "\(alignment)"), ("data_offset", "\(dataOffset)"), ("tensor_count", "\(tensors.count)"),
            ("parameter_count", "\(parameterCount)"), ("total_bytes", "\(dataByteCount)"),
            ("metadata", "[" + meta.joined(separator: ",") + "]"),
            ("tensors", "[" + tensorObjects.joined(separator: ",") + "]"),
            ("warnings", "[" + warnings.map(q).joined(separator: ",") + "]"),
        ])
    }

    private static func json(_ value: GGUFValue, maxElements: Int) -> String {
        switch value {
        case .float32(let x): return x.isFinite ? "\(x)" : "null"
        case .float64(let x): return x.isFinite ? "\(x)" : "null"
        case .bool(let b): return b ? "true" : "false"
        case .string(let s): return JSONWriter.quoted(s)
        case .array(let a):
            let shown = (0..<min(a.count, maxElements)).map { json(a[$0], maxElements: maxElements) }
            return "[" + shown.joined(separator: ",") + "]"
        default: return value.formatted()  // integers
        }
    }
}
