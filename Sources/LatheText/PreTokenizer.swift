/// Text cut into pieces: the scalars of all pieces back to back, and where each piece ends.
/// Pre-tokenizers refine the cuts (or rewrite pieces); the model then sees one piece at a time.
/// Where a pre-tokenizer cuts one piece, and which sub-pieces it keeps.
struct Cuts {
    var ends: [Int] = []
    var keep: [Bool] = []
    mutating func append(_ end: Int, keep k: Bool = true) {
        ends.append(end)
        keep.append(k)
    }
}

struct Pieces {
    var scalars: [Unicode.Scalar] = []
    var ends: [Int] = []
    /// Whether each piece is the start of the input (HF's "first" for Metaspace's prepend scheme).
    var firstFlags: [Bool] = []

    init() {}

    init(_ text: some Sequence<Unicode.Scalar>, isFirst: Bool) {
        scalars = Array(text)
        if !scalars.isEmpty {
            ends = [scalars.count]
            firstFlags = [isFirst]
        }
    }

    var count: Int { ends.count }

    func range(_ i: Int) -> Range<Int> { (i == 0 ? 0 : ends[i - 1])..<ends[i] }

    /// Cuts every piece where `cut` says: it adds the ends of the sub-pieces of `range` (its
    /// last one `range.upperBound`), each kept or dropped; empty sub-pieces are dropped.
    mutating func split(_ cut: (UnsafeBufferPointer<Unicode.Scalar>, Range<Int>, inout Cuts) -> Void) {
        var out = Pieces()
        out.ends.reserveCapacity(ends.count * 2)
        var anyDropped = false
        scalars.withUnsafeBufferPointer { s in
            var cuts = Cuts()
            for p in 0..<ends.count {
                let r = range(p)
                cuts.ends.removeAll(keepingCapacity: true)
                cuts.keep.removeAll(keepingCapacity: true)
                cut(s, r, &cuts)
                var prev = r.lowerBound
                for (e, keep) in zip(cuts.ends, cuts.keep) where e > prev {
                    if keep {
                        out.ends.append(e)
                        out.firstFlags.append(firstFlags[p] && prev == r.lowerBound)
                    } else {
                        anyDropped = true
                        out.ends.append(-e)  // marked for removal below
                        out.firstFlags.append(false)
                    }
                    prev = e
                }
            }
        }
        guard anyDropped else {
            ends = out.ends
            firstFlags = out.firstFlags
            return
        }
        var compact = Pieces()
        var start = 0
        for (e, first) in zip(out.ends, out.firstFlags) {
            if e > 0 {
                compact.scalars.append(contentsOf: scalars[start..<e])
                compact.ends.append(compact.scalars.count)
                compact.firstFlags.append(first)
                start = e
            } else {
                start = -e
            }
        }
        self = compact
    }

    /// Rewrites every piece (and may cut it, by returning several).
    mutating func rewrite(_ f: (ArraySlice<Unicode.Scalar>, Bool) -> [[Unicode.Scalar]]) {
        var out = Pieces()
        out.scalars.reserveCapacity(scalars.count + 8)
        for p in 0..<ends.count {
            for (k, piece) in f(scalars[range(p)], firstFlags[p]).enumerated() where !piece.isEmpty {
                out.scalars.append(contentsOf: piece)
                out.ends.append(out.scalars.count)
                out.firstFlags.append(firstFlags[p] && k == 0)
            }
        }
        self = out
    }
}

/// How a split keeps the delimiters it finds (HF's `SplitDelimiterBehavior`).
public enum SplitBehavior: String, Sendable {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"
}

/// Where SentencePiece's "▁" is put in front of the text (HF Metaspace `prepend_scheme`).
public enum PrependScheme: String, Sendable {
    case always, first, never
}

/// The pre-tokenization stage: cuts normalised text into the pieces the model tokenizes
/// one by one. Mirrors HF `tokenizers`' pre-tokenizers of the same names.
public indirect enum PreTokenizer: Sendable {
    /// GPT-2's byte-level stage: optionally a space in front of each piece, then (with
    /// `useRegex`) the GPT-2 split. Byte-level models read each piece as UTF-8 bytes.
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    /// One of the known regexes (`SplitPattern`).
    case splitRegex(SplitPattern, behavior: SplitBehavior, invert: Bool)
    /// A literal delimiter.
    case splitString(String, behavior: SplitBehavior, invert: Bool)
    /// Numbers (N*) apart from the rest; each digit alone with `individualDigits`.
    case digits(individualDigits: Bool)
    /// SentencePiece: spaces become `replacement`, "▁" is put in front as `prependScheme` says,
    /// and with `split` the text is cut before each "▁".
    case metaspace(replacement: Unicode.Scalar, prependScheme: PrependScheme, split: Bool)
    /// BERT: cut at whitespace (dropped) and around each punctuation character.
    case bert
    /// Cut at whitespace, which is dropped.
    case whitespaceSplit
    /// `\w+|[^\w\s]+`.
    case whitespace
    /// Each punctuation character apart.
    case punctuation(behavior: SplitBehavior)
    case sequence([PreTokenizer])

    /// True for a byte-level stage (the model then works on bytes).
    var isByteLevel: Bool {
        switch self {
        case .byteLevel: true
        case .sequence(let list): list.contains { $0.isByteLevel }
        default: false
        }
    }

    func apply(_ pieces: inout Pieces) {
        switch self {
        case .byteLevel(let addPrefixSpace, let useRegex):
            if addPrefixSpace {
                pieces.rewrite { piece, _ in piece.first == " " ? [Array(piece)] : [[" "] + Array(piece)] }
            }
            if useRegex {
                pieces.split { s, r, cuts in
                    SplitPattern.gpt2.split(s, r, into: &cuts.ends)
                    cuts.keep = Array(repeating: true, count: cuts.ends.count)
                }
            }
        case .splitRegex(let pattern, let behavior, let invert):
            pieces.split { s, r, cuts in
                var matches: [Int] = []
                pattern.split(s, r, into: &matches)
                // The scanners' matches cover the input, so the gaps are empty.
                var ranges: [(Range<Int>, Bool)] = []
                var prev = r.lowerBound
                for e in matches { ranges.append((prev..<e, !invert)); prev = e }
                applyBehavior(ranges, behavior, r, &cuts)
            }
        case .splitString(let delimiter, let behavior, let invert):
            let d = Array(delimiter.unicodeScalars)
            pieces.split { s, r, cuts in
                var ranges: [(Range<Int>, Bool)] = []
                var prev = r.lowerBound
                var i = r.lowerBound
                while !d.isEmpty, i + d.count <= r.upperBound {
                    if (0..<d.count).allSatisfy({ s[i + $0] == d[$0] }) {
                        if i > prev { ranges.append((prev..<i, invert)) }
                        ranges.append((i..<(i + d.count), !invert))
                        i += d.count
                        prev = i
                    } else {
                        i += 1
                    }
                }
                if prev < r.upperBound { ranges.append((prev..<r.upperBound, invert)) }
                applyBehavior(ranges, behavior, r, &cuts)
            }
        case .digits(let individual):
            pieces.split { s, r, cuts in
                var i = r.lowerBound
                while i < r.upperBound {
                    let isNumber = s[i].isNumber
                    var k = i + 1
                    if !(isNumber && individual) {
                        while k < r.upperBound, s[k].isNumber == isNumber { k += 1 }
                    }
                    cuts.append(k)
                    i = k
                }
            }
        case .metaspace(let replacement, let scheme, let split):
            pieces.rewrite { piece, isFirst in
                var out = piece.map { $0 == " " ? replacement : $0 }
                if scheme == .always || (scheme == .first && isFirst), out.first != replacement {
                    out.insert(replacement, at: 0)
                }
                guard split else { return [out] }
                var parts: [[Unicode.Scalar]] = []
                for c in out {
                    if c == replacement || parts.isEmpty { parts.append([c]) } else { parts[parts.count - 1].append(c) }
                }
                return parts
            }
        case .bert:
            pieces.split { s, r, cuts in
                var i = r.lowerBound
                while i < r.upperBound {
                    let c = s[i]
                    if c.isSpace { i += 1; cuts.append(i, keep: false); continue }
                    if c.isBertPunctuation { i += 1; cuts.append(i); continue }
                    var k = i + 1
                    while k < r.upperBound, !s[k].isSpace, !s[k].isBertPunctuation { k += 1 }
                    cuts.append(k)
                    i = k
                }
            }
        case .whitespaceSplit:
            pieces.split { s, r, cuts in
                var i = r.lowerBound
                while i < r.upperBound {
                    if s[i].isSpace { i += 1; cuts.append(i, keep: false); continue }
                    var k = i + 1
                    while k < r.upperBound, !s[k].isSpace { k += 1 }
                    cuts.append(k)
                    i = k
                }
            }
        case .whitespace:
            pieces.split { s, r, cuts in
                var i = r.lowerBound
                while i < r.upperBound {
                    let c = s[i]
                    if c.isSpace { i += 1; cuts.append(i, keep: false); continue }
                    let word = c.isWordCharacter
                    var k = i + 1
                    while k < r.upperBound, !s[k].isSpace, s[k].isWordCharacter == word { k += 1 }
                    cuts.append(k)
                    i = k
                }
            }
        case .punctuation(let behavior):
            pieces.split { s, r, cuts in
                var ranges: [(Range<Int>, Bool)] = []
                var prev = r.lowerBound
                for i in r where s[i].isBertPunctuation {
                    if i > prev { ranges.append((prev..<i, false)) }
                    ranges.append((i..<(i + 1), true))
                    prev = i + 1
                }
                if prev < r.upperBound { ranges.append((prev..<r.upperBound, false)) }
                applyBehavior(ranges, behavior, r, &cuts)
            }
        case .sequence(let list):
            for p in list { p.apply(&pieces) }
        }
    }
}

/// Turns (range, is-delimiter) runs covering a piece into cuts, as HF's split behaviours do.
private func applyBehavior(_ ranges: [(Range<Int>, Bool)], _ behavior: SplitBehavior, _ whole: Range<Int>, _ cuts: inout Cuts) {
    switch behavior {
    case .isolated:
        for (r, _) in ranges { cuts.append(r.upperBound) }
    case .removed:
        for (r, isDelimiter) in ranges { cuts.append(r.upperBound, keep: !isDelimiter) }
    case .mergedWithPrevious:
        for (k, (r, isDelimiter)) in ranges.enumerated() where isDelimiter || k == ranges.count - 1 {
            cuts.append(r.upperBound)
        }
    case .mergedWithNext:
        for (r, isDelimiter) in ranges where isDelimiter && r.lowerBound > whole.lowerBound {
            cuts.append(r.lowerBound)
        }
        cuts.append(whole.upperBound)
    case .contiguous:
        for (k, (r, isDelimiter)) in ranges.enumerated() {
            let nextIsDelimiter = k + 1 < ranges.count && ranges[k + 1].1
            if !(isDelimiter && nextIsDelimiter) { cuts.append(r.upperBound) }
        }
    }
}

extension Unicode.Scalar {
    /// BERT's punctuation: ASCII punctuation and symbols, and Unicode P*.
    var isBertPunctuation: Bool { isASCIIPunctuation || (value >= 128 && isUnicodePunctuation) }

    /// `\w` in Rust's `regex`: letters, marks, numbers, connector punctuation (and join controls).
    var isWordCharacter: Bool {
        switch characterClass {
        case .letter, .number: return true
        case .whitespace: return false
        case .other:
            if value == 0x5F { return true }
            switch properties.generalCategory {
            case .nonspacingMark, .spacingMark, .enclosingMark, .connectorPunctuation: return true
            default: return value == 0x200C || value == 0x200D
            }
        }
    }
}
