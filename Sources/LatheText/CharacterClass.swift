/// The classes the pre-tokenizer regexes test: `\p{L}` (general category L*), `\p{N}` (N*),
/// `\s` (the White_Space property, as Oniguruma and Rust's `regex` define it) and the rest.
enum CharacterClass: UInt8 {
    case letter, number, whitespace, other
}

/// ASCII classes, indexed by code point.
private let asciiClasses: [CharacterClass] = (0..<128).map { c -> CharacterClass in
    switch c {
    case 0x41...0x5A, 0x61...0x7A: .letter
    case 0x30...0x39: .number
    case 0x09...0x0D, 0x20: .whitespace
    default: .other
    }
}

extension Unicode.Scalar {
    @inline(__always) var characterClass: CharacterClass {
        if value < 128 { return asciiClasses[Int(value)] }
        return nonASCIIClass
    }

    @inline(never) var nonASCIIClass: CharacterClass {
        let p = properties
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return p.isWhitespace ? .whitespace : .other
        }
    }

    @inline(__always) var isLetter: Bool { characterClass == .letter }
    @inline(__always) var isNumber: Bool { characterClass == .number }
    @inline(__always) var isSpace: Bool { characterClass == .whitespace }

    /// Unicode general category P* (Rust's `char::is_punctuation`).
    var isUnicodePunctuation: Bool {
        switch properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: true
        default: false
        }
    }

    /// ASCII punctuation and symbols (`!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~`), Rust's
    /// `is_ascii_punctuation`.
    var isASCIIPunctuation: Bool {
        switch value {
        case 0x21...0x2F, 0x3A...0x40, 0x5B...0x60, 0x7B...0x7E: true
        default: false
        }
    }
}

/// GPT-2's map from bytes to printable characters, so byte-level tokens can be written as
/// strings: the printable bytes `!`…`~`, `¡`…`¬` and `®`…`ÿ` stand for themselves, the other 68
/// bytes (controls, space, DEL, NBSP, soft hyphen) take U+0100, U+0101, … in byte order.
/// A space is therefore "Ġ" (U+0120) and a newline "Ċ" (U+010A).
public enum ByteLevel {
    /// `characters[b]` is the character that stands for byte `b`.
    public static let characters: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// The byte a character stands for, or nil if it is not one of the 256.
    public static func byte(for c: Unicode.Scalar) -> UInt8? {
        let v = c.value
        if v < 256 {
            if (0x21...0x7E).contains(v) || (0xA1...0xAC).contains(v) || (0xAE...0xFF).contains(v) { return UInt8(v) }
            return nil
        }
        if v < 256 + 68 { return shiftedBytes[Int(v - 256)] }
        return nil
    }

    private static let shiftedBytes: [UInt8] = (0..<256).compactMap { b in
        characters[b].value >= 256 ? UInt8(b) : nil
    }

    /// The bytes a token string stands for, or nil if some character is not in the table.
    public static func bytes(of token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.unicodeScalars.count)
        for c in token.unicodeScalars {
            guard let b = byte(for: c) else { return nil }
            out.append(b)
        }
        return out
    }

    /// The token string for raw bytes.
    public static func string(of bytes: some Sequence<UInt8>) -> String {
        var s = UTF8Builder()
        for b in bytes { s.append(characters[Int(b)]) }
        return s.string
    }
}
