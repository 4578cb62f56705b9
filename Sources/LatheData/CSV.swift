import Foundation
import LatheTensor

/// Numeric CSV files (plain or gzip-compressed, detected by content) as labelled data sets.
public enum CSV {
    /// Loads a CSV file of numbers: every column but `labelColumn` becomes a float32 feature
    /// (`[N, columns - 1]`); `labelColumn` (negative counts from the end, default the last)
    /// holds non-negative integer class ids (int64 `[N]`, `classes` = max + 1).
    ///
    /// - Parameters:
    ///   - hasHeader: `true` skips the first line, `false` reads it as data, `nil` treats it as
    ///     a header when any of its cells is not a number.
    ///   - delimiter: an ASCII character.
    /// Blank lines are skipped; cells may be surrounded by spaces and double quotes. Errors
    /// name the line and column.
    public static func loadNumeric(_ url: URL, labelColumn: Int = -1, hasHeader: Bool? = nil,
                                   delimiter: Character = ",") throws -> TensorDataset {
        try FileBytes.withContents(of: url, hint: "check the path") { bytes in
            try parseNumeric(bytes, path: url.path, labelColumn: labelColumn, hasHeader: hasHeader, delimiter: delimiter)
        }
    }

    /// Like ``loadNumeric(_:labelColumn:hasHeader:delimiter:)`` for text in memory.
    public static func parseNumeric(_ text: String, labelColumn: Int = -1, hasHeader: Bool? = nil,
                                    delimiter: Character = ",") throws -> TensorDataset {
        var text = text
        return try text.withUTF8 { utf8 in
            try parseNumeric(UnsafeRawBufferPointer(utf8), path: "<text>", labelColumn: labelColumn,
                             hasHeader: hasHeader, delimiter: delimiter)
        }
    }

    static func parseNumeric(_ bytes: UnsafeRawBufferPointer, path: String, labelColumn: Int, hasHeader: Bool?,
                             delimiter: Character) throws -> TensorDataset {
        guard let d = delimiter.asciiValue, d != UInt8(ascii: "\n"), d != UInt8(ascii: "\r"), d != UInt8(ascii: "\"") else {
            throw DataError.invalidArgument("CSV: delimiter must be an ASCII character other than newline or quote, got \(delimiter.debugDescription)")
        }
        let p = bytes.bindMemory(to: UInt8.self)
        let n = p.count
        var features: [Float] = []
        var labels: [Int64] = []
        var columns = -1, labelIndex = -1, firstDataLine = 0
        var line = 0, pos = 0
        var cellStarts: [Int] = [], cellEnds: [Int] = []
        var sawFirstLine = false
        var maxLabel: Int64 = -1

        while pos < n {
            line += 1
            var end = pos
            while end < n && p[end] != UInt8(ascii: "\n") { end += 1 }
            let next = end + 1
            var lineEnd = end
            if lineEnd > pos && p[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
            defer { pos = next }
            // Skip blank lines.
            var k = pos
            while k < lineEnd && (p[k] == UInt8(ascii: " ") || p[k] == UInt8(ascii: "\t")) { k += 1 }
            if k == lineEnd { continue }

            cellStarts.removeAll(keepingCapacity: true)
            cellEnds.removeAll(keepingCapacity: true)
            var s = pos
            for i in pos..<lineEnd where p[i] == d {
                cellStarts.append(s); cellEnds.append(i); s = i + 1
            }
            cellStarts.append(s); cellEnds.append(lineEnd)

            if !sawFirstLine {
                sawFirstLine = true
                let isHeader: Bool
                if let h = hasHeader {
                    isHeader = h
                } else {
                    isHeader = zip(cellStarts, cellEnds).contains { parseNumber(p, $0, $1) == nil }
                }
                if isHeader { continue }
            }
            if columns < 0 {
                columns = cellStarts.count
                firstDataLine = line
                guard columns >= 2 else {
                    throw DataError.malformed(path: path, location: "line \(line)",
                                              reason: "found 1 column; need features and a label (wrong delimiter \(delimiter.debugDescription)?)")
                }
                labelIndex = labelColumn < 0 ? columns + labelColumn : labelColumn
                guard labelIndex >= 0 && labelIndex < columns else {
                    throw DataError.invalidArgument("CSV: labelColumn \(labelColumn) is outside the \(columns) columns of \(path)")
                }
                features.reserveCapacity((columns - 1) * Swift.max(16, n / Swift.max(1, lineEnd - pos + 1)))
            }
            guard cellStarts.count == columns else {
                throw DataError.malformed(path: path, location: "line \(line)",
                                          reason: "\(cellStarts.count) fields, but line \(firstDataLine) has \(columns)")
            }
            for c in 0..<columns {
                guard let v = parseNumber(p, cellStarts[c], cellEnds[c]) else {
                    let raw = String(decoding: UnsafeBufferPointer(rebasing: p[cellStarts[c]..<cellEnds[c]]), as: UTF8.self)
                    let shown = raw.count > 40 ? String(raw.prefix(40)) + "..." : raw
                    throw DataError.malformed(path: path, location: "line \(line), column \(c + 1)",
                                              reason: raw.trimmingCharacters(in: .whitespaces).isEmpty
                                                  ? "empty cell" : "\(shown.debugDescription) is not a number")
                }
                if c == labelIndex {
                    guard v >= 0, v == v.rounded(), v < 9.0e15 else {
                        throw DataError.malformed(path: path, location: "line \(line), column \(c + 1)",
                                                  reason: "label \(v) is not a class id (a non-negative integer)")
                    }
                    let id = Int64(v)
                    labels.append(id)
                    maxLabel = Swift.max(maxLabel, id)
                } else {
                    features.append(Float(v))
                }
            }
        }
        guard columns > 0, !labels.isEmpty else {
            throw DataError.malformed(path: path, location: "line \(line)", reason: "no data rows")
        }
        let rows = labels.count
        let x = Tensor(features, shape: [rows, columns - 1])
        let y = labels.withUnsafeBytes { Tensor(bytes: $0, shape: [rows], dtype: .int64) }
        return TensorDataset(features: x, labels: y, classes: Int(maxLabel) + 1)
    }

    private static let powersOfTen: [Double] = (0...22).map { Foundation.pow(10.0, Double($0)) }

    /// A decimal number in `p[start..<end]` (spaces and one pair of double quotes around it are
    /// ignored), or nil. Plain decimals take a fast exact path; anything else goes to Swift's
    /// correctly rounded `Double(_:)` (which also takes `nan`, `inf`, exponents).
    static func parseNumber(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Double? {
        var s = start, e = end
        func trim() {
            while s < e && (p[s] == 0x20 || p[s] == 0x09) { s += 1 }
            while e > s && (p[e - 1] == 0x20 || p[e - 1] == 0x09) { e -= 1 }
        }
        trim()
        if e - s >= 2 && p[s] == UInt8(ascii: "\"") && p[e - 1] == UInt8(ascii: "\"") {
            s += 1; e -= 1; trim()
        }
        if s == e { return nil }
        var i = s
        var negative = false
        if p[i] == UInt8(ascii: "-") || p[i] == UInt8(ascii: "+") { negative = p[i] == UInt8(ascii: "-"); i += 1 }
        var mantissa: UInt64 = 0, digits = 0, fractionDigits = 0
        while i < e, p[i] &- 48 < 10 { mantissa = mantissa &* 10 &+ UInt64(p[i] - 48); digits += 1; i += 1 }
        if i < e && p[i] == UInt8(ascii: ".") {
            i += 1
            while i < e, p[i] &- 48 < 10 { mantissa = mantissa &* 10 &+ UInt64(p[i] - 48); digits += 1; fractionDigits += 1; i += 1 }
        }
        if i == e && digits > 0 && digits <= 15 {
            // Both operands exact in Double, so one correctly rounded operation.
            let v = fractionDigits == 0 ? Double(mantissa) : Double(mantissa) / powersOfTen[fractionDigits]
            return negative ? -v : v
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: p[s..<e]), as: UTF8.self)
        return Double(text)
    }
}
