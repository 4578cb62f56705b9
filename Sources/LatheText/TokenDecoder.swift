/// The decoding stage (HF `decoders`): turns the tokens' strings back into text. Each step
/// maps the list of tokens to a new list, as HF's `decode_chain` does; tokens are kept as
/// UTF-8 bytes so byte-level and byte-fallback pieces of one character can sit in different
/// tokens.
public indirect enum TokenDecoder: Sendable {
    /// GPT-2's byte-level tokens back to bytes (a token with a character outside the table
    /// keeps its own UTF-8 bytes); joins everything into one token.
    case byteLevel
    /// `<0xNN>` tokens back to bytes. HF replaces a run that is not valid UTF-8 with one
    /// U+FFFD per byte token, which `decode` does too.
    case byteFallback
    /// Joins all tokens into one.
    case fuse
    /// Removes up to `start` leading and `stop` trailing `content` characters from each token.
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    /// Replaces a literal string in each token.
    case replace(pattern: String, content: String)
    /// SentencePiece: "▁" back to spaces; in the first token (unless the scheme is `never`)
    /// the "▁"s are dropped.
    case metaspace(replacement: Unicode.Scalar, prependScheme: PrependScheme)
    /// WordPiece: tokens after the first get a space in front unless they start with `prefix`
    /// (which is removed); `cleanup` removes the spaces before punctuation and contractions.
    case wordPiece(prefix: String, cleanup: Bool)
    /// Subword-nmt style: `suffix` marks the end of a word and becomes a space.
    case bpe(suffix: String)
    case sequence([TokenDecoder])

    /// Applies the decoder to the tokens. `exact` reproduces HF's replacement of invalid
    /// byte-fallback runs; without it bytes are passed through (for streaming).
    func decodeChain(_ tokens: [[UInt8]], exact: Bool) -> [[UInt8]] {
        switch self {
        case .byteLevel:
            var out: [UInt8] = []
            for t in tokens {
                let start = out.count
                var ok = true
                for c in String(decoding: t, as: UTF8.self).unicodeScalars {
                    guard let b = ByteLevel.byte(for: c) else { ok = false; break }
                    out.append(b)
                }
                if !ok {
                    out.removeSubrange(start...)
                    out.append(contentsOf: t)
                }
            }
            return [out]
        case .byteFallback:
            var out: [[UInt8]] = []
            var run: [UInt8] = []
            func flush() {
                guard !run.isEmpty else { return }
                if !exact || isValidUTF8(run) {
                    out.append(run)
                } else {
                    out.append(contentsOf: Array(repeating: Array("\u{FFFD}".utf8), count: run.count))
                }
                run.removeAll()
            }
            for t in tokens {
                if let b = byteFallbackValue(t) { run.append(b) } else { flush(); out.append(t) }
            }
            flush()
            return out
        case .fuse:
            return [tokens.flatMap { $0 }]
        case .strip(let content, let start, let stop):
            let c = Array(String(content).utf8)
            return tokens.map { t in
                // Stops at the first character that is not `content` (not after `start` steps,
                // which a file may set to anything).
                var lo = 0, hi = t.count, k = 0
                while k < start, hi - lo >= c.count, t[lo..<(lo + c.count)].elementsEqual(c) { lo += c.count; k += 1 }
                k = 0
                while k < stop, hi - lo >= c.count, t[(hi - c.count)..<hi].elementsEqual(c) { hi -= c.count; k += 1 }
                return Array(t[lo..<hi])
            }
        case .replace(let pattern, let content):
            let p = Array(pattern.utf8), r = Array(content.utf8)
            return tokens.map { replacingBytes($0, p, r) }
        case .metaspace(let replacement, let scheme):
            let rep = Array(String(replacement).utf8)
            return tokens.enumerated().map { i, t in
                replacingBytes(t, rep, i == 0 && scheme != .never ? [] : [0x20])
            }
        case .wordPiece(let prefix, let cleanup):
            let p = Array(prefix.utf8)
            return tokens.enumerated().map { i, t in
                var t = t
                if i != 0 {
                    if t.starts(with: p) { t.removeFirst(p.count) } else { t.insert(0x20, at: 0) }
                }
                return cleanup ? wordPieceCleanup(t) : t
            }
        case .bpe(let suffix):
            let s = Array(suffix.utf8)
            return tokens.enumerated().map { i, t in
                replacingBytes(t, s, i == tokens.count - 1 ? [] : [0x20])
            }
        case .sequence(let list):
            return list.reduce(tokens) { $1.decodeChain($0, exact: exact) }
        }
    }
}

/// The byte of a `<0xNN>` token.
func byteFallbackValue(_ t: [UInt8]) -> UInt8? {
    guard t.count == 6, t[0] == 0x3C, t[1] == 0x30, t[2] == 0x78, t[5] == 0x3E,
          let hi = hexValue(t[3]), let lo = hexValue(t[4]) else { return nil }
    return hi << 4 | lo
}

private func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: c - 0x30
    case 0x41...0x46: c - 0x41 + 10
    case 0x61...0x66: c - 0x61 + 10
    default: nil
    }
}

func isValidUTF8(_ bytes: [UInt8]) -> Bool {
    var it = bytes.makeIterator()
    var parser = Unicode.UTF8.ForwardParser()
    while true {
        switch parser.parseScalar(from: &it) {
        case .valid: continue
        case .emptyInput: return true
        case .error: return false
        }
    }
}

func replacingBytes(_ t: [UInt8], _ pattern: [UInt8], _ content: [UInt8]) -> [UInt8] {
    guard !pattern.isEmpty, t.count >= pattern.count else { return t }
    // Most tokens hold no match: find the first before copying anything.
    var i = 0
    while i + pattern.count <= t.count, !(t[i] == pattern[0] && t[i..<(i + pattern.count)].elementsEqual(pattern)) { i += 1 }
    guard i + pattern.count <= t.count else { return t }
    var out = Array(t[..<i])
    out.reserveCapacity(t.count)
    while i < t.count {
        if i + pattern.count <= t.count, t[i] == pattern[0], t[i..<(i + pattern.count)].elementsEqual(pattern) {
            out.append(contentsOf: content)
            i += pattern.count
        } else {
            out.append(t[i])
            i += 1
        }
    }
    return out
}

/// HF's `clean_up_tokenization`: no space before `.`, `?`, `!`, `,`, contractions.
func wordPieceCleanup(_ t: [UInt8]) -> [UInt8] {
    var t = t
    for (a, b) in wordPieceCleanups { t = replacingBytes(t, a, b) }
    return t
}

private let wordPieceCleanups: [([UInt8], [UInt8])] =
    [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
     (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")].map { (Array($0.utf8), Array($1.utf8)) }
