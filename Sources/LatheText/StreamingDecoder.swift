/// Turns token ids into text one at a time, as a model generates them.
///
/// The text handed out never ends inside a UTF-8 character: bytes of a character spread over
/// several tokens (byte-level BPE, `<0xNN>` byte fallback) are held back until it is complete.
/// The concatenated output equals `decode` of all the ids (for ill-formed byte sequences up to
/// how many U+FFFD replace them), SentencePiece's dropped leading space included: the decoder
/// keeps the last emitted token as context, so only the very first token loses its space.
///
/// ```swift
/// var stream = StreamingDecoder(tokenizer)
/// for id in generated { print(stream.next(id), terminator: "") }
/// print(stream.finish())
/// ```
public struct StreamingDecoder: Sendable {
    public let tokenizer: any Tokenizer
    public let skipSpecialTokens: Bool
    /// Ids since the last context token (which is `window[0]` once something was emitted).
    private var window: [Int] = []
    /// Bytes of `decodedBytes(window)` already handed out.
    private var emitted = 0

    public init(_ tokenizer: any Tokenizer, skipSpecialTokens: Bool = true) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one id; returns the text that became complete (often empty while a character's
    /// bytes are still arriving).
    public mutating func next(_ id: Int) -> String {
        window.append(id)
        let bytes = tokenizer.decodedBytes(window, skipSpecialTokens: skipSpecialTokens)
        guard bytes.count > emitted else { return "" }
        let fresh = bytes[emitted...]
        let complete = completeUTF8Length(fresh)
        let text = String(decoding: fresh.prefix(complete), as: UTF8.self)
        emitted += complete
        if emitted == bytes.count {
            // Everything is out: keep only the last id as context for the next one.
            window = [id]
            emitted = tokenizer.decodedBytes(window, skipSpecialTokens: skipSpecialTokens).count
        }
        return text
    }

    /// The text of all `ids`, in order.
    public mutating func next(_ ids: [Int]) -> String { ids.map { next($0) }.joined() }

    /// Hands out what is held back (an incomplete character becomes U+FFFD) and starts over.
    public mutating func finish() -> String {
        let bytes = tokenizer.decodedBytes(window, skipSpecialTokens: skipSpecialTokens)
        let rest = bytes.count > emitted ? String(decoding: bytes[emitted...], as: UTF8.self) : ""
        window = []
        emitted = 0
        return rest
    }
}

/// The length of the longest prefix that does not end inside a UTF-8 character which more
/// bytes could still complete. Ill-formed bytes are not held back (they become U+FFFD).
func completeUTF8Length(_ b: ArraySlice<UInt8>) -> Int {
    let n = b.count
    guard n > 0 else { return 0 }
    // Find the last lead byte, at most three continuation bytes back.
    var k = n - 1
    var continuations = 0
    while k >= 0, continuations < 3, b[b.startIndex + k] & 0xC0 == 0x80 {
        k -= 1
        continuations += 1
    }
    guard k >= 0 else { return n }
    let lead = b[b.startIndex + k]
    let need: Int
    switch lead {
    case 0xC2...0xDF: need = 2
    case 0xE0...0xEF: need = 3
    case 0xF0...0xF4: need = 4
    default: return n
    }
    return continuations + 1 < need ? k : n
}
