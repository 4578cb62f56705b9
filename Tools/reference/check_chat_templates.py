#!/usr/bin/env python3
"""Prepares a by-hand check of LatheText's ChatTemplate against many real chat templates (not a
unit test: the templates are not in the repository). For every `*.jinja` file in a folder
(llama.cpp keeps some seventy in `models/templates`; the llama-cpp-python 0.3.36 sdist vendors
them), renders 14 conversations (7 shapes: system and user, multi-turn, user only, reasoning
content, content parts, tools with one and with two tool calls; each with and without the
generation prompt) with transformers' `render_jinja_template`, the renderer behind
`apply_chat_template`, and writes each output or error to OUT (default
/tmp/lathe-chat-template-check.json). `strftime_now` is pinned to 2024-09-26 10:30:00.

    pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36   # unpack it
    python3 Tools/reference/check_chat_templates.py llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates
    LATHE_CHAT_TEMPLATE_CHECK=/tmp/lathe-chat-template-check.json \\
        swift test -c release --disable-swift-testing --filter ChatTemplateTests/testManyRealTemplates

Needs transformers 5.x (with jinja2 >= 3.1.6). The Swift side prints how many renderings agree.
"""
import datetime, glob, json, os, sys

import transformers.utils.chat_template_utils as ctu


class FixedDatetime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime.datetime(2024, 9, 26, 10, 30, 0)


ctu.datetime = FixedDatetime

CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
CONVERSATIONS = {
    "system-user": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hi there"}],
    "multi-turn": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
                   {"role": "assistant", "content": "Hi! How can I help?"}, {"role": "user", "content": "Tell me a joke."}],
    "user": [{"role": "user", "content": "What is 2+2?"}],
    "reasoning": [{"role": "user", "content": "Q1"},
                  {"role": "assistant", "content": "<think>hmm</think>A1", "reasoning_content": "hmm"},
                  {"role": "user", "content": "Q2 with \"quotes\" & <tags>\n"}],
    "content-parts": [{"role": "system", "content": [{"type": "text", "text": "Sys parts"}]},
                      {"role": "user", "content": [{"type": "text", "text": "Look "}, {"type": "image"}, {"type": "text", "text": "at this"}]}],
    "tools": [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": "", "tool_calls": [CALL]},
              {"role": "tool", "content": "sunny", "name": "get_weather"}],
    "tools-two-calls": [{"role": "system", "content": "S"}, {"role": "user", "content": "Two calls"},
                        {"role": "assistant", "content": None, "tool_calls": [
                            {"id": "call_1", **CALL},
                            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
                        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                        {"role": "tool", "tool_call_id": "call_2", "content": "rainy"},
                        {"role": "assistant", "content": "Sunny and rainy."}],
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    folder = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/lathe-chat-template-check.json"
    cases = []
    for path in sorted(glob.glob(os.path.join(folder, "*.jinja"))):
        source = open(path, encoding="utf-8").read()
        for name, messages in CONVERSATIONS.items():
            tools = TOOLS if name.startswith("tools") else None
            for agp in (True, False):
                case = {"template": os.path.basename(path), "conversation": name, "messages": messages, "tools": tools,
                        "add_generation_prompt": agp}
                try:
                    rendered, _ = ctu.render_jinja_template(conversations=[messages], tools=tools, chat_template=source,
                                                            add_generation_prompt=agp, bos_token="<s>", eos_token="</s>")
                    case["expected"] = rendered[0]
                except Exception as e:  # noqa: BLE001 - the case records what transformers raised
                    case["error"] = f"{type(e).__name__}: {e}"
                cases.append(case)
    sources = {os.path.basename(p): open(p, encoding="utf-8").read() for p in sorted(glob.glob(os.path.join(folder, "*.jinja")))}
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"templates": sources, "cases": cases}, f, ensure_ascii=False)
    print(f"wrote {out}: {len(sources)} templates, {len(cases)} renderings ({sum('error' in c for c in cases)} raise)")


if __name__ == "__main__":
    main()
