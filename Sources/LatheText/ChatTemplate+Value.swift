import Foundation

// Values inside the interpreter, with Python's semantics where templates can see them: `str()`
// and `repr()` formatting (`None`, `True`, `[1, 'a']`, `1e-05`), truthiness, equality across
// int/float/bool, ordering, and `json.dumps` as transformers' `tojson` calls it.

/// A template value. `undefined` carries the message jinja2's `Undefined` would raise when used.
enum Value {
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    /// Text marked safe (`safe`, `escape`): `+` with plain text HTML-escapes the plain text, as
    /// `markupsafe.Markup` does; everything else treats it as a string.
    case markup(String)
    case list([Value])
    case tuple([Value])
    case dict(JinjaDict)
    /// A generator (`map`, `select` …) or a dict view (`items()`, `keys()`, `values()`).
    case iterator(JinjaIterator)
    case namespace(JinjaNamespace)
    case function(JinjaFunction)
    /// The `loop` variable of a `for` body.
    case loop(JinjaLoop)

    static func undefinedName(_ name: String) -> Value { .undefined("'\(name)' is undefined") }

    var isUndefined: Bool { if case .undefined = self { true } else { false } }

    /// Markup as the string it is; other values unchanged.
    var plain: Value { if case .markup(let s) = self { .string(s) } else { self } }

    /// The text of a string or markup.
    var text: String? {
        switch self {
        case .string(let s), .markup(let s): s
        default: nil
        }
    }

    /// Python's type name, for error messages.
    var typeName: String {
        switch self {
        case .undefined: "Undefined"
        case .none: "NoneType"
        case .bool: "bool"
        case .int: "int"
        case .double: "float"
        case .string: "str"
        case .markup: "Markup"
        case .list: "list"
        case .tuple: "tuple"
        case .dict: "dict"
        case .iterator(let it): it.typeName
        case .namespace: "Namespace"
        case .function(let f): f.isMacro ? "Macro" : "function"
        case .loop: "LoopContext"
        }
    }

    /// Python's truthiness.
    var isTruthy: Bool {
        switch self {
        case .undefined, .none: false
        case .bool(let b): b
        case .int(let i): i != 0
        case .double(let d): d != 0
        case .string(let s), .markup(let s): !s.isEmpty
        case .list(let a), .tuple(let a): !a.isEmpty
        case .dict(let d): !d.isEmpty
        case .iterator(let it): !it.isView || !it.items.isEmpty
        case .namespace, .function, .loop: true
        }
    }

    /// The elements of a list or tuple.
    var sequence: [Value]? {
        switch self {
        case .list(let a), .tuple(let a): a
        default: nil
        }
    }

    init(_ v: JinjaValue) {
        switch v {
        case .none: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .list(a.map(Value.init))
        case .object(let members):
            var d = JinjaDict()
            for (k, v) in members { d[k] = Value(v) }
            self = .dict(d)
        }
    }

    init(_ c: JinjaConstant) {
        switch c {
        case .none: self = .none
        case .bool(let b): self = .bool(b)
        case .integer(let i): self = .int(i)
        case .float(let d): self = .double(d)
        case .string(let s): self = .string(s)
        }
    }
}

/// A dict key as Python hashes it: `1`, `1.0` and `True` are the same key; text by code points.
enum JinjaKey: Hashable {
    case text([UInt8])
    case int(Int)
    case double(UInt64)
    case none

    init?(_ v: Value) {
        switch v {
        case .string(let s), .markup(let s): self = .text(Array(s.utf8))
        case .int(let i): self = .int(i)
        case .bool(let b): self = .int(b ? 1 : 0)
        case .double(let d):
            if let i = Int(exactly: d) { self = .int(i) } else { self = .double(d.bitPattern) }
        case .none: self = .none
        default: return nil
        }
    }
}

/// A Python dict in insertion order; keys are strings, numbers or `None`.
struct JinjaDict {
    /// The keys as first inserted.
    private(set) var keys: [Value] = []
    private var storage: [JinjaKey: Value] = [:]

    var count: Int { keys.count }
    var isEmpty: Bool { keys.isEmpty }
    var values: [Value] { keys.map { storage[JinjaKey($0)!]! } }
    var items: [(key: Value, value: Value)] { keys.map { ($0, storage[JinjaKey($0)!]!) } }
    /// The keys that are strings, for namespaces (whose attributes are always strings).
    var stringKeys: [String] { keys.compactMap(\.text) }

    subscript(key: String) -> Value? {
        get { storage[.text(Array(key.utf8))] }
        set { self[.string(key)] = newValue }
    }

    /// The value of a key; nil when absent or when the key cannot be a dict key.
    subscript(key: Value) -> Value? {
        get { JinjaKey(key).flatMap { storage[$0] } }
        set {
            guard let k = JinjaKey(key) else { return }
            if let newValue {
                if storage.updateValue(newValue, forKey: k) == nil { keys.append(key.plain) }
            } else if storage.removeValue(forKey: k) != nil {
                keys.removeAll { JinjaKey($0) == k }
            }
        }
    }
}

/// A generator (single use: iterating it consumes it; no `len`; always true) or a dict view
/// (`dict_items`, `dict_keys`, `dict_values`: reusable, sized).
final class JinjaIterator {
    let typeName: String
    let isView: Bool
    let items: [Value]
    private var position = 0

    init(generator items: [Value], typeName: String = "generator") {
        self.items = items
        self.typeName = typeName
        isView = false
    }

    init(view items: [Value], typeName: String) {
        self.items = items
        self.typeName = typeName
        isView = true
    }

    /// The elements not consumed yet, consuming them.
    func drain() -> [Value] {
        if isView { return items }
        defer { position = items.count }
        return Array(items[position...])
    }

    /// The next element (consuming it for a generator).
    func next() -> Value? {
        if isView { return items.first }
        guard position < items.count else { return nil }
        defer { position += 1 }
        return items[position]
    }
}

/// jinja2's `namespace()`: the one mutable object templates have (`{% set ns.x = … %}`).
final class JinjaNamespace {
    var attributes: JinjaDict
    init(_ attributes: JinjaDict) { self.attributes = attributes }
}

/// A function a template can call: a global (`range`, `raise_exception`), a macro, or a bound
/// method (`message.get`, `text.strip`).
final class JinjaFunction {
    let name: String
    let isMacro: Bool
    let call: (JinjaInterpreter, JinjaCallArguments) throws(JinjaRuntimeError) -> Value

    init(_ name: String, isMacro: Bool = false, _ call: @escaping (JinjaInterpreter, JinjaCallArguments) throws(JinjaRuntimeError) -> Value) {
        self.name = name
        self.isMacro = isMacro
        self.call = call
    }
}

/// The state behind `loop.index`, `loop.first`, `loop.cycle(…)` …
final class JinjaLoop {
    let items: [Value]
    var index0 = 0
    init(_ items: [Value]) { self.items = items }

    func attribute(_ name: String) -> Value {
        let n = items.count, i = index0
        switch name {
        case "index": return .int(i + 1)
        case "index0": return .int(i)
        case "revindex": return .int(n - i)
        case "revindex0": return .int(n - i - 1)
        case "first": return .bool(i == 0)
        case "last": return .bool(i == n - 1)
        case "length": return .int(n)
        case "depth": return .int(1)
        case "depth0": return .int(0)
        case "previtem": return i > 0 ? items[i - 1] : .undefined("there is no previous item")
        case "nextitem": return i < n - 1 ? items[i + 1] : .undefined("there is no next item")
        case "cycle":
            return .function(JinjaFunction("loop.cycle") { _, args throws(JinjaRuntimeError) in
                guard !args.positional.isEmpty else { throw .type("no items for cycling given") }
                return args.positional[i % args.positional.count]
            })
        default: return .undefined("'LoopContext' object has no attribute '\(name)'")
        }
    }
}

/// Evaluated arguments of a call.
struct JinjaCallArguments {
    var positional: [Value] = []
    var keyword: [(name: String, value: Value)] = []
}

// MARK: - Python formatting

/// Python's `repr(float)`: the shortest digits that round-trip, fixed notation for decimal
/// exponents -4 ... 15, else `1e-05` / `1.5e+16` (at least two exponent digits).
func pythonFloatRepr(_ x: Double) -> String {
    if x.isNaN { return "nan" }
    if x.isInfinite { return x < 0 ? "-inf" : "inf" }
    if x == 0 { return x.sign == .minus ? "-0.0" : "0.0" }
    // Swift's description also gives the shortest round-tripping digits; only the layout differs.
    let text = "\(x.magnitude)"
    var mantissa = Substring(text)
    var exponent = 0
    if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
        mantissa = text[..<e]
        exponent = Int(text[text.index(after: e)...])!
    }
    var digits = ""
    var pointAt = 0  // value = 0.DIGITS × 10^pointAt
    if let dot = mantissa.firstIndex(of: ".") {
        let intPart = mantissa[..<dot], fracPart = mantissa[mantissa.index(after: dot)...]
        digits = String(intPart) + fracPart
        pointAt = intPart.count
    } else {
        digits = String(mantissa)
        pointAt = mantissa.count
    }
    pointAt += exponent
    while digits.hasPrefix("0") && digits.count > 1 { digits.removeFirst(); pointAt -= 1 }
    while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
    let sign = x < 0 ? "-" : ""
    let sci = pointAt - 1
    if sci >= -4 && sci < 16 {
        if pointAt <= 0 { return sign + "0." + String(repeating: "0", count: -pointAt) + digits }
        if pointAt >= digits.count { return sign + digits + String(repeating: "0", count: pointAt - digits.count) + ".0" }
        let k = digits.index(digits.startIndex, offsetBy: pointAt)
        return sign + digits[..<k] + "." + digits[k...]
    }
    let rest = digits.dropFirst()
    let e = String(abs(sci))
    return sign + String(digits.first!) + (rest.isEmpty ? "" : "." + rest) + "e" + (sci < 0 ? "-" : "+") + (e.count < 2 ? "0" + e : e)
}

/// Python's `str.isprintable()` for one character (used by `repr`).
private func isPythonPrintable(_ s: Unicode.Scalar) -> Bool {
    if s == " " { return true }
    switch s.properties.generalCategory {
    case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator, .spaceSeparator: return false
    default: return true
    }
}

/// Runs `body` over the UTF-8 bytes of `s` (already contiguous for native strings).
@inline(__always) func withUTF8Bytes<R>(_ s: String, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
    var s = s
    return try s.withUTF8(body)
}

/// The scalar whose UTF-8 encoding starts at `b[i]` (valid UTF-8), and its length.
@inline(__always) func decodeScalar(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> (Unicode.Scalar, Int) {
    let c = UInt32(b[i])
    if c < 0x80 { return (Unicode.Scalar(c)!, 1) }
    if c < 0xE0 { return (Unicode.Scalar((c & 0x1F) << 6 | UInt32(b[i + 1] & 0x3F))!, 2) }
    if c < 0xF0 { return (Unicode.Scalar((c & 0x0F) << 12 | UInt32(b[i + 1] & 0x3F) << 6 | UInt32(b[i + 2] & 0x3F))!, 3) }
    return (Unicode.Scalar((c & 0x07) << 18 | UInt32(b[i + 1] & 0x3F) << 12 | UInt32(b[i + 2] & 0x3F) << 6 | UInt32(b[i + 3] & 0x3F))!, 4)
}

private let hexDigits = Array("0123456789abcdef".utf8)

/// Appends `\` + `prefix` + `v` in `width` lowercase hex digits.
@inline(__always) func appendEscape(_ out: inout [UInt8], _ prefix: UInt8, _ v: UInt32, _ width: Int) {
    out.append(UInt8(ascii: "\\"))
    out.append(prefix)
    for k in stride(from: width - 1, through: 0, by: -1) { out.append(hexDigits[Int((v >> (4 * UInt32(k))) & 0xF)]) }
}

/// Python's `repr(str)`.
func pythonStringRepr(_ s: String) -> String {
    withUTF8Bytes(s) { b in
        var hasSingle = false, hasDouble = false
        for c in b {
            if c == UInt8(ascii: "'") { hasSingle = true } else if c == UInt8(ascii: "\"") { hasDouble = true }
        }
        let quote = hasSingle && !hasDouble ? UInt8(ascii: "\"") : UInt8(ascii: "'")
        var out: [UInt8] = []
        out.reserveCapacity(b.count + 2)
        out.append(quote)
        var i = 0
        while i < b.count {
            let c = b[i]
            guard c >= 0x80 else {
                switch c {
                case quote, UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\")); out.append(c)
                case 0x09: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "t"))
                case 0x0A: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "n"))
                case 0x0D: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "r"))
                default:
                    if c < 0x20 || c == 0x7F { appendEscape(&out, UInt8(ascii: "x"), UInt32(c), 2) } else { out.append(c) }
                }
                i += 1
                continue
            }
            let (scalar, n) = decodeScalar(b, i)
            if isPythonPrintable(scalar) {
                out.append(contentsOf: b[i..<(i + n)])
            } else if scalar.value <= 0xFF {
                appendEscape(&out, UInt8(ascii: "x"), scalar.value, 2)
            } else if scalar.value <= 0xFFFF {
                appendEscape(&out, UInt8(ascii: "u"), scalar.value, 4)
            } else {
                appendEscape(&out, UInt8(ascii: "U"), scalar.value, 8)
            }
            i += n
        }
        out.append(quote)
        return String(decoding: out, as: UTF8.self)
    }
}

/// Bytes left for printing or serialising one value: a list holding the same long string a
/// million times is small in memory but not when printed.
final class TextBudget {
    private var remaining: Int
    init(_ bytes: Int = JinjaLimits.textBytes) { remaining = bytes }

    func spend(_ bytes: Int) throws(JinjaRuntimeError) {
        remaining -= bytes
        if remaining < 0 { throw .limit("a printed or serialised value of more than \(JinjaLimits.textBytes) bytes") }
    }
}

extension Value {
    /// Python's `str()`, as `{{ value }}` prints it (undefined prints nothing).
    func pythonString(depth: Int = 0, budget: TextBudget? = nil) throws(JinjaRuntimeError) -> String {
        switch self {
        case .undefined: return ""
        case .string(let s), .markup(let s): return s
        default: return try pythonRepr(depth: depth, budget: budget)
        }
    }

    /// Python's `repr()`.
    func pythonRepr(depth: Int = 0, budget: TextBudget? = nil) throws(JinjaRuntimeError) -> String {
        guard depth < JinjaLimits.valueNesting else { throw JinjaRuntimeError.limit("a value nested more than \(JinjaLimits.valueNesting) deep") }
        let budget = budget ?? TextBudget()
        let text = try reprUnbudgeted(depth: depth, budget: budget)
        try budget.spend(text.utf8.count)
        return text
    }

    private func reprUnbudgeted(depth: Int, budget: TextBudget) throws(JinjaRuntimeError) -> String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return pythonFloatRepr(d)
        case .string(let s): return pythonStringRepr(s)
        case .markup(let s): return "Markup(" + pythonStringRepr(s) + ")"
        case .list(let a):
            var parts: [String] = []
            for v in a { parts.append(try v.pythonRepr(depth: depth + 1, budget: budget)) }
            return "[" + parts.joined(separator: ", ") + "]"
        case .tuple(let a):
            var parts: [String] = []
            for v in a { parts.append(try v.pythonRepr(depth: depth + 1, budget: budget)) }
            return "(" + parts.joined(separator: ", ") + (a.count == 1 ? ",)" : ")")
        case .dict(let d):
            var parts: [String] = []
            for (k, v) in d.items {
                parts.append((try k.pythonRepr(depth: depth + 1, budget: budget)) + ": " + (try v.pythonRepr(depth: depth + 1, budget: budget)))
            }
            return "{" + parts.joined(separator: ", ") + "}"
        case .iterator(let it):
            guard it.isView else { return "<generator object>" }
            return it.typeName + "(" + (try Value.list(it.items).pythonRepr(depth: depth + 1, budget: budget)) + ")"
        case .namespace(let ns):
            return "<Namespace " + (try Value.dict(ns.attributes).pythonRepr(depth: depth + 1, budget: budget)) + ">"
        case .function(let f):
            return f.isMacro ? "<Macro '\(f.name)'>" : "<function \(f.name)>"
        case .loop(let l):
            return "<LoopContext \(l.index0 + 1)/\(l.items.count)>"
        }
    }
}

// MARK: - Equality and order

/// UTF-8 equality: Python compares code points, never canonical equivalents as Swift's `==` does.
func sameText(_ a: String, _ b: String) -> Bool {
    withUTF8Bytes(a) { x in
        withUTF8Bytes(b) { y in x.count == y.count && (x.isEmpty || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0) }
    }
}

/// Python's `needle in haystack` for strings: a linear-time (Knuth-Morris-Pratt) byte search;
/// UTF-8 matches always fall on whole characters.
func textContains(_ haystack: String, _ needle: String) -> Bool {
    if needle.isEmpty { return true }
    return withUTF8Bytes(haystack) { h in
        withUTF8Bytes(needle) { n in
            guard h.count >= n.count else { return false }
            var fail = [Int](repeating: 0, count: n.count)
            var k = 0
            for i in 1..<n.count {
                while k > 0 && n[i] != n[k] { k = fail[k - 1] }
                if n[i] == n[k] { k += 1 }
                fail[i] = k
            }
            k = 0
            for c in h {
                while k > 0 && c != n[k] { k = fail[k - 1] }
                if c == n[k] { k += 1 }
                if k == n.count { return true }
            }
            return false
        }
    }
}

extension Value {
    /// Python's `==` (1 == 1.0 == True; lists and dicts element by element).
    func pythonEquals(_ other: Value, depth: Int = 0) throws(JinjaRuntimeError) -> Bool {
        guard depth < JinjaLimits.valueNesting else { throw JinjaRuntimeError.limit("a value nested more than \(JinjaLimits.valueNesting) deep") }
        switch (plain, other.plain) {
        case (.undefined, .undefined), (.none, .none): return true
        case let (.string(a), .string(b)): return sameText(a, b)
        case let (.iterator(a), .iterator(b)):
            if a === b { return true }
            guard a.isView, b.isView, a.typeName == b.typeName else { return false }
            return try Value.list(a.items).pythonEquals(.list(b.items), depth: depth + 1)
        case let (.list(a), .list(b)), let (.tuple(a), .tuple(b)):
            guard a.count == b.count else { return false }
            for (x, y) in zip(a, b) where !(try x.pythonEquals(y, depth: depth + 1)) { return false }
            return true
        case let (.dict(a), .dict(b)):
            guard a.count == b.count else { return false }
            for (k, v) in a.items {
                guard let w = b[k], try v.pythonEquals(w, depth: depth + 1) else { return false }
            }
            return true
        case let (.namespace(a), .namespace(b)): return a === b
        case let (.function(a), .function(b)): return a === b
        case let (.loop(a), .loop(b)): return a === b
        default:
            if let x = numericValue, let y = other.numericValue {
                if case .int(let i) = x, case .int(let j) = y { return i == j }
                return x.asDouble == y.asDouble
            }
            return false
        }
    }

    /// The value as a number if it is an int, float or bool (Python's bool is an int).
    var numericValue: Value? {
        switch self {
        case .int, .double: self
        case .bool(let b): .int(b ? 1 : 0)
        default: nil
        }
    }

    var asDouble: Double {
        switch self {
        case .int(let i): Double(i)
        case .double(let d): d
        case .bool(let b): b ? 1 : 0
        default: .nan
        }
    }

    /// Python's `<`: numbers, strings by code point, lists and tuples element by element.
    func pythonLess(_ other: Value, op: String = "<", depth: Int = 0) throws(JinjaRuntimeError) -> Bool {
        guard depth < JinjaLimits.valueNesting else { throw JinjaRuntimeError.limit("a value nested more than \(JinjaLimits.valueNesting) deep") }
        if let x = numericValue, let y = other.numericValue {
            if case .int(let i) = x, case .int(let j) = y { return i < j }
            return x.asDouble < y.asDouble
        }
        switch (plain, other.plain) {
        case let (.string(a), .string(b)):
            return a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
        case let (.list(a), .list(b)), let (.tuple(a), .tuple(b)):
            for (x, y) in zip(a, b) where !(try x.pythonEquals(y, depth: depth + 1)) {
                return try x.pythonLess(y, op: op, depth: depth + 1)
            }
            return a.count < b.count
        default:
            if case .undefined(let message) = self { throw JinjaRuntimeError.undefined(message) }
            if case .undefined(let message) = other { throw JinjaRuntimeError.undefined(message) }
            throw JinjaRuntimeError.type("'\(op)' not supported between instances of '\(typeName)' and '\(other.typeName)'")
        }
    }
}

// MARK: - JSON

/// `json.dumps(value, ensure_ascii=False, indent=…, separators=…, sort_keys=…)`, as
/// transformers' `tojson` filter calls it.
struct PythonJSONDumper {
    var indent: String?
    var itemSeparator: String
    var keySeparator: String
    var sortKeys: Bool
    let budget = TextBudget()

    init(indent: String? = nil, separators: (String, String)? = nil, sortKeys: Bool = false) {
        self.indent = indent
        (itemSeparator, keySeparator) = separators ?? (indent == nil ? ", " : ",", ": ")
        self.sortKeys = sortKeys
    }

    var ensureASCII = false

    static func quoted(_ s: String, ensureASCII: Bool = false) -> String {
        withUTF8Bytes(s) { b in
            var out: [UInt8] = []
            out.reserveCapacity(b.count + 2)
            out.append(UInt8(ascii: "\""))
            var i = 0
            while i < b.count {
                let c = b[i]
                if c >= 0x80 {
                    let (scalar, n) = decodeScalar(b, i)
                    if ensureASCII {
                        if scalar.value > 0xFFFF {
                            let v = scalar.value - 0x10000
                            appendEscape(&out, UInt8(ascii: "u"), 0xD800 + (v >> 10), 4)
                            appendEscape(&out, UInt8(ascii: "u"), 0xDC00 + (v & 0x3FF), 4)
                        } else {
                            appendEscape(&out, UInt8(ascii: "u"), scalar.value, 4)
                        }
                    } else {
                        out.append(contentsOf: b[i..<(i + n)])
                    }
                    i += n
                    continue
                }
                switch c {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\")); out.append(c)
                case 0x0A: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "n"))
                case 0x0D: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "r"))
                case 0x09: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "t"))
                case 0x08: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "b"))
                case 0x0C: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "f"))
                default:
                    if c < 0x20 || (ensureASCII && c == 0x7F) { appendEscape(&out, UInt8(ascii: "u"), UInt32(c), 4) } else { out.append(c) }
                }
                i += 1
            }
            out.append(UInt8(ascii: "\""))
            return String(decoding: out, as: UTF8.self)
        }
    }

    func dump(_ v: Value, level: Int = 0) throws(JinjaRuntimeError) -> String {
        guard level < JinjaLimits.valueNesting else { throw JinjaRuntimeError.limit("a value nested more than \(JinjaLimits.valueNesting) deep") }
        let text = try dumpUnbudgeted(v, level: level)
        try budget.spend(text.utf8.count + (indent?.utf8.count ?? 0) * (level + 1))
        return text
    }

    private func dumpUnbudgeted(_ v: Value, level: Int) throws(JinjaRuntimeError) -> String {
        switch v {
        case .none: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d):
            if d.isNaN { return "NaN" }
            if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
            return pythonFloatRepr(d)
        case .string(let s), .markup(let s): return Self.quoted(s, ensureASCII: ensureASCII)
        case .list(let a), .tuple(let a):
            if a.isEmpty { return "[]" }
            var parts: [String] = []
            for x in a { parts.append(try dump(x, level: level + 1)) }
            return wrap("[", parts, "]", level)
        case .dict(let d):
            if d.isEmpty { return "{}" }
            var items = d.items
            if sortKeys {
                // Insertion sort: the comparison can fail (keys of mixed types), as in Python.
                for i in 1..<max(1, items.count) {
                    var j = i
                    while j > 0, try items[j].key.pythonLess(items[j - 1].key) {
                        items.swapAt(j, j - 1)
                        j -= 1
                    }
                }
            }
            var parts: [String] = []
            for (k, x) in items {
                let key: String
                switch k {
                case .string(let t), .markup(let t): key = t
                case .int(let i): key = String(i)
                case .double(let d): key = d.isNaN ? "NaN" : d.isInfinite ? (d < 0 ? "-Infinity" : "Infinity") : pythonFloatRepr(d)
                case .bool(let b): key = b ? "true" : "false"
                default: key = "null"
                }
                parts.append(Self.quoted(key, ensureASCII: ensureASCII) + keySeparator + (try dump(x, level: level + 1)))
            }
            return wrap("{", parts, "}", level)
        case .undefined, .namespace, .function, .loop, .iterator:
            throw JinjaRuntimeError.type("Object of type \(v.typeName) is not JSON serializable")
        }
    }

    private func wrap(_ open: String, _ parts: [String], _ close: String, _ level: Int) -> String {
        guard let indent else { return open + parts.joined(separator: itemSeparator) + close }
        let inner = "\n" + String(repeating: indent, count: level + 1)
        return open + inner + parts.joined(separator: itemSeparator + inner) + "\n" + String(repeating: indent, count: level) + close
    }
}
