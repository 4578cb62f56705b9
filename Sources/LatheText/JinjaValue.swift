import LatheIO

/// Data a chat template reads: the JSON-like values Hugging Face passes to its templates
/// (messages, tools, documents, `add_generation_prompt`, custom keyword arguments).
///
/// Objects keep their keys in order, as Python dicts do; the order shows in `tojson` and in
/// `items()`. Build values with literals (`["type": "function", "days": 2]`) or from parsed
/// JSON with ``init(json:)``.
public enum JinjaValue: Sendable, Equatable {
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JinjaValue])
    case object([(key: String, value: JinjaValue)])

    public static func == (a: JinjaValue, b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.none, .none): true
        case let (.bool(x), .bool(y)): x == y
        case let (.int(x), .int(y)): x == y
        case let (.double(x), .double(y)): x == y
        case let (.string(x), .string(y)): x == y
        case let (.array(x), .array(y)): x == y
        case let (.object(x), .object(y)): x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: false
        }
    }

    /// The value of a parsed JSON document: numbers written without a fraction or exponent
    /// become `.int` when they fit, other numbers `.double`.
    public init(json: JSONValue) {
        switch json {
        case .null: self = .none
        case .bool(let b): self = .bool(b)
        case .string(let s): self = .string(s)
        case .number(let text):
            if let i = JSONValue.number(text).intValue { self = .int(i) } else { self = .double(Double(text) ?? .nan) }
        case .array(let a): self = .array(a.map(JinjaValue.init(json:)))
        case .object(let members): self = .object(members.map { ($0.key, JinjaValue(json: $0.value)) })
        }
    }

    /// The value of `key` if this is an object that has it.
    public subscript(key: String) -> JinjaValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }
}

extension JinjaValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JinjaValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JinjaValue)...) { self = .object(elements.map { (key: $0.0, value: $0.1) }) }
    public init(nilLiteral: ()) { self = .none }
}
