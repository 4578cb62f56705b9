import Foundation

/// The normalisation stage (HF `normalizers`), applied to the text between added tokens.
public indirect enum Normalizer: Sendable {
    /// BERT's: `cleanText` drops control characters and turns whitespace into spaces;
    /// `handleChineseCharacters` puts spaces around CJK ideographs; `stripAccents` decomposes
    /// (NFD) and drops non-spacing marks; `lowercase` maps each character to lower case.
    case bert(cleanText: Bool, handleChineseCharacters: Bool, stripAccents: Bool, lowercase: Bool)
    case lowercase
    case nfc, nfd, nfkc, nfkd
    /// Drops non-spacing marks (use after NFD).
    case stripAccents
    /// Removes leading and/or trailing whitespace.
    case strip(left: Bool, right: Bool)
    /// Replaces every occurrence of a literal string.
    case replace(pattern: String, content: String)
    /// Puts a string in front of non-empty text.
    case prepend(String)
    case sequence([Normalizer])

    public func callAsFunction(_ text: String) -> String { apply(text) }

    func apply(_ text: String) -> String {
        switch self {
        case .bert(let clean, let chinese, let strip, let lower):
            var scalars = String.UnicodeScalarView()
            for c in text.unicodeScalars {
                if clean {
                    if c.value == 0 || c.value == 0xFFFD || c.isBertControl { continue }
                    if c.isSpace { scalars.append(" "); continue }
                }
                if chinese, c.isCJKIdeograph {
                    scalars.append(" ")
                    scalars.append(c)
                    scalars.append(" ")
                } else {
                    scalars.append(c)
                }
            }
            var s = String(scalars)
            if strip { s = Normalizer.stripAccents.apply(s.decomposedStringWithCanonicalMapping) }
            if lower { s = Normalizer.lowercase.apply(s) }
            return s
        case .lowercase:
            var out = String.UnicodeScalarView()
            for c in text.unicodeScalars {
                if c.value < 128 {
                    out.append(c.value >= 0x41 && c.value <= 0x5A ? Unicode.Scalar(c.value + 32)! : c)
                } else {
                    out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
                }
            }
            return String(out)
        case .nfc: return text.precomposedStringWithCanonicalMapping
        case .nfd: return text.decomposedStringWithCanonicalMapping
        case .nfkc: return text.precomposedStringWithCompatibilityMapping
        case .nfkd: return text.decomposedStringWithCompatibilityMapping
        case .stripAccents:
            var out = String.UnicodeScalarView()
            for c in text.unicodeScalars where c.value < 0x300 || c.properties.generalCategory != .nonspacingMark {
                out.append(c)
            }
            return String(out)
        case .strip(let left, let right):
            var scalars = Substring(text).unicodeScalars
            if left { while let f = scalars.first, f.isSpace { scalars.removeFirst() } }
            if right { while let l = scalars.last, l.isSpace { scalars.removeLast() } }
            return String(String.UnicodeScalarView(scalars))
        case .replace(let pattern, let content):
            guard !pattern.isEmpty else { return text }
            return replacingLiteral(text, pattern, content)
        case .prepend(let prefix):
            return text.isEmpty ? text : prefix + text
        case .sequence(let list):
            return list.reduce(text) { $1.apply($0) }
        }
    }
}

/// `text` with each occurrence of `pattern` replaced, scanning by Unicode scalars (not by
/// grapheme clusters, as `String.replacingOccurrences` would).
func replacingLiteral(_ text: String, _ pattern: String, _ content: String) -> String {
    let p = Array(pattern.unicodeScalars)
    let s = Array(text.unicodeScalars)
    var out = String.UnicodeScalarView()
    var i = 0
    while i < s.count {
        if i + p.count <= s.count, s[i] == p[0], (1..<p.count).allSatisfy({ s[i + $0] == p[$0] }) {
            out.append(contentsOf: content.unicodeScalars)
            i += p.count
        } else {
            out.append(s[i])
            i += 1
        }
    }
    return String(out)
}

extension Unicode.Scalar {
    /// BERT's control characters: general category C* other than tab, newline and return.
    var isBertControl: Bool {
        if value == 0x09 || value == 0x0A || value == 0x0D { return false }
        switch properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }

    /// The CJK ideograph blocks BERT splits around (the ranges of HF's `is_chinese_char`).
    var isCJKIdeograph: Bool {
        switch value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F,
             0x2B740...0x2B81F, 0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F: true
        default: false
        }
    }
}
