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
            var out = UTF8Builder(capacity: text.utf8.count)
            for c in text.unicodeScalars {
                if clean {
                    if c.value == 0 || c.value == 0xFFFD || c.isBertControl { continue }
                    if c.isSpace { out.append(" "); continue }
                }
                if chinese, c.isCJKIdeograph {
                    out.append(" ")
                    out.append(c)
                    out.append(" ")
                } else {
                    out.append(c)
                }
            }
            var s = out.string
            if strip { s = Normalizer.stripAccents.apply(s.decomposedStringWithCanonicalMapping) }
            if lower { s = Normalizer.lowercase.apply(s) }
            return s
        case .lowercase:
            var out = UTF8Builder(capacity: text.utf8.count)
            for c in text.unicodeScalars {
                if c.value < 128 {
                    out.bytes.append(UInt8(c.value >= 0x41 && c.value <= 0x5A ? c.value + 32 : c.value))
                } else {
                    for l in c.properties.lowercaseMapping.unicodeScalars { out.append(l) }
                }
            }
            return out.string
        case .nfc: return text.precomposedStringWithCanonicalMapping
        case .nfd: return text.decomposedStringWithCanonicalMapping
        case .nfkc: return text.precomposedStringWithCompatibilityMapping
        case .nfkd: return text.decomposedStringWithCompatibilityMapping
        case .stripAccents:
            var out = UTF8Builder(capacity: text.utf8.count)
            for c in text.unicodeScalars where c.value < 0x300 || c.properties.generalCategory != .nonspacingMark {
                out.append(c)
            }
            return out.string
        case .strip(let left, let right):
            var scalars = Substring(text).unicodeScalars
            if left { while let f = scalars.first, f.isSpace { scalars.removeFirst() } }
            if right { while let l = scalars.last, l.isSpace { scalars.removeLast() } }
            return makeString(scalars)
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

/// `text` with each occurrence of `pattern` replaced. Works on UTF-8 bytes: a valid UTF-8
/// pattern can only match at character boundaries, and unlike `String.replacingOccurrences`
/// this does not compare grapheme clusters.
func replacingLiteral(_ text: String, _ pattern: String, _ content: String) -> String {
    String(decoding: replacingBytes(Array(text.utf8), Array(pattern.utf8), Array(content.utf8)), as: UTF8.self)
}

/// Builds a string from scalars through a UTF-8 buffer (appending to a
/// `String.UnicodeScalarView` one scalar at a time can copy the whole string each time).
struct UTF8Builder {
    var bytes: [UInt8] = []
    init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }
    @inline(__always) mutating func append(_ c: Unicode.Scalar) { forEachUTF8Byte(c) { bytes.append($0) } }
    var string: String { String(decoding: bytes, as: UTF8.self) }
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

/// A string from scalars.
func makeString(_ scalars: some Sequence<Unicode.Scalar>) -> String {
    var b = UTF8Builder(capacity: scalars.underestimatedCount)
    for c in scalars { b.append(c) }
    return b.string
}
