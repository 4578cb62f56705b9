// The template source cut into tokens as jinja2's lexer cuts it, with the whitespace control
// Hugging Face turns on (`trim_blocks=True, lstrip_blocks=True`):
//
// - newlines: `\r\n`, `\r` and `\n` all become `\n`, and one final newline is dropped
//   (`keep_trailing_newline=False`);
// - `{%- … -%}`, `{{- … -}}`, `{#- … -#}`: a `-` strips all whitespace on that side;
// - trim_blocks: the first newline after a block or comment tag is removed (`+%}` keeps it);
// - lstrip_blocks: spaces and tabs from the start of a line up to a block or comment tag are
//   removed (`{%+` keeps them), never before `{{`.

/// A token of a template. `pos` is the offset (in Unicode scalars) in the normalised source.
struct JinjaToken {
    enum Kind: Equatable {
        case text(String)
        case variableBegin, variableEnd, blockBegin, blockEnd
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        case op(String)
        case eof
    }
    var kind: Kind
    var pos: Int

    /// How the token reads in an error message.
    var described: String {
        switch kind {
        case .text: "text"
        case .variableBegin: "'{{'"
        case .variableEnd: "'}}'"
        case .blockBegin: "'{%'"
        case .blockEnd: "'%}'"
        case .name(let n): "'\(n)'"
        case .string: "a string"
        case .integer(let i): "'\(i)'"
        case .float(let d): "'\(d)'"
        case .op(let o): "'\(o)'"
        case .eof: "the end of the template"
        }
    }
}

/// jinja2's newline handling: every `\r\n`, `\r` and `\n` becomes `\n`, and one trailing
/// newline is dropped.
func normalizedTemplateSource(_ source: String) -> [Unicode.Scalar] {
    var out: [Unicode.Scalar] = []
    out.reserveCapacity(source.unicodeScalars.count)
    var previousCR = false
    for s in source.unicodeScalars {
        if s == "\n" {
            if !previousCR { out.append("\n") }
            previousCR = false
        } else if s == "\r" {
            out.append("\n")
            previousCR = true
        } else {
            out.append(s)
            previousCR = false
        }
    }
    if out.last == "\n" { out.removeLast() }
    return out
}

/// Python's `str.isspace()`: the characters `\s` matches in Python's regular expressions and
/// `str.strip()` removes.
@inline(__always) func isPythonSpace(_ s: Unicode.Scalar) -> Bool {
    switch s.value {
    case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: true
    default: false
    }
}

struct JinjaLexer {
    let src: [Unicode.Scalar]
    private var pos = 0
    private var tokens: [JinjaToken] = []
    /// jinja2's `line_starting`: the last thing matched ended with a newline (or nothing was).
    private var lineStarting = true

    init(_ src: [Unicode.Scalar]) { self.src = src }

    static func tokenize(_ src: [Unicode.Scalar]) throws(ChatTemplateError) -> [JinjaToken] {
        var lexer = JinjaLexer(src)
        try lexer.run()
        return lexer.tokens
    }

    private func error(_ message: String, at offset: Int) -> ChatTemplateError {
        ChatTemplateError(.syntax, message, source: src, offset: offset)
    }

    private func starts(with s: String, at i: Int) -> Bool {
        var k = i
        for c in s.unicodeScalars {
            guard k < src.count, src[k] == c else { return false }
            k += 1
        }
        return true
    }

    private enum TagKind { case variable, block, comment }

    private mutating func run() throws(ChatTemplateError) {
        while pos < src.count {
            // The next tag start: `{{`, `{%` or `{#`.
            var t = pos
            var kind: TagKind?
            while t + 1 < src.count {
                if src[t] == "{" {
                    switch src[t + 1] {
                    case "{": kind = .variable
                    case "%": kind = .block
                    case "#": kind = .comment
                    default: break
                    }
                    if kind != nil { break }
                }
                t += 1
            }
            guard let kind else {
                emitText(Array(src[pos...]))
                pos = src.count
                break
            }
            var sign: Unicode.Scalar?
            if t + 2 < src.count, src[t + 2] == "-" || src[t + 2] == "+" { sign = src[t + 2] }
            var text = Array(src[pos..<t])
            if sign == "-" {
                while let last = text.last, isPythonSpace(last) { text.removeLast() }
            } else if sign != "+" && kind != .variable {
                text = lstripped(text)
            }
            emitText(text)
            let bodyStart = t + 2 + (sign == nil ? 0 : 1)
            switch kind {
            case .comment:
                try skipComment(from: bodyStart, tagStart: t)
            case .block:
                if let rawEnd = rawBlockStart(at: t) {
                    try lexRaw(from: rawEnd, tagStart: t)
                } else {
                    tokens.append(JinjaToken(kind: .blockBegin, pos: t))
                    pos = bodyStart
                    try lexTag(block: true, tagStart: t)
                }
            case .variable:
                tokens.append(JinjaToken(kind: .variableBegin, pos: t))
                pos = bodyStart
                try lexTag(block: false, tagStart: t)
            }
        }
        tokens.append(JinjaToken(kind: .eof, pos: src.count))
    }

    /// lstrip_blocks: the text without the spaces between its last line start and the tag.
    private func lstripped(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        let lineStart = (text.lastIndex(of: "\n") ?? -1) + 1
        guard lineStart > 0 || lineStarting, lineStart < text.count,
              text[lineStart...].allSatisfy(isPythonSpace) else { return text }
        return Array(text[..<lineStart])
    }

    private mutating func emitText(_ text: [Unicode.Scalar]) {
        guard !text.isEmpty else { return }
        var s = String.UnicodeScalarView()
        s.append(contentsOf: text)
        tokens.append(JinjaToken(kind: .text(String(s)), pos: pos))
    }

    /// Consumes a tag end at `i` and what whitespace control says follows it; returns where the
    /// text resumes.
    private mutating func consumeEnd(at i: Int, length: Int, minus: Bool, plus: Bool, trims: Bool) -> Int {
        var k = i + length
        if minus {
            while k < src.count, isPythonSpace(src[k]) { k += 1 }
        } else if !plus && trims && k < src.count && src[k] == "\n" {
            k += 1
        }
        lineStarting = k > 0 && src[k - 1] == "\n"
        return k
    }

    private mutating func skipComment(from bodyStart: Int, tagStart: Int) throws(ChatTemplateError) {
        var q = bodyStart
        while q + 1 < src.count, !(src[q] == "#" && src[q + 1] == "}") { q += 1 }
        guard q + 1 < src.count else { throw error("missing end of comment tag '#}'", at: tagStart) }
        let marker = q > bodyStart ? src[q - 1] : nil
        pos = consumeEnd(at: q, length: 2, minus: marker == "-", plus: marker == "+", trims: true)
    }

    /// `{% raw %}` (with optional `-`/`+` and spaces) at `i`: the offset after it.
    private func rawBlockStart(at i: Int) -> Int? {
        var k = i + 2
        if k < src.count, src[k] == "-" || src[k] == "+" { k += 1 }
        while k < src.count, isPythonSpace(src[k]) { k += 1 }
        guard starts(with: "raw", at: k) else { return nil }
        k += 3
        while k < src.count, isPythonSpace(src[k]) { k += 1 }
        if starts(with: "-%}", at: k) {
            k += 3
            while k < src.count, isPythonSpace(src[k]) { k += 1 }
            return k
        }
        return starts(with: "%}", at: k) ? k + 2 : nil
    }

    /// The body of `{% raw %}…{% endraw %}` as text.
    private mutating func lexRaw(from start: Int, tagStart: Int) throws(ChatTemplateError) {
        lineStarting = start > 0 && src[start - 1] == "\n"
        var i = start
        while i + 1 < src.count {
            if src[i] == "{" && src[i + 1] == "%" {
                var k = i + 2
                var sign: Unicode.Scalar?
                if k < src.count, src[k] == "-" || src[k] == "+" { sign = src[k]; k += 1 }
                while k < src.count, isPythonSpace(src[k]) { k += 1 }
                if starts(with: "endraw", at: k) {
                    k += 6
                    while k < src.count, isPythonSpace(src[k]) { k += 1 }
                    var endLength = 0, minus = false, plus = false
                    if starts(with: "-%}", at: k) { endLength = 3; minus = true } else if starts(with: "+%}", at: k) { endLength = 3; plus = true } else if starts(with: "%}", at: k) { endLength = 2 }
                    if endLength > 0 {
                        var body = Array(src[start..<i])
                        if sign == "-" {
                            while let last = body.last, isPythonSpace(last) { body.removeLast() }
                        } else if sign != "+" {
                            body = lstripped(body)
                        }
                        pos = start
                        emitText(body)
                        pos = consumeEnd(at: k, length: endLength, minus: minus, plus: plus, trims: true)
                        return
                    }
                }
            }
            i += 1
        }
        throw error("missing end of raw directive '{% endraw %}'", at: tagStart)
    }

    /// The tokens of one `{% … %}` or `{{ … }}` tag, up to and including its end.
    private mutating func lexTag(block: Bool, tagStart: Int) throws(ChatTemplateError) {
        var brackets: [(close: Unicode.Scalar, at: Int)] = []
        while true {
            if brackets.isEmpty {
                if block {
                    if starts(with: "-%}", at: pos) || starts(with: "+%}", at: pos) || starts(with: "%}", at: pos) {
                        let minus = src[pos] == "-", plus = src[pos] == "+"
                        tokens.append(JinjaToken(kind: .blockEnd, pos: pos))
                        pos = consumeEnd(at: pos, length: minus || plus ? 3 : 2, minus: minus, plus: plus, trims: true)
                        return
                    }
                } else if starts(with: "-}}", at: pos) || starts(with: "}}", at: pos) {
                    let minus = src[pos] == "-"
                    tokens.append(JinjaToken(kind: .variableEnd, pos: pos))
                    pos = consumeEnd(at: pos, length: minus ? 3 : 2, minus: minus, plus: false, trims: false)
                    return
                }
            }
            guard pos < src.count else {
                if let open = brackets.last { throw error("unclosed '\(Character(src[open.at]))'", at: open.at) }
                throw error("unexpected end of template: the tag opened here has no '\(block ? "%}" : "}}")'", at: tagStart)
            }
            let c = src[pos]
            if isPythonSpace(c) { pos += 1; continue }
            let start = pos
            if c == "'" || c == "\"" {
                tokens.append(JinjaToken(kind: .string(try lexString()), pos: start))
            } else if c.properties.numericType == .decimal, c.isASCII {
                tokens.append(JinjaToken(kind: try lexNumber(), pos: start))
            } else if c == "_" || c.properties.isAlphabetic {
                var k = pos + 1
                while k < src.count, src[k] == "_" || src[k].properties.isAlphabetic || (src[k].isASCII && src[k].properties.numericType == .decimal) { k += 1 }
                var s = String.UnicodeScalarView()
                s.append(contentsOf: src[pos..<k])
                tokens.append(JinjaToken(kind: .name(String(s)), pos: start))
                pos = k
            } else {
                let two = ["//", "**", "==", "!=", ">=", "<="]
                if let op = two.first(where: { starts(with: $0, at: pos) }) {
                    tokens.append(JinjaToken(kind: .op(op), pos: start))
                    pos += 2
                    continue
                }
                guard "+-/*%~[](){}><=.:|,;".unicodeScalars.contains(c) else {
                    throw error("unexpected character '\(Character(c))' in a tag", at: pos)
                }
                switch c {
                case "(": brackets.append((")", pos))
                case "[": brackets.append(("]", pos))
                case "{": brackets.append(("}", pos))
                case ")", "]", "}":
                    guard let open = brackets.popLast() else { throw error("unexpected '\(Character(c))'", at: pos) }
                    guard open.close == c else { throw error("unexpected '\(Character(c))', expected '\(Character(open.close))'", at: pos) }
                default: break
                }
                tokens.append(JinjaToken(kind: .op(String(Character(c))), pos: start))
                pos += 1
            }
        }
    }

    /// A quoted string, its escapes decoded as Python's `unicode_escape` codec does (which is
    /// what jinja2 applies): unknown escapes keep their backslash.
    private mutating func lexString() throws(ChatTemplateError) -> String {
        let quote = src[pos]
        let start = pos
        var k = pos + 1
        var out = String.UnicodeScalarView()
        func hex(_ count: Int) -> UInt32? {
            guard k + count <= src.count else { return nil }
            var v: UInt32 = 0
            for j in 0..<count {
                let s = src[k + j]
                guard s.isASCII, let d = Int(String(Character(s)), radix: 16) else { return nil }
                v = v * 16 + UInt32(d)
            }
            return v
        }
        while true {
            guard k < src.count else { throw error("unterminated string", at: start) }
            let c = src[k]
            if c == quote { k += 1; break }
            guard c == "\\" else { out.append(c); k += 1; continue }
            guard k + 1 < src.count else { throw error("unterminated string", at: start) }
            let e = src[k + 1]
            k += 2
            switch e {
            case "\n": break
            case "\\": out.append("\\")
            case "'": out.append("'")
            case "\"": out.append("\"")
            case "a": out.append("\u{07}")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "n": out.append("\n")
            case "r": out.append("\r")
            case "t": out.append("\t")
            case "v": out.append("\u{0B}")
            case "0"..."7":
                var v = e.value - 0x30
                var n = 1
                while n < 3, k < src.count, ("0"..."7").contains(src[k]) { v = v * 8 + src[k].value - 0x30; k += 1; n += 1 }
                out.append(Unicode.Scalar(v)!)
            case "x", "u", "U":
                let count = e == "x" ? 2 : e == "u" ? 4 : 8
                guard let v = hex(count) else { throw error("truncated \\\(Character(e)) escape in a string", at: k - 2) }
                guard let s = Unicode.Scalar(v) else { throw error("\\\(Character(e)) escape outside Unicode in a string", at: k - 2) }
                out.append(s)
                k += count
            case "N":
                throw error("\\N{…} escapes are not supported in strings", at: k - 2)
            default:
                // Python keeps unknown escapes; a non-ASCII character after the backslash is
                // first written as its own escape by jinja2 (`backslashreplace`).
                out.append("\\")
                if e.isASCII {
                    out.append(e)
                } else {
                    let digits = String(e.value, radix: 16)
                    let (prefix, width) = e.value <= 0xFF ? ("x", 2) : e.value <= 0xFFFF ? ("u", 4) : ("U", 8)
                    out.append(contentsOf: (prefix + String(repeating: "0", count: width - digits.count) + digits).unicodeScalars)
                }
            }
        }
        pos = k
        return String(out)
    }

    /// Integers (decimal with `_` separators, `0x`, `0o`, `0b`) and floats (`1.5`, `1e3`, `2.5E-3`).
    private mutating func lexNumber() throws(ChatTemplateError) -> JinjaToken.Kind {
        let start = pos
        func isDigit(_ k: Int, radix: Int = 10) -> Bool {
            guard k < src.count, src[k].isASCII else { return false }
            return Int(String(Character(src[k])), radix: radix) != nil
        }
        /// Digits with single `_` between them, from `k`; returns the end and the digits.
        func digits(from k0: Int, radix: Int = 10) -> (end: Int, text: String) {
            var k = k0, text = ""
            while isDigit(k, radix: radix) || (k < src.count && src[k] == "_" && isDigit(k + 1, radix: radix) && k > k0) {
                if src[k] != "_" { text.unicodeScalars.append(src[k]) }
                k += 1
            }
            return (k, text)
        }
        if src[pos] == "0", pos + 1 < src.count, let radix = ["x": 16, "X": 16, "o": 8, "O": 8, "b": 2, "B": 2][Character(src[pos + 1])] {
            var k = pos + 2
            if k < src.count, src[k] == "_" { k += 1 }
            let d = digits(from: k, radix: radix)
            guard !d.text.isEmpty else { throw error("invalid number literal", at: start) }
            guard let v = Int(d.text, radix: radix) else { throw error("integer literal too large", at: start) }
            pos = d.end
            return .integer(v)
        }
        let whole = digits(from: pos)
        var end = whole.end
        var text = whole.text
        var isFloat = false
        if end < src.count, src[end] == ".", isDigit(end + 1) {
            let frac = digits(from: end + 1)
            text += "." + frac.text
            end = frac.end
            isFloat = true
        }
        if end < src.count, src[end] == "e" || src[end] == "E" {
            var k = end + 1
            var sign = ""
            if k < src.count, src[k] == "+" || src[k] == "-" { sign = String(Character(src[k])); k += 1 }
            if isDigit(k) {
                let exp = digits(from: k)
                text += "e" + sign + exp.text
                end = exp.end
                isFloat = true
            }
        }
        pos = end
        if isFloat {
            guard let d = Double(text) else { throw error("invalid number literal", at: start) }
            return .float(d)
        }
        guard let v = Int(text) else { throw error("integer literal too large", at: start) }
        return .integer(v)
    }
}
