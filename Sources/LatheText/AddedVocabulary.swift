/// Finds added tokens in text: leftmost match first, the longest one where several start
/// there (HF's Aho-Corasick `LeftmostLongest`), then `singleWord`, `lstrip` and `rstrip` as HF
/// applies them.
struct AddedVocabulary: Sendable {
    let tokens: [AddedToken]
    /// Tokens matched in the raw text, and those matched after normalisation (their patterns
    /// normalised too).
    private let raw: Matcher
    private let normalized: Matcher

    enum Segment {
        case text(ArraySlice<Unicode.Scalar>, isFirst: Bool)
        case token(Int)
    }

    init(_ tokens: [AddedToken], normalizer: Normalizer?) {
        self.tokens = tokens
        raw = Matcher(tokens.filter { !$0.normalized }.map { ($0, Array($0.content.unicodeScalars)) })
        normalized = Matcher(tokens.filter(\.normalized).map { t in
            (t, Array((normalizer?.apply(t.content) ?? t.content).unicodeScalars))
        })
    }

    var isEmpty: Bool { tokens.isEmpty }

    /// `text` cut into added tokens and normalised text between them.
    func segments(_ text: String, normalizer: Normalizer?) -> [Segment] {
        let scalars = Array(text.unicodeScalars)
        var out: [Segment] = []
        for seg in raw.segments(scalars[...], isFirst: true) {
            guard case .text(let piece, let isFirst) = seg else { out.append(seg); continue }
            guard let normalizer else {
                out.append(contentsOf: normalized.segments(piece, isFirst: isFirst))
                continue
            }
            let n = Array(normalizer.apply(makeString(piece)).unicodeScalars)
            out.append(contentsOf: normalized.segments(n[...], isFirst: isFirst))
        }
        return out
    }

    private struct Matcher: Sendable {
        /// Per first scalar, the candidate patterns, longest first.
        let byFirst: [Unicode.Scalar: [(pattern: [Unicode.Scalar], token: AddedToken)]]

        init(_ list: [(AddedToken, [Unicode.Scalar])]) {
            var map: [Unicode.Scalar: [(pattern: [Unicode.Scalar], token: AddedToken)]] = [:]
            for (t, p) in list where !p.isEmpty { map[p[0], default: []].append((p, t)) }
            for k in map.keys { map[k]!.sort { $0.pattern.count > $1.pattern.count } }
            byFirst = map
        }

        func segments(_ s: ArraySlice<Unicode.Scalar>, isFirst: Bool) -> [Segment] {
            if byFirst.isEmpty || s.isEmpty { return s.isEmpty ? [] : [.text(s, isFirst: isFirst)] }
            var out: [Segment] = []
            var emitted = s.startIndex  // end of the last accepted match
            var i = s.startIndex
            while i < s.endIndex {
                guard let candidates = byFirst[s[i]],
                      let hit = candidates.first(where: { c in
                          i + c.pattern.count <= s.endIndex
                              && c.pattern.indices.allSatisfy { s[i + $0] == c.pattern[$0] }
                      }) else {
                    i += 1
                    continue
                }
                var start = i
                var stop = i + hit.pattern.count
                i = stop
                let t = hit.token
                if t.singleWord {
                    let before = start > s.startIndex && s[start - 1].isWordCharacter
                    let after = stop < s.endIndex && s[stop].isWordCharacter
                    if before || after { continue }
                }
                if t.lstrip {
                    var k = start
                    while k > s.startIndex, s[k - 1].isSpace { k -= 1 }
                    start = max(k, emitted)
                }
                if t.rstrip {
                    while stop < s.endIndex, s[stop].isSpace { stop += 1 }
                }
                if emitted < start { out.append(.text(s[emitted..<start], isFirst: isFirst && emitted == s.startIndex)) }
                out.append(.token(t.id))
                emitted = stop
                i = max(i, stop)
            }
            if emitted < s.endIndex { out.append(.text(s[emitted...], isFirst: isFirst && emitted == s.startIndex)) }
            return out
        }
    }
}
