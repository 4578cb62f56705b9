/// The pre-tokenizer regexes of the common byte-level BPE vocabularies, as hand-written
/// scanners (Swift's `Regex` is far too slow for this). Each scanner returns exactly the matches
/// the regex would, leftmost first, covering the whole input.
///
/// - `gpt2`: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
///   (GPT-2, RoBERTa, SmolLM2, and every `ByteLevel` pre-tokenizer with `use_regex`).
/// - `llama3(maxDigits: 3)`: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|`
///   ` ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+` (Llama 3).
/// - `llama3(maxDigits: 1)`: the same with `\p{N}` alone (Qwen2, Qwen2.5).
///
/// `\p{L}` is general category L*, `\p{N}` is N*, `\s` is the White_Space property.
public enum SplitPattern: Sendable, Equatable {
    case gpt2
    case llama3(maxDigits: Int)

    public static let qwen2 = SplitPattern.llama3(maxDigits: 1)

    /// The regex (as written in `tokenizer.json`) this pattern stands for, or nil if it is not
    /// one of the known ones. The spellings llama.cpp uses (`(?:'[sS]|'[tT]…)`) are known too.
    public init?(regex: String) {
        let contractionsCI = ["(?i:'s|'t|'re|'ve|'m|'ll|'d)", "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"]
        let gpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
        if regex == gpt2 || regex == gpt2 + "|\\s+" { self = .gpt2; return }
        for c in contractionsCI {
            for (digits, n) in [("\\p{N}{1,3}", 3), ("\\p{N}", 1)] {
                let r = c + "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" + digits
                    + "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
                if regex == r { self = .llama3(maxDigits: n); return }
            }
        }
        return nil
    }

    /// The regex this pattern stands for, as `tokenizer.json` writes it (the spelling
    /// `init(regex:)` reads back; Qwen2's is Llama 3's with `\p{N}` alone).
    public var regex: String {
        switch self {
        case .gpt2:
            return "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
        case .llama3(let maxDigits):
            let digits = maxDigits == 1 ? "\\p{N}" : "\\p{N}{1,\(maxDigits)}"
            return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" + digits
                + "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
        }
    }

    /// Appends the end (exclusive) of each match in `s[range]`, in order; the last is
    /// `range.upperBound` (empty input appends nothing).
    func split(_ s: UnsafeBufferPointer<Unicode.Scalar>, _ range: Range<Int>, into ends: inout [Int]) {
        switch self {
        case .gpt2: splitGPT2(s, range, &ends)
        case .llama3(let maxDigits): splitLlama3(s, range, maxDigits: maxDigits, &ends)
        }
    }
}

@inline(__always) private func lowerASCII(_ c: Unicode.Scalar) -> UInt32 {
    (c.value >= 0x41 && c.value <= 0x5A) ? c.value + 32 : c.value
}

/// Length of the contraction (`'s`, `'t`, `'m`, `'d`, `'re`, `'ve`, `'ll`) at `i`, or 0.
@inline(__always)
private func contractionLength(_ s: UnsafeBufferPointer<Unicode.Scalar>, _ i: Int, _ hi: Int, caseInsensitive: Bool) -> Int {
    guard s[i] == "'", i + 1 < hi else { return 0 }
    let n = caseInsensitive ? lowerASCII(s[i + 1]) : s[i + 1].value
    switch n {
    case 0x73, 0x74, 0x6D, 0x64: return 2  // s t m d
    default: break
    }
    guard i + 2 < hi else { return 0 }
    let nn = caseInsensitive ? lowerASCII(s[i + 2]) : s[i + 2].value
    switch (n, nn) {
    case (0x72, 0x65), (0x76, 0x65), (0x6C, 0x6C): return 3  // re ve ll
    default: return 0
    }
}

private func splitGPT2(_ s: UnsafeBufferPointer<Unicode.Scalar>, _ range: Range<Int>, _ ends: inout [Int]) {
    let hi = range.upperBound
    var i = range.lowerBound
    while i < hi {
        let c = contractionLength(s, i, hi, caseInsensitive: false)
        if c > 0 { i += c; ends.append(i); continue }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
        var k = i
        if s[k] == " ", k + 1 < hi, s[k + 1].characterClass != .whitespace { k += 1 }
        let cls = s[k].characterClass
        if cls != .whitespace {
            k += 1
            while k < hi, s[k].characterClass == cls { k += 1 }
            i = k
            ends.append(i)
            continue
        }
        // `\s+(?!\S)|\s+`: a whitespace run, less its last character when a non-space follows.
        var e = i + 1
        while e < hi, s[e].characterClass == .whitespace { e += 1 }
        i = (e < hi && e - i > 1) ? e - 1 : e
        ends.append(i)
    }
}

private func splitLlama3(_ s: UnsafeBufferPointer<Unicode.Scalar>, _ range: Range<Int>, maxDigits: Int, _ ends: inout [Int]) {
    let hi = range.upperBound
    var i = range.lowerBound
    while i < hi {
        let c = contractionLength(s, i, hi, caseInsensitive: true)
        if c > 0 { i += c; ends.append(i); continue }
        let ch = s[i]
        let cls = ch.characterClass
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if cls == .letter || (cls != .number && ch != "\r" && ch != "\n" && i + 1 < hi && s[i + 1].characterClass == .letter) {
            var k = i + 1
            while k < hi, s[k].characterClass == .letter { k += 1 }
            i = k
            ends.append(i)
            continue
        }
        // `\p{N}{1,n}`
        if cls == .number {
            var k = i + 1
            while k < hi, k - i < maxDigits, s[k].characterClass == .number { k += 1 }
            i = k
            ends.append(i)
            continue
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        var k = i
        if ch == " ", k + 1 < hi, s[k + 1].characterClass == .other { k += 1 }
        if s[k].characterClass == .other {
            k += 1
            while k < hi, s[k].characterClass == .other { k += 1 }
            while k < hi, s[k] == "\r" || s[k] == "\n" { k += 1 }
            i = k
            ends.append(i)
            continue
        }
        // Whitespace: `\s*[\r\n]+` up to the run's last line break, else `\s+(?!\S)|\s+`.
        var e = i
        var afterLastBreak = -1
        while e < hi, s[e].characterClass == .whitespace {
            if s[e] == "\r" || s[e] == "\n" { afterLastBreak = e + 1 }
            e += 1
        }
        if afterLastBreak > 0 {
            i = afterLastBreak
        } else {
            i = (e < hi && e - i > 1) ? e - 1 : e
        }
        ends.append(i)
    }
}
