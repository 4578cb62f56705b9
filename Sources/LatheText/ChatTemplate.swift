import Foundation

/// A Jinja chat template, as Hugging Face tokenizers carry them (`tokenizer_config.json`'s
/// `chat_template`, the GGUF key `tokenizer.chat_template`), rendered as transformers'
/// `apply_chat_template` renders it.
///
/// The interpreter covers the subset of Jinja that chat templates use, with jinja2's semantics
/// in the environment transformers builds (`trim_blocks`, `lstrip_blocks`, loop controls, a
/// `raise_exception` function, a `tojson` filter that keeps non-ASCII text, `strftime_now`):
/// text, `{{ … }}`, `if`/`elif`/`else`, `for` (with `loop.*`, `else`, an `if` filter and
/// unpacking), `set` (also `ns.attr = …` and block sets), `macro`, `break`/`continue`, `with`,
/// `filter`, `raw`, `generation`, comments and whitespace control; Python's values, operators,
/// formatting (`None`, `True`, `[1, 'a']`) and the filters, tests and string/dict methods that
/// templates call. Anything else is an error naming the line and column, never a crash, and
/// rendering is bounded in output size, work and nesting so that a hostile template cannot hang
/// or exhaust memory.
///
/// ```swift
/// let template = try ChatTemplate(source: model.chatTemplate!)
/// let prompt = try template.render(messages: [ChatMessage(role: "user", content: "Hi")],
///                                  addGenerationPrompt: true, bosToken: "<bos>", eosToken: "<eos>")
/// ```
///
/// Differences from jinja2 that templates could notice: tuples from `items()` print as tuples
/// but `keys()`/`values()`/`items()` print as lists (not `dict_keys([…])`); dictionary keys are
/// strings; `safe` text is plain text (no `Markup` escaping rules); integers are 64-bit.
public struct ChatTemplate: Sendable {
    /// The template text as given.
    public let source: String
    let normalized: [Unicode.Scalar]
    let nodes: [JinjaNode]

    /// Bounds on one rendering.
    public struct Limits: Sendable {
        /// Bytes of text a rendering may produce, counting every string it builds on the way.
        public var outputBytes = 10_000_000
        /// Work: template nodes and expressions evaluated, plus elements and bytes (in 16s) that
        /// filters, comparisons and printing go through (a loop over `range(100000)` twice
        /// nested stops here instead of running for hours).
        public var steps = 10_000_000
        /// Nesting of evaluation: blocks, expressions and macro calls inside one another.
        public var depth = 256
        public init() {}
    }
    public var limits = Limits()

    /// The time `strftime_now` formats (transformers uses the local time); set it for
    /// reproducible output.
    public var now: @Sendable () -> Date = { Date() }
    /// The time zone `strftime_now` formats `now` in.
    public var timeZone: TimeZone = .current

    /// Parses `source` once; errors name the line and column.
    public init(source: String) throws(ChatTemplateError) {
        self.source = source
        normalized = normalizedTemplateSource(source)
        nodes = try JinjaParser.parse(normalized)
    }

    /// The text of `messages` as the model expects it.
    ///
    /// The template sees `messages` (dicts with `role`, `content` and each message's extra
    /// fields), `add_generation_prompt`, `bos_token` and `eos_token` (left undefined when nil),
    /// `tools` and `documents` (`none`, as transformers passes them, unless `extra` sets them),
    /// and every entry of `extra` (`tools`, `date_string`, `enable_thinking`, …).
    ///
    /// - Throws: ``ChatTemplateError``; `raise_exception(message)` in the template gives kind
    ///   `.raised` with that message.
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool, bosToken: String?, eosToken: String?,
                       extra: [String: JinjaValue] = [:]) throws(ChatTemplateError) -> String {
        var context: [String: JinjaValue] = [
            "messages": .array(messages.map(\.templateValue)),
            "add_generation_prompt": .bool(addGenerationPrompt),
            "tools": .none,
            "documents": .none,
        ]
        if let bosToken { context["bos_token"] = .string(bosToken) }
        if let eosToken { context["eos_token"] = .string(eosToken) }
        context.merge(extra) { $1 }
        return try render(context: context)
    }

    /// The template rendered with exactly these variables (besides the global functions).
    public func render(context: [String: JinjaValue]) throws(ChatTemplateError) -> String {
        let interpreter = JinjaInterpreter(template: self)
        return try interpreter.render(context: context)
    }
}

/// One message of a conversation, as chat templates read it (a dict with `role`, `content` and
/// any extra fields such as `tool_calls`).
public struct ChatMessage: Sendable, Equatable {
    public var role: String
    /// Usually a string; `.none` for an assistant turn that only calls tools, a list of parts
    /// (`[["type": "text", "text": "…"]]`) for multimodal templates.
    public var content: JinjaValue
    /// Further fields (`tool_calls`, `name`, `tool_call_id`, …), after `role` and `content` in
    /// key order.
    public var extra: [String: JinjaValue]

    public init(role: String, content: String, extra: [String: JinjaValue] = [:]) {
        self.init(role: role, content: .string(content), extra: extra)
    }

    public init(role: String, content: JinjaValue, extra: [String: JinjaValue] = [:]) {
        self.role = role
        self.content = content
        self.extra = extra
    }

    /// The dict the template sees.
    public var templateValue: JinjaValue {
        var members: [(key: String, value: JinjaValue)] = [("role", .string(role)), ("content", content)]
        for key in extra.keys.sorted() where key != "role" && key != "content" { members.append((key, extra[key]!)) }
        return .object(members)
    }
}

/// Why a template could not be parsed or rendered, with the place in the template.
public struct ChatTemplateError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The template is not valid Jinja (unknown token, unclosed block, stray end tag).
        case syntax
        /// Valid Jinja outside the subset implemented here (an `include`, an unknown filter).
        case unsupported
        /// The template called `raise_exception(message)`: ``message`` is its argument.
        case raised
        /// Evaluation failed where jinja2 fails too (an undefined value used, a type error).
        case runtime
        /// The rendering hit one of ``ChatTemplate/Limits``.
        case limit
    }
    public let kind: Kind
    public let message: String
    /// 1-based line and column (in characters) in the template; 0 when no place applies.
    public let line: Int
    public let column: Int

    public init(kind: Kind, message: String, line: Int, column: Int) {
        (self.kind, self.message, self.line, self.column) = (kind, message, line, column)
    }

    init(_ kind: Kind, _ message: String, source: [Unicode.Scalar], offset: Int) {
        let (line, column) = Self.lineColumn(source, offset)
        self.init(kind: kind, message: message, line: line, column: column)
    }

    static func lineColumn(_ source: [Unicode.Scalar], _ offset: Int) -> (Int, Int) {
        var line = 1, column = 1
        for s in source.prefix(max(0, offset)) {
            if s == "\n" { line += 1; column = 1 } else { column += 1 }
        }
        return (line, column)
    }

    public var description: String {
        let place = line > 0 ? " at \(line):\(column)" : ""
        switch kind {
        case .syntax: return "chat template syntax error\(place): \(message)"
        case .unsupported: return "chat template\(place) uses something not supported: \(message)"
        case .raised: return "chat template raised an exception\(place): \(message)"
        case .runtime: return "chat template error\(place): \(message)"
        case .limit: return "chat template stopped\(place): \(message)"
        }
    }
}

/// An error inside the interpreter, before it knows its place in the template.
enum JinjaRuntimeError: Error {
    /// jinja2's `UndefinedError`.
    case undefined(String)
    /// Python's `TypeError`, `ValueError`, `ZeroDivisionError` …
    case type(String)
    case raised(String)
    case unsupported(String)
    case limit(String)
    /// An error that already has its place.
    case located(ChatTemplateError)

    var kind: ChatTemplateError.Kind {
        switch self {
        case .undefined, .type: .runtime
        case .raised: .raised
        case .unsupported: .unsupported
        case .limit: .limit
        case .located(let e): e.kind
        }
    }

    var message: String {
        switch self {
        case .undefined(let m), .type(let m), .raised(let m), .unsupported(let m), .limit(let m): m
        case .located(let e): e.message
        }
    }
}

enum JinjaLimits {
    /// Nesting of values (lists in lists, namespaces holding themselves): printing, comparing
    /// and converting recurse this deep at most.
    static let valueNesting = 100
    /// jinja2's sandbox refuses larger ranges.
    static let maxRange = 100_000
    /// Elements a list built by the template may have.
    static let listElements = 1_000_000
    /// Bytes one printed or serialised value may take.
    static let textBytes = 64_000_000
}

extension Tokenizer {
    /// The text of a special token as chat templates write it (`bos_token`, `eos_token`): the
    /// added token's content, else the vocabulary's string for it (byte-level BPE vocabularies
    /// write special tokens literally).
    public func tokenText(for id: Int?) -> String? {
        guard let id else { return nil }
        return addedTokens.first { $0.id == id }?.content ?? token(for: id)
    }
}

extension ChatTemplate {
    /// ``render(messages:addGenerationPrompt:bosToken:eosToken:extra:)`` with `bos_token` and
    /// `eos_token` taken from `tokenizer`.
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool, tokenizer: any Tokenizer,
                       extra: [String: JinjaValue] = [:]) throws(ChatTemplateError) -> String {
        try render(messages: messages, addGenerationPrompt: addGenerationPrompt, bosToken: tokenizer.tokenText(for: tokenizer.bos),
                   eosToken: tokenizer.tokenText(for: tokenizer.eos), extra: extra)
    }
}
