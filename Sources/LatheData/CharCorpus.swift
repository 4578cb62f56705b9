import Foundation
import LatheTensor

/// A text as a sequence of character ids, for character-level language models.
///
/// The vocabulary is the text's distinct Unicode scalars, sorted by code point; id `i` is
/// `vocabulary[i]`. Splits share their parent's vocabulary.
public struct CharCorpus: Sendable {
    /// The characters, sorted; a character's id is its index here.
    public let vocabulary: [Unicode.Scalar]
    /// The text as ids.
    public let ids: [Int32]
    /// id of each ASCII scalar, -1 when absent.
    let asciiIDs: [Int32]
    let otherIDs: [Unicode.Scalar: Int32]

    /// Builds the vocabulary from `text` and encodes it.
    public init(text: String) {
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
        let vocabulary = (0..<128).filter { seenASCII[$0] }.map { Unicode.Scalar(UInt8($0)) } + others.sorted()
        self.init(vocabulary: vocabulary, ids: [])
        self = CharCorpus(vocabulary: vocabulary, ids: encodeIDs(text, asciiOnly: allASCII))
    }

    init(vocabulary: [Unicode.Scalar], ids: [Int32]) {
        self.vocabulary = vocabulary
        self.ids = ids
        var ascii = [Int32](repeating: -1, count: 128)
        var other: [Unicode.Scalar: Int32] = [:]
        for (i, s) in vocabulary.enumerated() {
            if s.value < 128 { ascii[Int(s.value)] = Int32(i) } else { other[s] = Int32(i) }
        }
        asciiIDs = ascii
        otherIDs = other
    }

    /// The plays bundled with Lathe (20 plays from the Open Shakespeare / Project Gutenberg
    /// texts, 2.65 million characters; see `Resources/README.md`).
    public static func shakespeare() throws -> CharCorpus {
        CharCorpus(text: try shakespeareText())
    }

    /// The bundled plays as one string (plain text, for tokenizers and perplexity).
    public static func shakespeareText() throws -> String {
        let url = try BundledResource.url("shakespeare.txt.gz")
        return try FileBytes.withContents(of: url, hint: "rebuild the package") { String(decoding: $0, as: UTF8.self) }
    }

    /// Number of distinct characters.
    public var vocabSize: Int { vocabulary.count }
    /// Length of the text in characters.
    public var count: Int { ids.count }
    /// The text itself.
    public var text: String { decode(ids.map(Int.init)) }

    /// True when every character of `text` is in the vocabulary.
    public func canEncode(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy { id(of: $0) != nil }
    }

    @inline(__always) func id(of s: Unicode.Scalar) -> Int32? {
        if s.value < 128 { let i = asciiIDs[Int(s.value)]; return i >= 0 ? i : nil }
        return otherIDs[s]
    }

    func encodeIDs(_ text: String, asciiOnly: Bool) -> [Int32] {
        if asciiOnly {
            var text = text
            return text.withUTF8 { utf8 in
                [Int32](unsafeUninitializedCapacity: utf8.count) { buf, n in
                    for (i, b) in utf8.enumerated() {
                        let id = asciiIDs[Int(b)]
                        precondition(id >= 0, "CharCorpus.encode: character \(Unicode.Scalar(b).escaped(asASCII: true)) is not in the vocabulary")
                        buf[i] = id
                    }
                    n = utf8.count
                }
            }
        }
        return text.unicodeScalars.map { s in
            guard let id = id(of: s) else {
                preconditionFailure("CharCorpus.encode: character \(s.escaped(asASCII: true)) is not in the vocabulary")
            }
            return id
        }
    }

    /// The ids of `text`'s characters. Every character must be in the vocabulary (check with
    /// ``canEncode(_:)``).
    public func encode(_ text: String) -> [Int] {
        encodeIDs(text, asciiOnly: false).map(Int.init)
    }

    /// The text of `ids` (each in `0..<vocabSize`).
    public func decode(_ ids: [Int]) -> String {
        var scalars = String.UnicodeScalarView()
        scalars.reserveCapacity(ids.count)
        for i in ids {
            precondition(i >= 0 && i < vocabulary.count, "CharCorpus.decode: id \(i) is outside 0..<\(vocabulary.count)")
            scalars.append(vocabulary[i])
        }
        return String(scalars)
    }

    /// The first `1 - validationFraction` of the text for training and the rest for validation,
    /// both with this corpus's vocabulary.
    public func split(validationFraction: Double) -> (train: CharCorpus, validation: CharCorpus) {
        precondition(validationFraction >= 0 && validationFraction <= 1,
                     "CharCorpus.split: validationFraction must be in [0, 1], got \(validationFraction)")
        let cut = ids.count - Int((Double(ids.count) * validationFraction).rounded())
        return (CharCorpus(vocabulary: vocabulary, ids: Array(ids[..<cut])),
                CharCorpus(vocabulary: vocabulary, ids: Array(ids[cut...])))
    }

    /// `size` windows of `context` ids at random offsets: `x` int64 `[size, context]` and `y`
    /// the same windows shifted by one (the next character of each position).
    public func batch(size: Int, context: Int, generator: inout RandomGenerator) -> (x: Tensor, y: Tensor) {
        precondition(size > 0 && context > 0, "CharCorpus.batch: size and context must be positive")
        precondition(ids.count > context, "CharCorpus.batch: text of \(ids.count) characters is too short for context \(context)")
        let starts = Tensor.randint([size], low: 0, high: ids.count - context, generator: &generator).intScalars
        return windows(starts: starts, context: context)
    }

    /// Consecutive non-overlapping windows covering the text in order (as many as fit:
    /// `(count - 1) / context`), grouped into batches of `batchSize` (the last may be smaller).
    /// Deterministic: use on the validation split for comparable losses.
    public func evaluationBatches(context: Int, batchSize: Int) -> [(x: Tensor, y: Tensor)] {
        precondition(context > 0 && batchSize > 0, "CharCorpus.evaluationBatches: context and batchSize must be positive")
        let windowCount = Swift.max(0, (ids.count - 1) / context)
        return stride(from: 0, to: windowCount, by: batchSize).map { first in
            let starts = (first..<Swift.min(first + batchSize, windowCount)).map { $0 * context }
            return windows(starts: starts, context: context)
        }
    }

    func windows(starts: [Int], context: Int) -> (x: Tensor, y: Tensor) {
        let b = starts.count
        var x = [Int64](repeating: 0, count: b * context), y = x
        ids.withUnsafeBufferPointer { src in
            x.withUnsafeMutableBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    for (r, s) in starts.enumerated() {
                        for t in 0..<context {
                            xp[r * context + t] = Int64(src[s + t])
                            yp[r * context + t] = Int64(src[s + t + 1])
                        }
                    }
                }
            }
        }
        return (x.withUnsafeBytes { Tensor(bytes: $0, shape: [b, context], dtype: .int64) },
                y.withUnsafeBytes { Tensor(bytes: $0, shape: [b, context], dtype: .int64) })
    }
}
