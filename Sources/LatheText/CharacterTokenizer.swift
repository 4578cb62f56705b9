/// One id per Unicode scalar of a fixed character set (character-level language models such as
/// Lathe's char GPT): id `i` is `vocabulary[i]`. Characters outside the set are dropped by
/// ``encode(_:addSpecialTokens:)``, unless the vocabulary has an unknown token (then they
/// become it); ``ids(of:)`` is the strict form that says which character is missing.
public struct CharacterTokenizer: Tokenizer, Equatable {
    /// The characters; a character's id is its index here.
    public let vocabulary: [Unicode.Scalar]
    /// The id that stands for characters outside the vocabulary, if any.
    public let unk: Int?
    /// id of each ASCII scalar, -1 when absent.
    let asciiIDs: [Int32]
    let otherIDs: [Unicode.Scalar: Int32]

    /// A tokenizer for exactly `vocabulary` (distinct scalars; their order gives the ids).
    public init(vocabulary: [Unicode.Scalar], unknown: Unicode.Scalar? = nil) {
        self.vocabulary = vocabulary
        var ascii = [Int32](repeating: -1, count: 128)
        var other: [Unicode.Scalar: Int32] = [:]
        for (i, s) in vocabulary.enumerated() {
            if s.value < 128 {
                precondition(ascii[Int(s.value)] < 0, "CharacterTokenizer: \(s.escaped(asASCII: true)) is in the vocabulary twice")
                ascii[Int(s.value)] = Int32(i)
            } else {
                precondition(other.updateValue(Int32(i), forKey: s) == nil, "CharacterTokenizer: \(s.escaped(asASCII: true)) is in the vocabulary twice")
            }
        }
        (asciiIDs, otherIDs) = (ascii, other)
        unk = unknown.flatMap { u in vocabulary.firstIndex(of: u) }
    }

    /// The distinct characters of `text`, sorted by code point, as the vocabulary.
    public init(characterSetOf text: String) {
        var seenASCII = [Bool](repeating: false, count: 128)
        var others = Set<Unicode.Scalar>()
        var text = text
        let allASCII = text.withUTF8 { utf8 in
            var ascii = true
            for b in utf8 {
                if b < 128 { seenASCII[Int(b)] = true } else { ascii = false }
            }
            return ascii
        }
        if !allASCII {
            for s in text.unicodeScalars where s.value >= 128 { others.insert(s) }
        }
        self.init(vocabulary: (0..<128).filter { seenASCII[$0] }.map { Unicode.Scalar(UInt8($0)) } + others.sorted())
    }

    @inline(__always) public func id(of s: Unicode.Scalar) -> Int32? {
        if s.value < 128 { let i = asciiIDs[Int(s.value)]; return i >= 0 ? i : nil }
        return otherIDs[s]
    }

    /// The ids of every character of `text`, or the first character that is not in the vocabulary.
    public func ids(of text: String) -> Result<[Int32], MissingCharacter> {
        var text = text
        if let fast = text.withUTF8({ utf8 -> [Int32]? in
            guard utf8.allSatisfy({ $0 < 128 }) else { return nil }
            return [Int32](unsafeUninitializedCapacity: utf8.count) { buf, n in
                n = 0
                for b in utf8 {
                    let id = asciiIDs[Int(b)]
                    guard id >= 0 else { return }
                    buf[n] = id
                    n += 1
                }
            }
        }), fast.count == text.utf8.count {
            return .success(fast)
        }
        var out: [Int32] = []
        out.reserveCapacity(text.unicodeScalars.count)
        for s in text.unicodeScalars {
            guard let id = id(of: s) else { return .failure(MissingCharacter(character: s)) }
            out.append(id)
        }
        return .success(out)
    }

    /// A character the vocabulary does not have.
    public struct MissingCharacter: Error, CustomStringConvertible {
        public let character: Unicode.Scalar
        public var description: String { "character \(character.escaped(asASCII: true)) is not in the vocabulary" }
    }

    // MARK: - Tokenizer

    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int] {
        text.unicodeScalars.compactMap { s in id(of: s).map(Int.init) ?? unk }
    }

    public func decodedBytes(_ ids: [Int], skipSpecialTokens: Bool) -> [UInt8] {
        var scalars = String.UnicodeScalarView()
        for i in ids where i >= 0 && i < vocabulary.count { scalars.append(vocabulary[i]) }
        return Array(String(scalars).utf8)
    }

    public var vocabularySize: Int { vocabulary.count }
    public var bos: Int? { nil }
    public var eos: Int? { nil }
    public var pad: Int? { nil }
    public func token(for id: Int) -> String? { id >= 0 && id < vocabulary.count ? String(vocabulary[id]) : nil }
    public func id(for token: String) -> Int? {
        let scalars = token.unicodeScalars
        guard scalars.count == 1 else { return nil }
        return id(of: scalars.first!).map(Int.init)
    }
    public var addedTokens: [AddedToken] { [] }

    public static func == (a: CharacterTokenizer, b: CharacterTokenizer) -> Bool { a.vocabulary == b.vocabulary && a.unk == b.unk }
}
