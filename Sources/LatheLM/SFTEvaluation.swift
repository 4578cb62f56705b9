import Foundation
import LatheIO
import LatheText

/// A prompt and the answer a fine-tuned model should give, from a held-out jsonl line.
public struct SFTQuestion: Sendable, Equatable {
    public var promptIDs: [Int]
    public var answer: String
    public var line: Int
}

/// A proportion with its 95% Wilson score interval (Wilson 1927), which keeps inside [0, 1] and
/// stays honest for small counts and proportions near 0 or 1:
/// `(p + z²/2n ± z √(p(1-p)/n + z²/4n²)) / (1 + z²/n)`, `z = 1.959964`.
public struct WilsonInterval: Sendable, Equatable {
    public var successes: Int
    public var count: Int

    public init(successes: Int, count: Int) { (self.successes, self.count) = (successes, count) }

    public var proportion: Double { count == 0 ? .nan : Double(successes) / Double(count) }

    public var bounds: (low: Double, high: Double) {
        guard count > 0 else { return (.nan, .nan) }
        let z = 1.959963984540054, n = Double(count), p = proportion
        let center = (p + z * z / (2 * n)) / (1 + z * z / n)
        let half = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)).squareRoot()
        return (Swift.max(0, center - half), Swift.min(1, center + half))
    }
}

/// How a greedy answer is compared with the reference.
public enum AnswerMatch: String, Sendable, Equatable, CaseIterable {
    /// The first lines, whitespace trimmed, must be equal (a one-word or one-line completion); the
    /// lenient figure compares first words, ignoring case and punctuation.
    case firstLine = "first-line"
    /// GSM8K's convention: the number after the last "####" of each must be equal as numbers
    /// ("1,000" = "1000.0"). The lenient figure also takes the last number of an answer without
    /// "####" (a base model that works the problem out in its own words).
    case finalNumber = "final-number"

    /// `finalNumber` when the reference has a "####" line, else `firstLine`.
    public static func detect(reference: String) -> AnswerMatch {
        reference.contains("####") ? .finalNumber : .firstLine
    }
}

/// Exact-match accuracy of greedy answers.
public struct AnswerAccuracy: Sendable {
    public var match: AnswerMatch
    /// Answers equal to the reference as `match` says: the first line, or the final "#### N" number.
    public var exact: WilsonInterval
    /// The looser figure of `match`: first words ignoring case and punctuation (for base models
    /// that answer "Positive." to a " positive" reference), or the last number when "####" is missing.
    public var lenient: WilsonInterval
    /// The most frequent answers given, with their counts.
    public var answers: [(String, Int)]
    /// Each question's greedy answer (decoded, special tokens skipped), in question order.
    public var given: [String]
    public var seconds: Double
}

extension SFTTokenizer {
    /// The prompt (token ids, tokenized as for training) and reference answer of a parsed line:
    /// prompt/completion data, or a conversation whose last message is the assistant's answer
    /// (the prompt is the rest, rendered with the generation header).
    public func question(_ object: JSONValue, format: SFTFormat, line: Int) throws -> SFTQuestion {
        switch format {
        case .text:
            throw SFTDataError(file: "", line: line, message: "answer accuracy needs prompt/completion or messages data, not text")
        case .completion:
            guard let prompt = object["prompt"]?.stringValue, let answer = object["completion"]?.stringValue else {
                throw SFTDataError(file: "", line: line, message: "\"prompt\" and \"completion\" must be strings")
            }
            return SFTQuestion(promptIDs: promptIDs(prompt), answer: answer, line: line)
        case .chat:
            guard let list = object["messages"]?.arrayValue, let last = list.last, last["role"]?.stringValue == "assistant",
                  let answer = last["content"]?.stringValue else {
                throw SFTDataError(file: "", line: line, message: "the last message must be the assistant's answer (a string)")
            }
            guard let template else { throw SFTDataError(file: "", line: line, message: "messages data needs a chat template, and the model has none") }
            var messages: [ChatMessage] = []
            for m in list.dropLast() {
                guard let role = m["role"]?.stringValue, let content = m["content"] else {
                    throw SFTDataError(file: "", line: line, message: "every message needs a string \"role\" and a \"content\"")
                }
                messages.append(ChatMessage(role: role, content: JinjaValue(json: content)))
            }
            let text: String
            do { text = try template.render(messages: messages, addGenerationPrompt: true, tokenizer: tokenizer) } catch {
                throw SFTDataError(file: "", line: line, message: "the chat template failed: \(error)")
            }
            return SFTQuestion(promptIDs: promptIDs(text), answer: answer, line: line)
        }
    }

    func promptIDs(_ text: String) -> [Int] {
        var ids = tokenizer.encode(text, addSpecialTokens: false)
        if addsBOS, let bos = tokenizer.bos, ids.first != bos { ids.insert(bos, at: 0) }
        return ids
    }

    /// The questions of a jsonl file (at most `limit`, in file order).
    public func questions(_ url: URL, limit: Int? = nil) throws -> (format: SFTFormat, questions: [SFTQuestion]) {
        let file = url.path
        guard let data = FileManager.default.contents(atPath: file) else { throw SFTDataError(file: file, message: "no such file") }
        var format = options.format
        var out: [SFTQuestion] = []
        var lineNumber = 0
        for raw in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if let limit, out.count >= limit { break }
            if raw.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) { continue }
            let object: JSONValue
            do { object = try JSONParser.parse([UInt8](raw)) } catch {
                throw SFTDataError(file: file, line: lineNumber, message: "not valid JSON: \(error)")
            }
            guard let found = SFTFormat.detect(object) else {
                throw SFTDataError(file: file, line: lineNumber, message: "unknown format: expected \"messages\" or \"prompt\" and \"completion\"")
            }
            format = format ?? found
            guard found == format else { throw SFTDataError(file: file, line: lineNumber, message: "this line is \(found.rawValue) data, the file \(format!.rawValue)") }
            do { out.append(try question(object, format: found, line: lineNumber)) } catch let e as SFTDataError {
                throw SFTDataError(file: file, line: lineNumber, message: e.message)
            }
        }
        guard let format, !out.isEmpty else { throw SFTDataError(file: file, message: "no examples") }
        return (format, out)
    }

    /// Greedy answers of `model` to `questions`, scored against their references. Generation
    /// stops at `stopTokens` or after `maxTokens` (default: the longest reference's tokens + 1).
    /// `batchSize` questions are decoded together (``BatchDecoder``; 1: one at a time), with the
    /// answers of one at a time. `onProgress` sees (done, correct so far) as answers finish.
    public func accuracy(of model: LanguageModel, on questions: [SFTQuestion], stopTokens: Set<Int>, maxTokens: Int? = nil,
                         match: AnswerMatch? = nil, batchSize: Int = 8, onProgress: ((Int, Int) -> Void)? = nil) -> AnswerAccuracy {
        let start = Date()
        let match = match ?? AnswerMatch.detect(reference: questions.first?.answer ?? "")
        let limit = maxTokens ?? (questions.map { tokenizer.encode($0.answer, addSpecialTokens: false).count }.max() ?? 1) + 1
        let decoder = BatchDecoder(model, batchSize: Swift.max(1, Swift.min(batchSize, questions.count)), capacity: 512)
        var exact = 0, lenient = 0, done = 0
        var counts: [String: Int] = [:]
        var given = [String](repeating: "", count: questions.count)
        decoder.generate(prompts: questions.map { Array($0.promptIDs.suffix(model.maxPositions - limit)) },
                         options: GenerationOptions(maxTokens: limit, sampling: .greedy, stopTokens: stopTokens)) { i, result in
            let text = tokenizer.decode(result.tokens, skipSpecialTokens: true)
            given[i] = text
            let (isExact, isLenient, shown) = Self.score(text, reference: questions[i].answer, match: match)
            counts[shown, default: 0] += 1
            if isExact { exact += 1 }
            if isLenient { lenient += 1 }
            done += 1
            onProgress?(done, exact)
        }
        let top = counts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(5).map { ($0.key, $0.value) }
        return AnswerAccuracy(match: match, exact: WilsonInterval(successes: exact, count: questions.count),
                              lenient: WilsonInterval(successes: lenient, count: questions.count), answers: Array(top),
                              given: given, seconds: Date().timeIntervalSince(start))
    }

    /// Whether `answer` matches `reference` exactly and leniently under `match`, and the part of
    /// the answer that was compared (for the most-frequent-answers list).
    public static func score(_ answer: String, reference: String, match: AnswerMatch) -> (exact: Bool, lenient: Bool, shown: String) {
        switch match {
        case .firstLine:
            let line = firstLine(answer), word = firstWord(answer)
            return (line == firstLine(reference), !word.isEmpty && word == firstWord(reference), line)
        case .finalNumber:
            guard let expected = finalNumber(reference) else { return (false, false, "") }
            let marked = finalNumber(answer)
            let found = marked ?? lastNumber(answer)
            return (marked == expected, found == expected, marked.map { "#### \($0.formatted())" } ?? found.map { "\($0.formatted()) (no ####)" } ?? "(no number)")
        }
    }

    /// The number after the last "####", commas removed (nil if there is none or it is not a number).
    public static func finalNumber(_ s: String) -> Double? {
        guard let range = s.range(of: "####", options: .backwards) else { return nil }
        return leadingNumber(s[range.upperBound...])
    }

    /// The last number in `s` ("-1,234.5" → -1234.5), nil if none.
    public static func lastNumber(_ s: String) -> Double? {
        var last: Double?
        var rest = Substring(s)
        while let i = rest.firstIndex(where: { $0.isASCII && $0.isNumber }) {
            var start = i
            if start > rest.startIndex, rest[rest.index(before: start)] == "-" { start = rest.index(before: start) }
            let end = numberEnd(rest, from: i)
            if let v = Double(rest[start..<end].replacingOccurrences(of: ",", with: "")) { last = v }
            rest = rest[end...]
        }
        return last
    }

    static func leadingNumber(_ s: Substring) -> Double? {
        let t = s.drop { $0 == " " || $0 == "\t" || $0 == "$" }
        var start = t.startIndex
        if t.first == "-" { start = t.index(after: start) }
        guard start < t.endIndex, t[start].isASCII, t[start].isNumber else { return nil }
        return Double(t[t.startIndex..<numberEnd(t, from: start)].replacingOccurrences(of: ",", with: ""))
    }

    /// The end of the digits, thousands commas and decimal point starting at `i` (a trailing "." or "," is not part of it).
    static func numberEnd(_ s: Substring, from i: Substring.Index) -> Substring.Index {
        var end = i, j = i
        while j < s.endIndex {
            let c = s[j]
            if c.isASCII, c.isNumber { j = s.index(after: j); end = j; continue }
            if c == "." || c == "," {
                let next = s.index(after: j)
                if next < s.endIndex, s[next].isASCII, s[next].isNumber { j = next; continue }
            }
            break
        }
        return end
    }

    static func firstLine(_ s: String) -> String {
        let trimmed = s.drop { $0.isWhitespace }
        return String(trimmed.prefix { $0 != "\n" }).trimmingCharacters(in: .whitespaces)
    }

    static func firstWord(_ s: String) -> String {
        let word = firstLine(s).split(whereSeparator: { $0.isWhitespace }).first.map(String.init) ?? ""
        return word.lowercased().trimmingCharacters(in: .punctuationCharacters)
    }
}
