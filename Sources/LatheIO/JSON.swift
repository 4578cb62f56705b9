import Foundation

// A small JSON reader and writer for file headers, config files and reports.
//
// Headers come from untrusted files, so the reader keeps object keys in file order, reports
// duplicate keys, keeps numbers as text (callers decide what an integer is), limits nesting
// depth, and never traps: every malformed input ends in a `JSONParseError`.

/// A parsed JSON value. Objects keep their keys in file order.
public enum JSONValue: Equatable, Sendable {
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    /// The number's text exactly as written.
    case number(String)
    case bool(Bool)
    case null

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)):
            x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case let (.array(x), .array(y)): x == y
        case let (.string(x), .string(y)): x == y
        case let (.number(x), .number(y)): x == y
        case let (.bool(x), .bool(y)): x == y
        case (.null, .null): true
        default: false
        }
    }

    /// A short name of the value's kind, for error messages.
    public var kindName: String {
        switch self {
        case .object: "an object"
        case .array: "an array"
        case .string: "a string"
        case .number: "a number"
        case .bool: "a boolean"
        case .null: "null"
        }
    }

    /// The value as a non-negative integer if it is written as one (no fraction or exponent)
    /// and fits in `Int`; `nil` otherwise.
    public var nonNegativeInt: Int? {
        guard case .number(let text) = self, !text.isEmpty else { return nil }
        var value = 0
        for c in text.utf8 {
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int(c - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            value = s
        }
        return value
    }
}


extension JSONValue {
    /// The value of `key` if this is an object that has it (the first occurrence).
    public subscript(key: String) -> JSONValue? {
        guard case .object(let pairs) = self else { return nil }
        return pairs.first { $0.key == key }?.value
    }

    /// The members of an object in file order, or nil.
    public var objectMembers: [(key: String, value: JSONValue)]? {
        if case .object(let pairs) = self { return pairs }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// A number as `Double` (nil for other kinds or text that is not a number).
    public var doubleValue: Double? {
        if case .number(let text) = self { return Double(text) }
        return nil
    }

    /// A number written as an integer (no fraction or exponent) that fits in `Int`.
    public var intValue: Int? {
        guard case .number(let text) = self, !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) else { return nil }
        return Int(text)
    }

    public var isNull: Bool { self == .null }
}

extension JSONParser {
    /// Parses UTF-8 text.
    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    /// Parses UTF-8 bytes.
    public static func parse(_ data: [UInt8]) throws(JSONParseError) -> JSONValue {
        let result = data.withUnsafeBytes { buffer in
            Result { () throws(JSONParseError) -> JSONValue in try parse(buffer) }
        }
        return try result.get()
    }
}

public struct JSONParseError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public let offset: Int
    public var description: String { "\(message) at byte \(offset)" }
}

/// Parses one JSON value from UTF-8 bytes; whitespace may surround it, nothing else.
public struct JSONParser {
    private let bytes: UnsafeRawBufferPointer
    private var i = 0
    private let maxDepth = 64

    private init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONParseError) -> JSONValue {
        var p = JSONParser(bytes)
        p.skipWhitespace()
        let v = try p.value(depth: 0)
        p.skipWhitespace()
        if p.i != bytes.count { throw p.error("unexpected text after the JSON value") }
        return v
    }

    private func error(_ message: String) -> JSONParseError { JSONParseError(message: message, offset: i) }

    private var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

    private mutating func skipWhitespace() {
        while let c = peek, c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 }
    }

    private mutating func expect(_ c: UInt8) throws(JSONParseError) {
        guard peek == c else {
            throw error(peek == nil ? "unexpected end, expected '\(Character(Unicode.Scalar(c)))'"
                                    : "expected '\(Character(Unicode.Scalar(c)))'")
        }
        i += 1
    }

    private mutating func value(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth < maxDepth else { throw error("nesting deeper than \(maxDepth) levels") }
        guard let c = peek else { throw error("unexpected end, expected a value") }
        switch c {
        case UInt8(ascii: "{"):
            i += 1
            var members: [(key: String, value: JSONValue)] = []
            // Keys are compared by their UTF-8 bytes: Swift's `String` equality is canonical
            // equivalence, under which "\u00e9" and "e\u0301" would be one (duplicate) key.
            var seen = Set<[UInt8]>()
            skipWhitespace()
            if peek == UInt8(ascii: "}") { i += 1; return .object(members) }
            while true {
                skipWhitespace()
                guard peek == UInt8(ascii: "\"") else { throw error("expected a string key") }
                let keyOffset = i
                let key = try string()
                guard seen.insert(Array(key.utf8)).inserted else {
                    throw JSONParseError(message: "duplicate key \"\(key)\"", offset: keyOffset)
                }
                skipWhitespace()
                try expect(UInt8(ascii: ":"))
                skipWhitespace()
                members.append((key, try value(depth: depth + 1)))
                skipWhitespace()
                if peek == UInt8(ascii: ",") { i += 1; continue }
                try expect(UInt8(ascii: "}"))
                return .object(members)
            }
        case UInt8(ascii: "["):
            i += 1
            var items: [JSONValue] = []
            skipWhitespace()
            if peek == UInt8(ascii: "]") { i += 1; return .array(items) }
            while true {
                skipWhitespace()
                items.append(try value(depth: depth + 1))
                skipWhitespace()
                if peek == UInt8(ascii: ",") { i += 1; continue }
                try expect(UInt8(ascii: "]"))
                return .array(items)
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .number(try number())
        default:
            throw error("unexpected character '\(Character(Unicode.Scalar(c)))'")
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let w = UnsafeRawBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
        guard i + w.count <= bytes.count, w.indices.allSatisfy({ bytes[i + $0] == w[$0] }) else {
            throw error("invalid literal")
        }
        i += w.count
    }

    private mutating func number() throws(JSONParseError) -> String {
        let start = i
        func digits(_ p: inout JSONParser) -> Int {
            let s = p.i
            while let c = p.peek, c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") { p.i += 1 }
            return p.i - s
        }
        if peek == UInt8(ascii: "-") { i += 1 }
        let integerStart = i
        let integerDigits = digits(&self)
        guard integerDigits > 0 else { throw error("invalid number") }
        // JSON has no leading zeros ("07" is not a number; "0", "-0" and "0.7" are).
        guard integerDigits == 1 || bytes[integerStart] != UInt8(ascii: "0") else {
            throw JSONParseError(message: "leading zero in a number", offset: integerStart)
        }
        if peek == UInt8(ascii: ".") {
            i += 1
            guard digits(&self) > 0 else { throw error("invalid number") }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            i += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { i += 1 }
            guard digits(&self) > 0 else { throw error("invalid number") }
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard i + 4 <= bytes.count else { throw error("unexpected end in \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw error("invalid \\u escape")
            }
            v = v << 4 | UInt32(d)
            i += 1
        }
        return v
    }

    /// A string starting at the opening quote. The caller has checked the bytes are UTF-8.
    private mutating func string() throws(JSONParseError) -> String {
        try expect(UInt8(ascii: "\""))
        var out: [UInt8] = []
        var runStart = i
        while true {
            guard let c = peek else { throw error("unterminated string") }
            if c == UInt8(ascii: "\"") {
                out.append(contentsOf: bytes[runStart..<i])
                i += 1
                return String(decoding: out, as: UTF8.self)
            }
            if c < 0x20 { throw error("control character in a string") }
            if c != UInt8(ascii: "\\") { i += 1; continue }
            out.append(contentsOf: bytes[runStart..<i])
            i += 1
            guard let e = peek else { throw error("unterminated string") }
            i += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code) {
                    guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw error("unpaired surrogate in \\u escape")
                    }
                    i += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate in \\u escape") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let scalar = Unicode.Scalar(code) else { throw error("unpaired surrogate in \\u escape") }
                out.append(contentsOf: String(Character(scalar)).utf8)
            default:
                throw error("invalid escape '\\\(Character(Unicode.Scalar(e)))'")
            }
            runStart = i
        }
    }
}

/// True when `bytes` are valid UTF-8.
func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
    // Fast path: all ASCII.
    if !bytes.contains(where: { $0 >= 0x80 }) { return true }
    var iterator = bytes.makeIterator()
    var parser = Unicode.UTF8.ForwardParser()
    while true {
        switch parser.parseScalar(from: &iterator) {
        case .valid: continue
        case .emptyInput: return true
        case .error: return false
        }
    }
}

/// Writes JSON compactly, the way serde_json does (so headers match the reference writer).
public enum JSONWriter {
    /// `s` as a JSON string literal: `"` and `\` escaped, control characters as `\n`, `\t`, ...
    /// or `\u00xx`; everything else (including non-ASCII) as is.
    public static func quoted(_ s: String) -> String {
        var out = "\""
        out.reserveCapacity(s.utf8.count + 2)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    public static func intArray(_ xs: [Int]) -> String { "[" + xs.map(String.init).joined(separator: ",") + "]" }

    /// A JSON number: finite values with `digits` decimals (shortest form when nil), `null`
    /// for NaN and infinities (JSON has no spelling for them).
    public static func number(_ x: Double, digits: Int? = nil) -> String {
        guard x.isFinite else { return "null" }
        if let digits { return String(format: "%.\(digits)f", x) }
        return "\(x)"
    }

    /// A flat object from (key, already-encoded value) pairs, keys in the given order.
    public static func object(_ members: [(String, String)]) -> String {
        "{" + members.map { quoted($0.0) + ":" + $0.1 }.joined(separator: ",") + "}"
    }
}

extension JSONWriter {
    /// `value` as JSON text: keys in the value's order, two-space indentation (as Python's
    /// `json.dumps(indent=2)` writes config files), or compact when `indent` is nil. Numbers
    /// are written as their stored text.
    public static func serialize(_ value: JSONValue, indent: Int? = 2) -> String {
        var out = ""
        write(value, indent: indent, level: 0, into: &out)
        return out
    }

    private static func write(_ value: JSONValue, indent: Int?, level: Int, into out: inout String) {
        func newline(_ level: Int) {
            if let indent { out += "\n" + String(repeating: " ", count: indent * level) }
        }
        let separator = indent == nil ? ":" : ": "
        switch value {
        case .object(let members):
            guard !members.isEmpty else { out += "{}"; return }
            out += "{"
            for (i, m) in members.enumerated() {
                if i > 0 { out += "," }
                newline(level + 1)
                out += quoted(m.key) + separator
                write(m.value, indent: indent, level: level + 1, into: &out)
            }
            newline(level)
            out += "}"
        case .array(let items):
            guard !items.isEmpty else { out += "[]"; return }
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                newline(level + 1)
                write(item, indent: indent, level: level + 1, into: &out)
            }
            newline(level)
            out += "]"
        case .string(let s): out += quoted(s)
        case .number(let text): out += text
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        }
    }
}

extension JSONValue {
    /// A JSON number from an integer.
    public static func int(_ x: Int) -> JSONValue { .number(String(x)) }
    /// A JSON number from a double (shortest round-tripping form; `null` when not finite).
    public static func double(_ x: Double) -> JSONValue { x.isFinite ? .number("\(x)") : .null }
}

extension JSONValue {
    /// A JSON number from a float, in the float's own shortest form (`1e-05`, not the double
    /// `9.999999747378752e-06`), so that it reads back as the same float.
    public static func float(_ x: Float) -> JSONValue { x.isFinite ? .number("\(x)") : .null }
}
