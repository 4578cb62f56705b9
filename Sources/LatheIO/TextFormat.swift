// Number and size formatting shared by the `lathe inspect` summaries.

import Foundation

enum TextFormat {
    /// `1234567` as `1,234,567`.
    static func grouped(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (k, c) in digits.enumerated() {
            if k > 0 && (digits.count - k) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return (n < 0 ? "-" : "") + out
    }

    /// Bytes in binary units: `512 B`, `1.5 KiB`, `12.0 MiB`.
    static func humanBytes(_ n: Int) -> String {
        if n < 1024 { return "\(n) B" }
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var value = Double(n) / 1024
        var unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        return String(format: "%.1f", value) + " " + units[unit]
    }

    /// `[2, 3]`; `[]` for a scalar.
    static func shape(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }

    /// Rows of cells as aligned columns (two spaces apart, no trailing spaces); the columns in
    /// `rightAligned` are right-aligned.
    static func table(_ rows: [[String]], rightAligned: Set<Int> = []) -> [String] {
        var widths: [Int] = []
        for row in rows {
            for (k, cell) in row.enumerated() {
                if k == widths.count { widths.append(0) }
                widths[k] = max(widths[k], cell.count)
            }
        }
        return rows.map { row in
            let text = row.enumerated().map { k, cell in
                let pad = String(repeating: " ", count: widths[k] - cell.count)
                return rightAligned.contains(k) ? pad + cell : cell + pad
            }.joined(separator: "  ")
            return String(text[..<(text.lastIndex { $0 != " " }.map { text.index(after: $0) } ?? text.startIndex)])
        }
    }
}
