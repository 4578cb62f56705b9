import Foundation
import LatheIO
import LatheText
import XCTest
import _LatheTestSupport

/// Chat templates rendered as transformers renders them (Tests/Fixtures/text/chat_templates.json,
/// Tools/reference/make_chat_template_fixtures.py): SmolLM2's from its GGUF file, Gemma 3's,
/// Llama 3.1's and 3.2's, Qwen2.5's, on conversations with and without a system message, tools
/// and tool calls; and small templates for the corners of the language.
final class ChatTemplateTests: XCTestCase {
    /// The fixture's pinned `strftime_now` time, in UTC.
    static let fixtureDate: Date = {
        var c = DateComponents()
        (c.year, c.month, c.day, c.hour, c.minute, c.second) = (2024, 9, 26, 10, 30, 0)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(from: c)!
    }()

    func pinned(_ t: ChatTemplate) -> ChatTemplate {
        var t = t
        let date = Self.fixtureDate
        t.now = { date }
        t.timeZone = TimeZone(identifier: "UTC")!
        return t
    }

    func template(_ source: String, file: StaticString = #filePath, line: UInt = #line) throws -> ChatTemplate {
        do { return pinned(try ChatTemplate(source: source)) } catch {
            XCTFail("parse: \(error)", file: file, line: line)
            throw error
        }
    }

    func render(_ source: String, _ context: [String: JinjaValue] = [:]) throws -> String {
        try template(source).render(context: context)
    }

    /// The error rendering (or parsing) `source` gives.
    func failure(_ source: String, _ context: [String: JinjaValue] = [:], file: StaticString = #filePath, line: UInt = #line) -> ChatTemplateError? {
        do {
            let out = try pinned(try ChatTemplate(source: source)).render(context: context)
            XCTFail("expected an error, rendered \(visible(out))", file: file, line: line)
        } catch {
            return error
        }
        return nil
    }

    static func fixture() throws -> JSONValue { try fixtureJSON("chat_templates.json") }

    // MARK: - Fixture cases

    func testRealTemplatesRenderAsTransformers() throws {
        let root = try Self.fixture()
        var templates: [String: (ChatTemplate, String?, String?)] = [:]
        for (name, t) in root["templates"]?.objectMembers ?? [] {
            templates[name] = (try template(t["source"]?.stringValue ?? ""), t["bos_token"]?.stringValue, t["eos_token"]?.stringValue)
        }
        XCTAssertEqual(Set(templates.keys), ["smollm2", "gemma3", "llama3.1", "llama3.2", "qwen2.5"])
        let cases = root["cases"]?.arrayValue ?? []
        XCTAssertGreaterThanOrEqual(cases.count, 80)
        var raised = 0
        for c in cases {
            let name = c["name"]?.stringValue ?? "?"
            guard let (t, bos, eos) = templates[c["template"]?.stringValue ?? ""] else { XCTFail("\(name): no template"); continue }
            let messages = (c["messages"]?.arrayValue ?? []).map { m in
                ChatMessage(role: m["role"]?.stringValue ?? "", content: JinjaValue(json: m["content"] ?? .null),
                            extra: Dictionary(uniqueKeysWithValues: (m.objectMembers ?? []).filter { $0.key != "role" && $0.key != "content" }
                                .map { ($0.key, JinjaValue(json: $0.value)) }))
            }
            let extra = Dictionary(uniqueKeysWithValues: (c["extra"]?.objectMembers ?? []).map { ($0.key, JinjaValue(json: $0.value)) })
            let agp = c["add_generation_prompt"]?.boolValue ?? false
            do {
                let out = try t.render(messages: messages, addGenerationPrompt: agp, bosToken: bos, eosToken: eos, extra: extra)
                if let expected = c["expected"]?.stringValue {
                    XCTAssertEqual(out, expected, "\(name):\n got      \(visible(out))\n expected \(visible(expected))")
                } else {
                    XCTFail("\(name): expected the error \(c["error"]?.stringValue ?? "?"), rendered \(visible(out))")
                }
            } catch {
                if let expected = c["error"]?.stringValue {
                    XCTAssertEqual(error.kind, .raised, name)
                    XCTAssertEqual(error.message, expected, name)
                    XCTAssertGreaterThan(error.line, 0, name)
                    raised += 1
                } else {
                    XCTFail("\(name): \(error)")
                }
            }
        }
        XCTAssertGreaterThanOrEqual(raised, 10)
    }

    func testExpressionCornersRenderAsJinja2() throws {
        let root = try Self.fixture()
        let cases = root["expressions"]?.arrayValue ?? []
        XCTAssertGreaterThanOrEqual(cases.count, 40)
        for c in cases {
            let name = c["name"]?.stringValue ?? "?"
            let source = c["source"]?.stringValue ?? ""
            let context = Dictionary(uniqueKeysWithValues: (c["context"]?.objectMembers ?? []).map { ($0.key, JinjaValue(json: $0.value)) })
            do {
                let out = try render(source, context)
                if let expected = c["expected"]?.stringValue {
                    XCTAssertEqual(out, expected, "\(name):\n got      \(visible(out))\n expected \(visible(expected))")
                } else {
                    XCTFail("\(name): expected the error \(c["error"]?.stringValue ?? "?"), rendered \(visible(out))")
                }
            } catch {
                guard let expected = c["error"]?.stringValue, let error = error as? ChatTemplateError else { XCTFail("\(name): \(error)"); continue }
                // "Kind: message" as Python prints the exception; the message must be the same.
                let message = expected.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
                XCTAssertEqual(error.message, message, name)
                XCTAssertEqual(error.kind, expected.hasPrefix("TemplateError") ? .raised : .runtime, name)
                XCTAssertEqual(error.line, 1, name)
            }
        }
    }


    // MARK: - Errors

    func testUnknownTagNamesItsPlace() throws {
        let e = failure("Hello\n  {% frobnicate x %}")
        XCTAssertEqual(e?.kind, .unsupported)
        XCTAssertEqual(e?.line, 2)
        XCTAssertEqual(e?.column, 3)
        XCTAssertTrue(e?.message.contains("unknown tag 'frobnicate'") ?? false, "\(String(describing: e))")
        XCTAssertTrue(e?.description.contains("at 2:3") ?? false, "\(String(describing: e))")
        XCTAssertEqual(failure("{% include 'x.jinja' %}")?.kind, .unsupported)
        XCTAssertTrue(failure("{{ x | frobnicate }}")?.message.contains("no filter named 'frobnicate'") ?? false)
        XCTAssertTrue(failure("{{ x is frobnicated }}")?.message.contains("no test named 'frobnicated'") ?? false)
        // As in jinja2, inside an if an unknown filter only fails when it is applied.
        let t = try template("{% if x is string %}{{ x | from_json }}{% endif %}ok")
        XCTAssertEqual(try t.render(context: ["x": 1]), "ok")
        XCTAssertThrowsError(try t.render(context: ["x": "{}"])) { XCTAssertEqual(($0 as? ChatTemplateError)?.kind, .unsupported) }
        XCTAssertEqual(failure("{% for x in [1] %}{% if x %}{{ x | from_json }}{% endif %}{% endfor %}", [:])?.kind, .unsupported)
    }

    func testUnclosedAndStrayBlocks() {
        let unclosed = failure("{% for m in messages %}\n{% if m %}x{% endif %}")
        XCTAssertEqual(unclosed?.kind, .syntax)
        XCTAssertTrue(unclosed?.message.contains("unclosed 'for' block (opened at 1:1)") ?? false, "\(String(describing: unclosed))")
        XCTAssertTrue(unclosed?.message.contains("'endfor'") ?? false, "\(String(describing: unclosed))")
        let stray = failure("{% if x %}\n  {% endfor %}")
        XCTAssertEqual(stray?.line, 2)
        XCTAssertTrue(stray?.message.contains("unexpected 'endfor': the innermost open block is 'if'") ?? false, "\(String(describing: stray))")
        XCTAssertTrue(failure("{% endif %}")?.message.contains("no block is open") ?? false)
        XCTAssertTrue(failure("{{ 1 + }}")?.message.contains("expected an expression") ?? false)
        XCTAssertTrue(failure("{{ 'abc }}")?.message.contains("unterminated string") ?? false)
        XCTAssertTrue(failure("{# never closed")?.message.contains("missing end of comment") ?? false)
        XCTAssertTrue(failure("a {{ x ")?.message.contains("'}}'") ?? false)
        XCTAssertEqual(failure("{{ (1 + 2 }}")?.message, "unexpected '}', expected ')'")
        XCTAssertTrue(failure("{{ (1 + 2")?.message.contains("unclosed '('") ?? false)
        XCTAssertTrue(failure("{% break %}")?.message.contains("outside a for loop") ?? false)
    }

    func testRaiseExceptionSurfacesItsMessage() {
        let e = failure("{% if messages[0].role == 'system' %}\n{{ raise_exception('System role not supported') }}\n{% endif %}",
                        ["messages": [["role": "system", "content": "x"]]])
        XCTAssertEqual(e?.kind, .raised)
        XCTAssertEqual(e?.message, "System role not supported")
        XCTAssertEqual(e?.line, 2)
        XCTAssertEqual(e?.description, "chat template raised an exception at 2:4: System role not supported")
    }

    func testRuntimeErrorsArePlaced() {
        let e = failure("line one\n{{ 'n: ' + 3 }}")
        XCTAssertEqual(e?.kind, .runtime)
        XCTAssertEqual(e?.line, 2)
        XCTAssertEqual(e?.column, 10)
        XCTAssertEqual(e?.message, "can only concatenate str (not \"int\") to str")
        let u = failure("{% for m in messages %}{{ m.tool_calls[0].name }}{% endfor %}", ["messages": [["role": "user"]]])
        XCTAssertEqual(u?.message, "'dict object' has no attribute 'tool_calls'")
        XCTAssertEqual(failure("{{ '{:>5}'.format(1) }}")?.kind, .unsupported)
        XCTAssertEqual(failure("{{ 'x'.zfill(3) }}")?.kind, .unsupported)
        XCTAssertEqual(failure("{{ 9223372036854775807 + 1 }}")?.kind, .unsupported)
        XCTAssertEqual(failure("{{ x.update({}) }}", ["x": ["a": 1]])?.message, "access to attribute 'update' of 'dict' object is unsafe.")
        XCTAssertEqual(failure("{% set ns = namespace(_x=1) %}")?.kind, .runtime)
        XCTAssertEqual(failure("{% set s = 'x' %}{% set s.a = 1 %}")?.message, "cannot assign attribute on non-namespace object")
    }

    func testTooMuchOutputStops() throws {
        var t = try template("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}")
        t.limits.outputBytes = 1_000_000
        XCTAssertThrowsError(try t.render(context: [:])) { error in
            let e = error as? ChatTemplateError
            XCTAssertEqual(e?.kind, .limit)
            XCTAssertTrue(e?.message.contains("output exceeds 1000000 bytes") ?? false, "\(error)")
        }
        XCTAssertEqual(failure("{{ 'x' * 100000000 }}")?.kind, .limit)
        XCTAssertEqual(failure("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}")?.kind, .limit)
        XCTAssertEqual(failure("{{ range(100)|join('x' * 200000) }}")?.kind, .limit)
    }

    func testEndlessWorkStops() throws {
        let e = failure("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
        XCTAssertEqual(e?.kind, .limit)
        XCTAssertTrue(e?.message.contains("evaluation steps") ?? false, "\(String(describing: e))")
        let recursion = failure("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
        XCTAssertEqual(recursion?.kind, .limit)
        XCTAssertTrue(recursion?.message.contains("nested more than") ?? false, "\(String(describing: recursion))")
        // Deep nesting in the source is refused while parsing, before anything recurses deeply.
        XCTAssertEqual(failure("{{ " + String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000) + " }}")?.kind, .limit)
        XCTAssertEqual(failure("{{ 1" + String(repeating: " + 1", count: 5000) + " }}")?.kind, .limit)
        XCTAssertEqual(failure(String(repeating: "{% if true %}", count: 5000))?.kind, .limit)
        XCTAssertEqual(failure("{{ " + String(repeating: "-", count: 5000) + "1 }}")?.kind, .limit)
        // Work hidden in filters, membership tests and printing counts too.
        let hidden = [
            "{% set big = range(100000) | list %}{% for i in range(100000) %}{% if i in big %}{% endif %}{% endfor %}",
            "{% set s = 'x' * 9000000 %}{% for i in range(100000) %}{% if 'y' in s %}{% endif %}{% endfor %}",
            "{{ range(100000) | unique | list | length }}",
            "{% set s = 'x' * 9000000 %}{% for i in range(100000) %}{{ s | length }}{% set t = s | upper %}{% endfor %}",
        ]
        for source in hidden {
            let e = failure(source)
            XCTAssertEqual(e?.kind, .limit, source)
            XCTAssertTrue(e?.message.contains("evaluation steps") ?? false, "\(source): \(String(describing: e))")
        }
        // Values that are small in memory but huge when printed or joined.
        for source in ["{% set s = 'x' * 9000000 %}{{ [s] * 100000 }}", "{% set s = 'x' * 9000000 %}{{ ([s] * 100000) | tojson }}",
                       "{{ range(100000) | join('x' * 9000000) }}", "{{ 'x' | indent(100000000) }}", "{{ [1] | tojson(indent=100000000) }}",
                       "{{ ('x\\n' * 4000000) | indent(8) }}",
                       "{{ ('{}' * 1000).format(" + Array(repeating: "'x' * 100000", count: 1000).joined(separator: ", ") + ") }}"] {
            XCTAssertEqual(failure(source)?.kind, .limit, String(source.prefix(80)))
        }
        // Values that contain themselves or nest without end.
        XCTAssertEqual(failure("{% set ns = namespace(x=1) %}{% set ns.x = ns %}{{ ns }}")?.kind, .limit)
        XCTAssertEqual(failure("{% set ns = namespace(x=1) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}")?.kind, .limit)
    }

    /// Found while writing the fuzz target (Tools/fuzz/chat_template_fuzz.swift): 64-bit edge
    /// values trapped (overflow, an invalid radix, a negative index) or allocated without bound.
    /// The expected results are jinja2's.
    func testExtremeIntegersNeverTrap() throws {
        let min = "(-9223372036854775807 - 1)", max = "9223372036854775807"
        // range(): the element count overflowed Int.
        XCTAssertEqual(failure("{{ range(\(min), \(max)) }}")?.message,
                       "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).")
        XCTAssertEqual(failure("{{ range(\(max), \(min), -1) }}")?.kind, .runtime)
        XCTAssertEqual(try render("{{ range(5, 0, \(min)) | list }}{{ range(\(max) - 1, \(max), 2) | list }}"), "[5][9223372036854775806]")
        // -2**63 % -1 in the divisibleby test.
        XCTAssertEqual(try render("{{ \(min) is divisibleby(-1) }}"), "True")
        // str.center did not check its width like the center filter does.
        XCTAssertEqual(failure("{{ 'abc'.center(\(max)) }}")?.kind, .limit)
        XCTAssertEqual(try render("{{ 'abc'.center(\(min)) }}|{{ 'ab'.center(5, '*') }}"), "abc|**ab*")
        // int(base=…) outside 2...36 fell through to Swift's Int(_:radix:), which traps; jinja2
        // falls back to int(float(value)). Base 0 reads prefixes.
        XCTAssertEqual(try render("{{ '12'|int(base=1) }} {{ '12'|int(base=37) }} {{ '12'|int(base=-1) }} {{ '0x1f'|int(base=0) }} "
                                  + "{{ '0x1f'|int(base=16) }} {{ '-0b101'|int(base=0) }} {{ '012'|int(base=0) }} {{ '0x-1'|int(base=0) }}"),
                       "12 12 12 31 31 -5 12 0")
        // '{-1}' is a keyword field in Python, not index -1.
        XCTAssertEqual(failure("{{ '{-1}'.format(1) }}")?.message, "'-1'")
        XCTAssertEqual(failure("{{ '{99999999999999999999}'.format(1) }}")?.kind, .runtime)
        // [] * 10**18 built an array of 10**18 empty arrays first.
        XCTAssertEqual(try render("{{ ([] * \(max)) | length }}{{ ([1, 2] * 2) }}"), "0[1, 2, 1, 2]")
    }

    // MARK: - Semantics

    func testWhitespaceControlAsTransformersSetsIt() throws {
        // trim_blocks drops the newline after a block tag, lstrip_blocks the indentation before it.
        XCTAssertEqual(try render("{% for x in xs %}\n    {{ x }}\n{% endfor %}\n", ["xs": [1, 2]]), "    1\n    2\n")
        XCTAssertEqual(try render("a  {{- 'b' -}}  c"), "abc")
        XCTAssertEqual(try render("  {%+ if true %}x{% endif +%}\ny"), "  x\ny")
        XCTAssertEqual(try render("{{ 'x' }}\n{# c #}\ny\n"), "x\ny")
        XCTAssertEqual(try render("text\n"), "text")
        XCTAssertEqual(try render("text\n\n"), "text\n")
        XCTAssertEqual(try render("{% raw %}{{ x }}{% endraw %}"), "{{ x }}")
    }

    func testValuesPrintAsPython() throws {
        XCTAssertEqual(try render("{{ x }}", ["x": ["a": [1, 2.5, nil, true], "b": "it's"]]), "{'a': [1, 2.5, None, True], 'b': \"it's\"}")
        XCTAssertEqual(try render("{{ 1e100 }} {{ 1/3 }} {{ 100.0 }} {{ 12345678901234567890.0 }}"),
                       "1e+100 0.3333333333333333 100.0 1.2345678901234567e+19")
        XCTAssertEqual(try render("{{ x | tojson }}", ["x": ["k": "é\n", "n": 1.0]]), "{\"k\": \"é\\n\", \"n\": 1.0}")
        XCTAssertEqual(try render("{{ x | tojson(ensure_ascii=true) }}", ["x": "é😀"]), "\"\\u00e9\\ud83d\\ude00\"")
    }

    func testMessagesAndExtraFields() throws {
        let t = try template("{% for m in messages %}{{ m.role }}={{ m.content }}{{ m.name or '' }};{% endfor %}{{ tools is none }}{{ bos_token is defined }}")
        let out = try t.render(messages: [ChatMessage(role: "user", content: "hi", extra: ["name": "ann"]), ChatMessage(role: "assistant", content: .none)],
                               addGenerationPrompt: false, bosToken: nil, eosToken: "</s>")
        XCTAssertEqual(out, "user=hiann;assistant=None;TrueFalse")
        // The README's example: tools as nested literals.
        let tools = try template("{% for t in tools %}{{ t.function.name }}{{ t | tojson }}{% endfor %}")
        XCTAssertEqual(try tools.render(messages: [], addGenerationPrompt: true, bosToken: nil, eosToken: nil,
                                        extra: ["tools": [["type": "function", "function": ["name": "get_time"]]]]),
                       "get_time{\"type\": \"function\", \"function\": {\"name\": \"get_time\"}}")
        XCTAssertEqual(ChatMessage(role: "tool", content: "x", extra: ["b": 1, "a": 2]).templateValue,
                       ["role": "tool", "content": "x", "a": 2, "b": 1])
    }

    func testStrftimeNowUsesTheGivenClock() throws {
        var t = try ChatTemplate(source: "{{ strftime_now('%d %b %Y, %-I:%M %p (%A, day %j)') }}")
        t.now = { Self.fixtureDate.addingTimeInterval(3 * 3600 + 5 * 86400) }
        t.timeZone = TimeZone(identifier: "UTC")!
        XCTAssertEqual(try t.render(context: [:]), "01 Oct 2024, 1:30 PM (Tuesday, day 275)")
    }

    func testTokenTextOfSpecialTokens() throws {
        let tokenizer = try loadTokenizer(contentsOf: textFixtures.appendingPathComponent("bpe-llama3.json"))
        let bos = try XCTUnwrap(tokenizer.bos)
        XCTAssertEqual(tokenizer.tokenText(for: bos), "<|begin_of_text|>")
        XCTAssertNil(tokenizer.tokenText(for: nil))
        let t = try ChatTemplate(source: "{{ bos_token }}{{ messages[0].content }}")
        XCTAssertEqual(try t.render(messages: [ChatMessage(role: "user", content: "x")], addGenerationPrompt: true, tokenizer: tokenizer),
                       "<|begin_of_text|>x")
    }
}
