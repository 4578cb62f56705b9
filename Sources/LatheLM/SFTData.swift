import Foundation
import LatheIO
import LatheText

/// The layout of a supervised fine-tuning file: one JSON object per line, detected from the first
/// line's keys as mlx-lm and TRL do.
public enum SFTFormat: String, Sendable, CaseIterable {
    /// `{"text": "..."}`: language modelling on the whole text (EOS appended).
    case text
    /// `{"messages": [{"role": ..., "content": ...}, ...]}` (optionally `"tools"`): a conversation,
    /// rendered with the model's chat template; the loss covers the assistant turns.
    case chat = "messages"
    /// `{"prompt": "...", "completion": "..."}`: the two strings joined as they are (no chat
    /// template; EOS appended); the loss covers the completion.
    case completion = "prompt_completion"

    /// The format of a parsed line: `messages` first, then `prompt` + `completion`, then `text`.
    public static func detect(_ object: JSONValue) -> SFTFormat? {
        guard object.objectMembers != nil else { return nil }
        if object["messages"] != nil { return .chat }
        if object["prompt"] != nil, object["completion"] != nil { return .completion }
        if object["text"] != nil { return .text }
        return nil
    }
}

/// Bad fine-tuning data, with the file and (when it is one line's fault) the line number.
public struct SFTDataError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let line: Int?
    public let message: String

    public init(file: String, line: Int? = nil, message: String) { (self.file, self.line, self.message) = (file, line, message) }

    public var description: String { line.map { "\(file):\($0): \(message)" } ?? "\(file): \(message)" }
}

/// One tokenized training example: token ids, and labels that are the ids where the loss counts
/// and -100 elsewhere (the prompt, the chat template's non-assistant text, the first token).
public struct SFTExample: Sendable, Equatable {
    public var ids: [Int]
    public var labels: [Int]
    /// 1-based line of the source file.
    public var line: Int

    public init(ids: [Int], labels: [Int], line: Int) { (self.ids, self.labels, self.line) = (ids, labels, line) }

    /// The number of tokens the loss counts.
    public var labelledCount: Int { labels.lazy.filter { $0 != -100 }.count }
}

/// How examples are made from lines.
public struct SFTOptions: Sendable, Equatable {
    /// The expected format; nil: detected from the first line.
    public var format: SFTFormat?
    /// Loss only on completions / assistant turns (nil: yes, for the formats that have a prompt).
    /// `true` with ``SFTFormat/text`` data is an error: there is no prompt to mask.
    public var maskPrompt: Bool?
    /// Longer examples are cut to this many tokens, with a warning naming the line.
    public var maxLength: Int

    public init(format: SFTFormat? = nil, maskPrompt: Bool? = nil, maxLength: Int = 512) {
        (self.format, self.maskPrompt, self.maxLength) = (format, maskPrompt, maxLength)
    }
}

/// Tokenizes supervised fine-tuning data.
///
/// Masking (``SFTOptions/maskPrompt``) follows the definition users check against: for a
/// conversation, the tokens of `apply_chat_template(messages[:i], add_generation_prompt=True)` before
/// each assistant turn `i` are masked (the generation header `<|im_start|>assistant\n` included), and
/// the turn's rendered text up to the next message (its end-of-turn token included) is learned. The
/// text is rendered once per assistant turn, and each rendering must extend the previous one (true
/// of the usual templates); the pieces are tokenized apart, as generation tokenizes a prompt.
public struct SFTTokenizer {
    public let tokenizer: any Tokenizer
    public let template: ChatTemplate?
    public let options: SFTOptions
    /// Whether encoding adds BOS (then it starts every example, once).
    let addsBOS: Bool

    public init(tokenizer: any Tokenizer, template: ChatTemplate?, options: SFTOptions) {
        self.tokenizer = tokenizer
        self.template = template
        self.options = options
        addsBOS = tokenizer.addedBOS != nil
    }

    /// Reads a jsonl file into examples: blank lines are skipped; examples longer than
    /// ``SFTOptions/maxLength`` are cut, with a message in `warnings`; an example left with no
    /// label is dropped with a message.
    /// - Throws: ``SFTDataError`` for a missing file, a malformed line, an unknown or mixed format,
    ///   a prompt mask asked of text data, or a file with no example.
    public func read(_ url: URL, warnings: inout [String]) throws -> (format: SFTFormat, examples: [SFTExample]) {
        let file = url.path
        guard FileManager.default.fileExists(atPath: file) else { throw SFTDataError(file: file, message: "no such file") }
        guard let data = FileManager.default.contents(atPath: file) else { throw SFTDataError(file: file, message: "cannot read the file") }
        var format = options.format
        var examples: [SFTExample] = []
        var lineNumber = 0
        for raw in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = raw.last == UInt8(ascii: "\r") ? raw.dropLast() : raw[...]
            if line.allSatisfy({ $0 == 32 || $0 == 9 }) { continue }
            let object: JSONValue
            do { object = try JSONParser.parse([UInt8](line)) } catch {
                throw SFTDataError(file: file, line: lineNumber, message: "not valid JSON: \(error)")
            }
            guard object.objectMembers != nil else {
                throw SFTDataError(file: file, line: lineNumber, message: "expected a JSON object, got \(object.kindName)")
            }
            guard let found = SFTFormat.detect(object) else {
                let keys = object.objectMembers!.map(\.key).sorted().joined(separator: ", ")
                throw SFTDataError(file: file, line: lineNumber, message: "unknown format: the keys are {\(keys)}; expected \"text\", "
                                   + "\"messages\" (chat) or \"prompt\" and \"completion\"")
            }
            if format == nil { format = found }
            guard found == format else {
                throw SFTDataError(file: file, line: lineNumber, message: "this line is \(found.rawValue) data but the file is "
                                   + "\(format!.rawValue) data\(options.format == nil ? " (detected from its first line)" : "")")
            }
            if options.maskPrompt == true, found == .text {
                throw SFTDataError(file: file, line: lineNumber, message: "mask_prompt is set but text data has no prompt to mask "
                                   + "(use prompt/completion or messages data, or leave mask_prompt out)")
            }
            var example: SFTExample
            do { example = try self.example(object, format: found, line: lineNumber) } catch let e as SFTDataError {
                throw SFTDataError(file: file, line: lineNumber, message: e.message)
            }
            if example.ids.count > options.maxLength {
                warnings.append("\(file):\(lineNumber): \(example.ids.count) tokens, truncated to max_length \(options.maxLength)")
                example.ids.removeLast(example.ids.count - options.maxLength)
                example.labels.removeLast(example.labels.count - options.maxLength)
            }
            guard example.labelledCount > 0 else {
                warnings.append("\(file):\(lineNumber): no token left to learn from (\(example.ids.count) tokens, all masked); skipped")
                continue
            }
            examples.append(example)
        }
        guard let format, !examples.isEmpty else {
            throw SFTDataError(file: file, message: "no examples (the file has \(lineNumber == 0 ? "no lines" : "no usable line"))")
        }
        return (format, examples)
    }

    /// The tokens of one parsed line.
    public func example(_ object: JSONValue, format: SFTFormat, line: Int = 0) throws -> SFTExample {
        func field(_ key: String) throws -> String {
            guard let v = object[key] else { throw SFTDataError(file: "", message: "the key \"\(key)\" is missing") }
            guard let s = v.stringValue else { throw SFTDataError(file: "", message: "\"\(key)\" must be a string, got \(v.kindName)") }
            return s
        }
        let mask = options.maskPrompt ?? (format != .text)
        var pieces: [(text: String, learned: Bool)]
        switch format {
        case .text:
            pieces = [(try field("text"), true)]
        case .completion:
            pieces = [(try field("prompt"), !mask), (try field("completion"), true)]
        case .chat:
            pieces = try chatPieces(object).map { ($0.text, $0.assistant || !mask) }
        }
        var ids: [Int] = [], labels: [Int] = []
        for (i, piece) in pieces.enumerated() {
            var tokens = tokenizer.encode(piece.text, addSpecialTokens: false)
            if i == 0, addsBOS, let bos = tokenizer.bos, tokens.first != bos { tokens.insert(bos, at: 0) }
            ids += tokens
            labels += piece.learned ? tokens : Array(repeating: -100, count: tokens.count)
        }
        // Text and completions end with EOS so that the model learns to stop (a chat turn ends
        // with the template's end-of-turn token instead).
        if format != .chat, let eos = tokenizer.eos, ids.last != eos {
            ids.append(eos)
            labels.append(eos)
        }
        guard !ids.isEmpty else { throw SFTDataError(file: "", message: "the example has no tokens") }
        labels[0] = -100  // nothing predicts the first token
        return SFTExample(ids: ids, labels: labels, line: line)
    }

    /// A conversation cut into rendered pieces: the text before each assistant turn (through its
    /// generation header) and each assistant turn's text.
    func chatPieces(_ object: JSONValue) throws -> [(text: String, assistant: Bool)] {
        guard let template else {
            throw SFTDataError(file: "", message: "messages data needs a chat template, and the model has none")
        }
        guard let list = object["messages"]?.arrayValue else {
            throw SFTDataError(file: "", message: "\"messages\" must be a list of {\"role\", \"content\"} objects")
        }
        var messages: [ChatMessage] = []
        for (i, m) in list.enumerated() {
            guard let members = m.objectMembers, let role = m["role"]?.stringValue else {
                throw SFTDataError(file: "", message: "messages[\(i)] must be an object with a string \"role\"")
            }
            guard let content = m["content"] else { throw SFTDataError(file: "", message: "messages[\(i)] has no \"content\"") }
            var extra: [String: JinjaValue] = [:]
            for (k, v) in members where k != "role" && k != "content" { extra[k] = JinjaValue(json: v) }
            messages.append(ChatMessage(role: role, content: JinjaValue(json: content), extra: extra))
        }
        guard messages.contains(where: { $0.role == "assistant" }) else {
            throw SFTDataError(file: "", message: "the conversation has no assistant message to learn")
        }
        var extra: [String: JinjaValue] = [:]
        if let tools = object["tools"], !tools.isNull { extra["tools"] = JinjaValue(json: tools) }
        func render(_ count: Int, generation: Bool) throws -> String {
            do {
                return try template.render(messages: Array(messages.prefix(count)), addGenerationPrompt: generation,
                                           tokenizer: tokenizer, extra: extra)
            } catch {
                throw SFTDataError(file: "", message: "the chat template failed: \(error)")
            }
        }
        var pieces: [(String, Bool)] = []
        var done = ""  // the text covered so far
        func extend(to text: String, assistant: Bool, what: String) throws {
            guard text.hasPrefix(done) else {
                throw SFTDataError(file: "", message: "the chat template renders \(what) in a way that does not extend the text before it, "
                                   + "so the assistant turns cannot be told apart (mask_prompt: false learns the whole conversation)")
            }
            let piece = String(text.dropFirst(done.count))
            if !piece.isEmpty { pieces.append((piece, assistant)) }
            done = text
        }
        for (i, m) in messages.enumerated() where m.role == "assistant" {
            try extend(to: try render(i, generation: true), assistant: false, what: "the prompt of messages[\(i)]")
            try extend(to: try render(i + 1, generation: false), assistant: true, what: "messages[\(i)]")
        }
        try extend(to: try render(messages.count, generation: false), assistant: false, what: "the end of the conversation")
        return pieces
    }
}

/// Rows of token ids ready for ``DecoderModel/loss(_:labels:segmentIDs:)``.
public struct SFTRow: Sendable, Equatable {
    public var ids: [Int]
    public var labels: [Int]
    /// 1, 2, ... for the packed examples, 0 for padding.
    public var segments: [Int]
    /// Source lines of the examples in the row.
    public var lines: [Int]
}

public enum SFTPacking {
    /// Packs examples into rows of exactly `length` tokens, first-fit by decreasing length (ties
    /// in file order): each example keeps its own segment id, so attention stays inside it and
    /// positions restart at 0; the rest of a row is padding (`pad` id, label -100, segment 0).
    /// Every example must be at most `length` tokens.
    public static func pack(_ examples: [SFTExample], length: Int, pad: Int) -> [SFTRow] {
        // Longest first; equal lengths in file order.
        let order = examples.indices.sorted { a, b in
            examples[a].ids.count != examples[b].ids.count ? examples[a].ids.count > examples[b].ids.count : a < b
        }
        var rows: [SFTRow] = []
        var free: [Int] = []
        for i in order {
            let e = examples[i]
            precondition(e.ids.count <= length, "SFTPacking.pack: an example of \(e.ids.count) tokens does not fit in \(length)")
            let r = free.firstIndex { $0 >= e.ids.count } ?? {
                rows.append(SFTRow(ids: [], labels: [], segments: [], lines: []))
                free.append(length)
                return rows.count - 1
            }()
            rows[r].ids += e.ids
            rows[r].labels += e.labels
            rows[r].segments += Array(repeating: rows[r].lines.count + 1, count: e.ids.count)
            rows[r].lines.append(e.line)
            free[r] -= e.ids.count
        }
        for r in rows.indices { Self.pad(&rows[r], to: length, with: pad) }
        return rows
    }

    /// One row per example, padded to `length` (for batches without packing).
    public static func single(_ e: SFTExample, length: Int, pad: Int) -> SFTRow {
        var row = SFTRow(ids: e.ids, labels: e.labels, segments: Array(repeating: 1, count: e.ids.count), lines: [e.line])
        Self.pad(&row, to: length, with: pad)
        return row
    }

    /// Pads `row` to `length` tokens (`pad` ids, label -100, segment 0).
    public static func pad(_ row: inout SFTRow, to length: Int, with pad: Int) {
        let n = length - row.ids.count
        guard n > 0 else { return }
        row.ids += Array(repeating: pad, count: n)
        row.labels += Array(repeating: -100, count: n)
        row.segments += Array(repeating: 0, count: n)
    }
}
