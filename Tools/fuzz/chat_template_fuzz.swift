// libFuzzer target for LatheText's Jinja chat-template interpreter (Sources/LatheText/ChatTemplate*.swift,
// JinjaValue.swift): the input is a template, optionally followed by a NUL byte and a JSON document
// (read with LatheIO's JSONParser) giving the data: an array is the message list; an object gives
// `messages`, `bos_token`, `eos_token` and further variables (`tools`, `documents`,
// `enable_thinking`, anything); without one (or when it does not parse) a fixed conversation of
// five messages with tools and a tool call is used. The template is parsed, then rendered with
// add_generation_prompt true and false: through `render(messages:…)` when every message is an
// object with a string role, else through `render(context:)` with the raw values. Any trap,
// AddressSanitizer report, timeout, libFuzzer malloc/RSS limit or stack overflow is a bug; a
// ChatTemplateError is the expected outcome for a bad template. Also checked: outputs stay within
// `limits.outputBytes`, errors have a message and a place inside the template, and a rendering's
// CPU time stays in line with the step limit (work that escapes `step` accounting shows up here).
// The fuzzer renders with smaller limits than the defaults (100,000 steps, 1 MB of output; the
// nesting limit is the default 256) so that templates that loop until stopped cost milliseconds.
// Not part of the package build: JSON.swift is compiled first as a module named LatheIO
// (JinjaValue.swift imports it), then the interpreter's files, Tokenizer.swift (ChatTemplate.swift
// extends its protocol) and this one as the module LatheText. Run from the repository root:
//
//   mkdir -p /tmp/fuzzmods && swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name LatheIO \
//     -emit-module -emit-module-path /tmp/fuzzmods/LatheIO.swiftmodule -emit-object -o /tmp/fuzzmods/LatheIO.o \
//     Sources/LatheIO/JSON.swift
//   swiftc -sanitize=fuzzer,address -parse-as-library -O -use-ld=lld -module-name LatheText -I /tmp/fuzzmods \
//     Tools/fuzz/chat_template_fuzz.swift Sources/LatheText/ChatTemplate*.swift Sources/LatheText/JinjaValue.swift \
//     Sources/LatheText/Tokenizer.swift /tmp/fuzzmods/LatheIO.o -o /tmp/chat_template_fuzz
//   mkdir -p /tmp/chat_template_corpus && cp Tools/fuzz/chat_template_seeds/* /tmp/chat_template_corpus/
//   SWIFT_BACKTRACE=enable=no /tmp/chat_template_fuzz -runs=1000000 -max_len=8192 -timeout=10 \
//     -rss_limit_mb=2048 -malloc_limit_mb=512 -dict=Tools/fuzz/chat_template.dict /tmp/chat_template_corpus
//
// The seeds (template, NUL, JSON data) are the real templates of Tests/Fixtures/text/chat_templates.json
// (SmolLM2, Gemma 3, Llama 3.1 and 3.2, Qwen2.5, made by Tools/reference/make_chat_template_fixtures.py)
// with each of their conversations (tools, tool calls, raise_exception cases), its 50 small
// templates for jinja2's corners with their variables, templates that run into each limit
// (limit-*), and 64-bit edge cases that trapped or over-allocated before the fixes made while
// writing this target (edge-*: range() counts, -2**63 % -1, str.center widths, int(base=…),
// '{-1}'.format, [] * 2**63-1). SWIFT_BACKTRACE=enable=no keeps Swift's backtracer (which ASan
// reports on) out of a trap. Replay inputs: FUZZ_VERBOSE=1 /tmp/chat_template_fuzz FILE... (prints
// each outcome; FUZZ_DEFAULT_LIMITS=1 renders with the default limits instead).

import Foundation
import LatheIO

/// A failed invariant: the message on stderr, then a crash libFuzzer records.
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        FileHandle.standardError.write(Data(("chat_template_fuzz: " + message() + "\n").utf8))
        abort()
    }
}

/// FUZZ_VERBOSE=1 prints each input's outcome (for checking seeds and replaying inputs).
let verbose = ProcessInfo.processInfo.environment["FUZZ_VERBOSE"] != nil

/// FUZZ_DEFAULT_LIMITS=1 renders with ChatTemplate.Limits' defaults (for replaying inputs).
let defaultLimits = ProcessInfo.processInfo.environment["FUZZ_DEFAULT_LIMITS"] != nil

/// CPU seconds one input (parse and both renderings) may take with the fuzzer's limits: about 100
/// times what a template that runs into the 100,000-step limit takes under ASan.
let cpuBudget = 1.0

let defaultMessages: [ChatMessage] = [
    ChatMessage(role: "system", content: "You are helpful."),
    ChatMessage(role: "user", content: "What is 2 + 2? Use the tool."),
    ChatMessage(role: "assistant", content: .none, extra: [
        "tool_calls": [["type": "function", "function": ["name": "add", "arguments": ["a": 2, "b": 2]]]],
    ]),
    ChatMessage(role: "tool", content: "4", extra: ["name": "add"]),
    ChatMessage(role: "user", content: .array([["type": "text", "text": "Thanks! ünïcödé 🙂"]])),
]

let defaultExtra: [String: JinjaValue] = [
    "tools": [["type": "function", "function": ["name": "add", "description": "Adds two numbers.",
                                                "parameters": ["type": "object", "properties": ["a": ["type": "integer"], "b": ["type": "integer"]]]]]],
    "date_string": "26 Sep 2024",
]

let fixedDate = Date(timeIntervalSince1970: 1_727_346_600)  // 2024-09-26 10:30 UTC, as the fixtures pin it
let utc = TimeZone(identifier: "UTC")!

func cpuSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// The messages as `render(messages:)` takes them, or nil if one is not an object with a string role.
func chatMessages(_ json: [JSONValue]) -> [ChatMessage]? {
    var out: [ChatMessage] = []
    for m in json {
        guard let members = m.objectMembers, let role = m["role"]?.stringValue else { return nil }
        var extra: [String: JinjaValue] = [:]
        for (k, v) in members where k != "role" && k != "content" { extra[k] = JinjaValue(json: v) }
        out.append(ChatMessage(role: role, content: m["content"].map(JinjaValue.init(json:)) ?? .none, extra: extra))
    }
    return out
}

/// A rendering's outcome: the text or the error, checked.
func checkOutcome(_ template: ChatTemplate, _ lines: Int, _ result: () throws(ChatTemplateError) -> String, _ what: String) {
    do {
        let out = try result()
        check(out.utf8.count <= template.limits.outputBytes, "\(what): \(out.utf8.count) bytes of output")
        if verbose { print("\(what): \(out.utf8.count) bytes: \(String(out.prefix(200)).debugDescription)") }
    } catch {
        check(!error.message.isEmpty && !error.description.isEmpty, "\(what): empty error")
        check(error.line >= 0 && error.line <= lines && error.column >= 0, "\(what): error place \(error.line):\(error.column) outside \(lines) lines: \(error)")
        if verbose { print("\(what): \(error)") }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let cut = bytes.firstIndex(of: 0) ?? size
    let source = String(decoding: bytes[..<cut], as: UTF8.self)
    var json: JSONValue?
    if cut < size {
        do { json = try JSONParser.parse(Array(bytes[(cut + 1)...])) } catch {
            if verbose { print("data: \(error)") }
        }
    }
    let lines = normalizedTemplateSource(source).reduce(1) { $1 == "\n" ? $0 + 1 : $0 }

    let start = cpuSeconds()
    var template: ChatTemplate
    do {
        template = try ChatTemplate(source: source)
    } catch {
        check(error.kind != .raised, "a parse error of kind raised: \(error)")
        check(!error.message.isEmpty && error.line >= 1 && error.line <= lines && error.column >= 1,
              "parse error place \(error.line):\(error.column) outside \(lines) lines: \(error)")
        if verbose { print("parse: \(error)") }
        return 0
    }
    if !defaultLimits {
        template.limits.steps = 100_000
        template.limits.outputBytes = 1_000_000
    }
    template.now = { fixedDate }
    template.timeZone = utc

    var messages = defaultMessages, extra = defaultExtra
    var rawMessages: JinjaValue?
    var bos: String? = "<s>", eos: String? = "</s>"
    switch json {
    case .array(let a)?:
        if let m = chatMessages(a) { messages = m } else { rawMessages = JinjaValue(json: .array(a)) }
    case .object(let members)?:
        extra = [:]
        for (k, v) in members {
            switch k {
            case "messages":
                if let a = v.arrayValue, let m = chatMessages(a) { messages = m } else { rawMessages = JinjaValue(json: v) }
            case "bos_token": bos = v.stringValue
            case "eos_token": eos = v.stringValue
            default: extra[k] = JinjaValue(json: v)
            }
        }
    default: break
    }
    for prompt in [true, false] {
        let what = "render(add_generation_prompt: \(prompt))"
        if let rawMessages {
            var context = extra
            context["messages"] = rawMessages
            context["add_generation_prompt"] = .bool(prompt)
            if let bos { context["bos_token"] = .string(bos) }
            if let eos { context["eos_token"] = .string(eos) }
            checkOutcome(template, lines, { () throws(ChatTemplateError) in try template.render(context: context) }, what + " with raw messages")
        } else {
            checkOutcome(template, lines, { () throws(ChatTemplateError) in
                try template.render(messages: messages, addGenerationPrompt: prompt, bosToken: bos, eosToken: eos, extra: extra)
            }, what)
        }
    }
    let cpu = cpuSeconds() - start
    check(cpu < cpuBudget * (defaultLimits ? 100 : 1), "\(cpu) CPU seconds for one input with a limit of \(template.limits.steps) steps")
    return 0
}
