import Foundation

// Python's string operations on code points (strip, split, splitlines, replace, title,
// capitalize, center, format, float/int parsing), as templates see them.

extension JinjaBuiltins {
    // MARK: - Python string operations (on code points)

    static func pythonStrip(_ s: [Unicode.Scalar], chars: String?, left: Bool, right: Bool) -> [Unicode.Scalar] {
        let set = chars.map { Set($0.unicodeScalars) }
        func strip(_ c: Unicode.Scalar) -> Bool { set.map { $0.contains(c) } ?? isPythonSpace(c) }
        var lo = 0, hi = s.count
        if left { while lo < hi, strip(s[lo]) { lo += 1 } }
        if right { while hi > lo, strip(s[hi - 1]) { hi -= 1 } }
        return Array(s[lo..<hi])
    }

    static func pythonSplit(_ s: [Unicode.Scalar], sep: String?, maxsplit: Int, fromRight: Bool) throws(JinjaRuntimeError) -> [[Unicode.Scalar]] {
        if let sep {
            let p = Array(sep.unicodeScalars)
            guard !p.isEmpty else { throw .type("empty separator") }
            var parts: [[Unicode.Scalar]] = []
            if fromRight {
                var end = s.count, i = s.count - p.count
                while i >= 0 && (maxsplit < 0 || parts.count < maxsplit) {
                    if s[i..<(i + p.count)].elementsEqual(p) {
                        parts.append(Array(s[(i + p.count)..<end]))
                        end = i
                        i -= p.count
                    } else {
                        i -= 1
                    }
                }
                parts.append(Array(s[0..<end]))
                return parts.reversed()
            }
            var start = 0, i = 0
            while i + p.count <= s.count && (maxsplit < 0 || parts.count < maxsplit) {
                if s[i..<(i + p.count)].elementsEqual(p) {
                    parts.append(Array(s[start..<i]))
                    i += p.count
                    start = i
                } else {
                    i += 1
                }
            }
            parts.append(Array(s[start...]))
            return parts
        }
        // Runs of whitespace; no empty strings.
        var parts: [[Unicode.Scalar]] = []
        if fromRight {
            var i = s.count
            while true {
                while i > 0, isPythonSpace(s[i - 1]) { i -= 1 }
                if i == 0 { break }
                if maxsplit >= 0 && parts.count == maxsplit {
                    parts.append(Array(s[0..<i]))
                    break
                }
                var j = i
                while j > 0, !isPythonSpace(s[j - 1]) { j -= 1 }
                parts.append(Array(s[j..<i]))
                i = j
            }
            return parts.reversed()
        }
        var i = 0
        while true {
            while i < s.count, isPythonSpace(s[i]) { i += 1 }
            if i == s.count { break }
            if maxsplit >= 0 && parts.count == maxsplit {
                parts.append(Array(s[i...]))
                break
            }
            var j = i
            while j < s.count, !isPythonSpace(s[j]) { j += 1 }
            parts.append(Array(s[i..<j]))
            i = j
        }
        return parts
    }

    /// Python's `str.format` for plain fields: `{}`, `{0}`, `{name}`, `{{`, `}}` (no format
    /// specifications, conversions or attribute access).
    static func pythonFormat(_ s: String, _ args: JinjaCallArguments, limit: Int) throws(JinjaRuntimeError) -> String {
        var out = ""
        var chars = Array(s.unicodeScalars)[...]
        var auto = 0
        while let c = chars.popFirst() {
            if c == "}" {
                guard chars.popFirst() == "}" else { throw .type("Single '}' encountered in format string") }
                out += "}"
                continue
            }
            guard c == "{" else { out.unicodeScalars.append(c); continue }
            if chars.first == "{" { chars.removeFirst(); out += "{"; continue }
            var field = ""
            while let f = chars.popFirst(), f != "}" {
                guard f != "{" else { throw .type("unexpected '{' in field name") }
                field.unicodeScalars.append(f)
            }
            if field.contains(where: { ":!.[".contains($0) }) {
                throw .unsupported("str.format fields with conversions, format specifications or attribute access ('{\(field)}')")
            }
            let value: Value
            if field.isEmpty {
                guard auto < args.positional.count else { throw .type("Replacement index \(auto) out of range for positional args tuple") }
                value = args.positional[auto]
                auto += 1
            } else if field.unicodeScalars.allSatisfy({ $0.isASCII && $0.properties.numericType == .decimal }) {
                // Python reads a field of digits as an index; `{-1}` or `{+1}` name keywords.
                guard let i = Int(field), i < args.positional.count else {
                    throw .type("Replacement index \(field) out of range for positional args tuple")
                }
                value = args.positional[i]
            } else {
                guard let v = args.keyword.first(where: { $0.name == field })?.value else { throw .type("'\(field)'") }
                value = v
            }
            out += try value.pythonString()
            if out.utf8.count > limit { throw .limit("a string of more than \(limit) bytes (ChatTemplate.Limits.outputBytes)") }
        }
        return out
    }

    /// Python's `str.splitlines()`.
    static func pythonSplitlines(_ s: String) -> [String] {
        var lines: [String] = []
        var current = String.UnicodeScalarView()
        var previousCR = false
        for c in s.unicodeScalars {
            if previousCR {
                previousCR = false
                if c == "\n" { continue }
            }
            switch c.value {
            case 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029:
                lines.append(String(current))
                current = String.UnicodeScalarView()
                previousCR = c == "\r"
            default:
                current.append(c)
            }
        }
        if !current.isEmpty { lines.append(String(current)) }
        return lines
    }

    static func pythonReplace(_ s: String, _ old: String, _ new: String, _ count: Int, limit: Int) throws(JinjaRuntimeError) -> String {
        let a = Array(s.unicodeScalars), p = Array(old.unicodeScalars), r = Array(new.unicodeScalars)
        var out: [Unicode.Scalar] = []
        var done = 0
        func grow(_ x: some Collection<Unicode.Scalar>) throws(JinjaRuntimeError) {
            out.append(contentsOf: x)
            if out.count > limit { throw .limit("a string of more than \(limit) bytes (ChatTemplate.Limits.outputBytes)") }
        }
        if p.isEmpty {
            for c in a {
                if count < 0 || done < count { try grow(r); done += 1 }
                out.append(c)
            }
            if count < 0 || done < count { try grow(r) }
            return String(String.UnicodeScalarView(out))
        }
        var i = 0
        while i < a.count {
            if (count < 0 || done < count), i + p.count <= a.count, a[i..<(i + p.count)].elementsEqual(p) {
                try grow(r)
                done += 1
                i += p.count
            } else {
                out.append(a[i])
                i += 1
            }
        }
        return String(String.UnicodeScalarView(out))
    }

    static func pythonCenter(_ s: [Unicode.Scalar], _ width: Int, _ fill: Unicode.Scalar) -> String {
        let total = width - s.count
        guard total > 0 else { return String(String.UnicodeScalarView(s)) }
        // CPython: left = total / 2 + (total & width & 1).
        let left = total / 2 + (total & width & 1)
        var out = String.UnicodeScalarView()
        out.append(contentsOf: repeatElement(fill, count: left))
        out.append(contentsOf: s)
        out.append(contentsOf: repeatElement(fill, count: total - left))
        return String(out)
    }

    /// Python's `str.title()`: a cased character after an uncased one is title-cased, others
    /// lower-cased.
    static func pythonTitle(_ s: String) -> String {
        var out = ""
        var previousCased = false
        for c in s.unicodeScalars {
            out += previousCased ? c.properties.lowercaseMapping : c.properties.titlecaseMapping
            previousCased = c.properties.isCased
        }
        return out
    }

    /// Python's `str.capitalize()` (3.8+): the first character title-cased, the rest lower-cased.
    static func pythonCapitalize(_ s: String) -> String {
        guard let first = s.unicodeScalars.first else { return "" }
        return first.properties.titlecaseMapping + String(String.UnicodeScalarView(s.unicodeScalars.dropFirst())).lowercased()
    }

    /// jinja2's `title` filter: words start after `-`, whitespace or an opening bracket; the
    /// first letter of each is upper-cased, the rest lower-cased.
    static func jinjaTitle(_ s: String) -> String {
        var out = ""
        var atWordStart = true
        for c in s.unicodeScalars {
            if isPythonSpace(c) || "-({[<".unicodeScalars.contains(c) {
                out.unicodeScalars.append(c)
                atWordStart = true
            } else {
                out += atWordStart ? c.properties.uppercaseMapping : c.properties.lowercaseMapping
                atWordStart = false
            }
        }
        return out
    }

    /// Python's `float(x)` for the `float` filter: nil where Python raises.
    static func pythonFloat(_ v: Value) -> Double? {
        switch v {
        case .int, .double, .bool: return v.asDouble
        case .string(let s):
            let t = String(String.UnicodeScalarView(pythonStrip(Array(s.unicodeScalars), chars: nil, left: true, right: true))).replacingOccurrences(of: "_", with: "")
            switch t.lowercased() {
            case "inf", "+inf", "infinity", "+infinity": return .infinity
            case "-inf", "-infinity": return -.infinity
            case "nan", "+nan", "-nan": return .nan
            default: break
            }
            guard !t.isEmpty, t.allSatisfy({ $0.isASCII && ($0.isNumber || "+-.eE".contains($0)) }) else { return nil }
            return Double(t)
        default: return nil
        }
    }

    /// jinja2's `int` filter: `int(value, base)`, else `int(float(value))`; nil for the default.
    static func pythonInt(_ v: Value, base: Int) throws(JinjaRuntimeError) -> Int? {
        switch v {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        case .double(let d):
            guard d.isFinite else { return nil }
            guard let i = Int(exactly: d.rounded(.towardZero)) else { throw .unsupported("integers beyond 64 bits") }
            return i
        case .string(let s):
            var t = String(String.UnicodeScalarView(pythonStrip(Array(s.unicodeScalars), chars: nil, left: true, right: true)))
            if t.contains("_") { t = t.replacingOccurrences(of: "_", with: "") }
            if let i = pythonIntText(t, base: base) { return i }
            guard let d = pythonFloat(v), d.isFinite else { return nil }
            return try pythonInt(.double(d), base: base)
        default: return nil
        }
    }

    /// Python's `int(text, base)` on stripped text without underscores: nil where Python raises
    /// ValueError, including for a base other than 0 or 2...36 (Swift's `Int(_:radix:)` traps on
    /// those). Base 0 reads the `0x`/`0o`/`0b` prefixes and refuses leading zeros, as Python does;
    /// bases 16, 8 and 2 accept their prefix.
    static func pythonIntText(_ t: String, base: Int) -> Int? {
        guard base == 0 || (2...36).contains(base) else { return nil }
        var body = Substring(t)
        var sign = ""
        if let c = body.first, c == "+" || c == "-" {
            if c == "-" { sign = "-" }
            body = body.dropFirst()
        }
        var radix = base
        let prefix = body.prefix(2).lowercased()
        if let r = ["0x": 16, "0o": 8, "0b": 2][prefix], base == 0 || base == r {
            radix = r
            body = body.dropFirst(2)
        } else if base == 0 {
            radix = 10
            if body.first == "0", body.contains(where: { $0 != "0" }) { return nil }
        }
        guard let first = body.first, first != "+", first != "-" else { return nil }
        return Int(sign + body, radix: radix)
    }
}
