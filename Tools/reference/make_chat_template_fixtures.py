#!/usr/bin/env python3
"""Writes Tests/Fixtures/text/chat_templates.json (used by LatheTextTests' ChatTemplateTests).

Run from the repository root with a Python that has `transformers` (5.x, with jinja2 >= 3.1.6) and
`gguf` (gguf-py):

    python3 Tools/reference/make_chat_template_fixtures.py

Tested with transformers 5.25.0, jinja2 3.1.6 and gguf 0.19. Every expected string is rendered by
transformers' own `render_jinja_template` (the function `apply_chat_template` calls after adding
the tokenizer's special tokens to the keyword arguments): its jinja2 environment is
`ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)` with the `loopcontrols`
extension, `raise_exception`, `strftime_now`, `namespace`, `dict` and its own `tojson`
(`json.dumps(x, ensure_ascii=False, ...)`). `strftime_now` is pinned to 2024-09-26 10:30:00 so
that the date-dependent Llama 3.2 cases are reproducible. For SmolLM2 every case is also rendered
by the tokenizer transformers builds from the GGUF file (`apply_chat_template(tokenize=False)`),
and the two must agree.

The templates are text facts, written into the fixture:

- SmolLM2-135M-Instruct: read from the GGUF file's `tokenizer.chat_template`
  (`~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf`, or $LATHE_MODELS).
- Gemma 3: the 270M base GGUF file carries no chat template, so this is the instruction-tuned
  models' template (google/gemma-3-*-it `tokenizer_config.json`'s `chat_template`, as quoted
  publicly, e.g. in ShishirPatil/gorilla's BFCL Gemma handler).
- Llama 3.1 and 3.2 (meta-llama/Llama-3.1-8B-Instruct, Llama-3.2-3B-Instruct) and Qwen2.5
  (Qwen/Qwen2.5-7B-Instruct): the `chat_template`s as llama.cpp keeps copies of them
  (`models/templates/*.jinja` in llama.cpp, vendored in the llama-cpp-python 0.3.36 sdist).

Besides the conversations, `expressions` holds small templates that exercise corners of the
Jinja subset (scoping, whitespace control, Python formatting of values, filters and tests), with
the output jinja2 gives in the same environment, or the error it raises.
"""
import datetime, json, os, sys

import jinja2
import transformers
import transformers.utils.chat_template_utils as ctu

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "text", "chat_templates.json")
MODELS = os.environ.get("LATHE_MODELS", os.path.expanduser("~/.cache/lathe/models"))
NOW = datetime.datetime(2024, 9, 26, 10, 30, 0)


class FixedDatetime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return NOW


# transformers' strftime_now calls `datetime.now()` through this module's global.
ctu.datetime = FixedDatetime

# The instruction-tuned Gemma 3 template (google/gemma-3-*-it tokenizer_config.json).
GEMMA3 = r"""{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

# meta-llama/Llama-3.1-8B-Instruct (llama.cpp models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja).
LLAMA31 = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

# meta-llama/Llama-3.2-3B-Instruct (llama.cpp models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja).
LLAMA32 = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

# Qwen/Qwen2.5-7B-Instruct (llama.cpp models/templates/Qwen-Qwen2.5-7B-Instruct.jinja).
QWEN25 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""


def smollm2_template():
    import gguf

    reader = gguf.GGUFReader(os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    return reader.fields["tokenizer.chat_template"].contents()


TEMPLATES = {
    # name: (source, bos_token, eos_token, where the text comes from)
    "smollm2": (smollm2_template(), "<|im_start|>", "<|im_end|>",
                "SmolLM2-135M-Instruct.Q4_1.gguf, tokenizer.chat_template (bos/eos: tokens 1 and 2)"),
    "gemma3": (GEMMA3, "<bos>", "<eos>", "google/gemma-3-*-it tokenizer_config.json (not in the 270M base GGUF file)"),
    "llama3.1": (LLAMA31, "<|begin_of_text|>", "<|eot_id|>", "meta-llama/Llama-3.1-8B-Instruct (llama.cpp models/templates)"),
    "llama3.2": (LLAMA32, "<|begin_of_text|>", "<|eot_id|>", "meta-llama/Llama-3.2-3B-Instruct (llama.cpp models/templates)"),
    "qwen2.5": (QWEN25, None, "<|im_end|>", "Qwen/Qwen2.5-7B-Instruct (llama.cpp models/templates; no BOS token)"),
}


def msg(role, content, **extra):
    return {"role": role, "content": content, **extra}


SYSTEM = msg("system", "You are a concise assistant. Answer in one sentence.")
SYSTEM_PADDED = msg("system", "  Be brief.\n")
USER = msg("user", "What is the capital of France?")
USER_PADDED = msg("user", "\n  Tell me a joke about \"quotes\" & <tags>, please.  \n")
ASSISTANT = msg("assistant", "The capital of France is Paris.")
USER2 = msg("user", "And of Japan? 日本の首都は？ Café ☕ 😀")
ASSISTANT2 = msg("assistant", " Tokyo. \n")

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. \"Paris\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
            },
            "required": ["city"],
        },
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "description": "The time now.", "parameters": {"type": "object", "properties": {}}}}
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius", "days": 2}}}
CALL2 = {"type": "function", "function": {"name": "get_time", "arguments": {}}}
TOOL_TURN = [
    USER,
    msg("assistant", "", tool_calls=[CALL]),
    msg("tool", "{\"temperature\": 21.5, \"sky\": \"clear\"}"),
]
QWEN_TOOL_TURN = [
    msg("system", "You can call tools."),
    USER,
    msg("assistant", "Let me check.", tool_calls=[CALL, CALL2]),
    msg("tool", "{\"temperature\": 21.5}"),
    msg("tool", "10:30"),
    msg("assistant", "It is 21.5 °C at 10:30."),
    msg("user", "Thanks!"),
]

CONVERSATIONS = {
    # name: (messages, extra keyword arguments)
    "system-user": ([SYSTEM, USER], {}),
    "user-only": ([USER], {}),
    "multi-turn": ([SYSTEM, USER, ASSISTANT, USER2], {}),
    "multi-turn-no-system": ([USER, ASSISTANT, USER2, ASSISTANT2], {}),
    "whitespace-and-quotes": ([SYSTEM_PADDED, USER_PADDED, ASSISTANT2, USER], {}),
}
PER_TEMPLATE = {
    "smollm2": {},
    "gemma3": {
        "roles-do-not-alternate": ([USER, USER2], {}),
        "assistant-first": ([SYSTEM, ASSISTANT, USER], {}),
        "content-parts": ([msg("system", [{"type": "text", "text": "Describe images.  "}]),
                           msg("user", [{"type": "image"}, {"type": "text", "text": " What is this? "}])], {}),
        "invalid-content": ([msg("user", 42)], {}),
    },
    "llama3.1": {
        "tools-in-user-message": ([SYSTEM] + TOOL_TURN, {"tools": [WEATHER_TOOL, TIME_TOOL]}),
        "tools-in-system": (TOOL_TURN, {"tools": [WEATHER_TOOL], "tools_in_user_message": False}),
        "builtin-tools": ([USER, msg("assistant", None, tool_calls=[{"function": {"name": "brave_search", "arguments": {"query": "weather Paris"}}}]),
                           msg("ipython", {"result": "sunny"})],
                          {"builtin_tools": ["brave_search", "code_interpreter", "wolfram_alpha"], "date_string": "01 Jan 2025"}),
        "two-tool-calls": ([USER, msg("assistant", "", tool_calls=[CALL, CALL2])], {"tools": [WEATHER_TOOL]}),
        "tools-without-user": ([SYSTEM], {"tools": [WEATHER_TOOL]}),
    },
    "llama3.2": {
        "date-string": ([SYSTEM, USER], {"date_string": "02 Feb 2025"}),
        "tools-in-user-message": ([SYSTEM] + TOOL_TURN, {"tools": [WEATHER_TOOL]}),
        "custom-tools-in-system": (TOOL_TURN, {"custom_tools": [TIME_TOOL], "tools_in_user_message": False}),
        "two-tool-calls": ([USER, msg("assistant", "", tool_calls=[CALL, CALL2])], {"tools": [WEATHER_TOOL]}),
    },
    "qwen2.5": {
        "tools-default-system": (TOOL_TURN, {"tools": [WEATHER_TOOL, TIME_TOOL]}),
        "tools-with-system": (QWEN_TOOL_TURN, {"tools": [WEATHER_TOOL, TIME_TOOL]}),
        "tool-calls-without-tools": (QWEN_TOOL_TURN, {}),
        "system-later": ([USER, ASSISTANT, msg("system", "Now answer in French.")], {}),
    },
}


def render(template, messages, add_generation_prompt, extra):
    source, bos, eos, _ = TEMPLATES[template]
    kwargs = dict(extra)
    tools = kwargs.pop("tools", None)
    if bos is not None:
        kwargs["bos_token"] = bos
    if eos is not None:
        kwargs["eos_token"] = eos
    try:
        rendered, _ = ctu.render_jinja_template(conversations=[messages], tools=tools, chat_template=source,
                                                add_generation_prompt=add_generation_prompt, **kwargs)
        return {"expected": rendered[0]}
    except jinja2.exceptions.TemplateError as e:
        return {"error": str(e)}


def conversation_cases():
    cases = []
    for template in TEMPLATES:
        convs = dict(CONVERSATIONS)
        convs.update(PER_TEMPLATE[template])
        for name, (messages, extra) in convs.items():
            for agp in (True, False):
                case = {"name": f"{template}/{name}/{'prompt' if agp else 'no-prompt'}", "template": template,
                        "messages": messages, "add_generation_prompt": agp, "extra": extra}
                case.update(render(template, messages, agp, extra))
                cases.append(case)
    return cases


def check_smollm2_with_tokenizer(cases):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODELS, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    assert tok.chat_template == TEMPLATES["smollm2"][0]
    assert tok.bos_token == TEMPLATES["smollm2"][1] and tok.eos_token == TEMPLATES["smollm2"][2]
    n = 0
    for c in cases:
        if c["template"] != "smollm2" or "expected" not in c:
            continue
        got = tok.apply_chat_template(c["messages"], add_generation_prompt=c["add_generation_prompt"], tokenize=False, **c["extra"])
        assert got == c["expected"], (c["name"], got, c["expected"])
        n += 1
    return n


# Small templates for the corners of the language: (name, source, context).
EXPRESSIONS = [
    # output of values as Python's str() writes them
    ("str-values", "{{ none }}|{{ true }}|{{ false }}|{{ 42 }}|{{ -7 }}|{{ 'x' }}|{{ [1, 'a', none, 1.5, true] }}|{{ {'a': 1, 'b': [2]} }}|{{ (1, 2) }}", {}),
    ("str-floats", "{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 123456789012345678.0 }} {{ 1.5e-7 }} {{ 0.0001 }} {{ 0.00001 }} {{ -0.0 }} {{ 2.5e300 * 1e10 }} {{ 1_000.5 }}", {}),
    ("str-repr-strings", "{{ ['it\\'s', 'say \"hi\"', 'both \\' \"', 'tab\\there', 'nl\\n', 'é😀', '\\x07\\x7f\\xa0\\u200b'] }}", {}),
    ("arithmetic", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 2 ** 3 ** 2 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ true + 1 }}", {}),
    ("unary-and-filters", "{{ -3 | abs }} {{ -(3) }} {{ +4 }} {{ - 2 ** 2 }}", {}),
    ("concat", "{{ 'a' ~ 1 ~ none ~ true ~ [1] }}|{{ 'ab' * 3 }}|{{ [1, 2] + [3] }}|{{ 'x' ~ undefined_thing ~ 'y' }}", {}),
    ("comparisons", "{{ 1 == 1.0 }} {{ 1 == true }} {{ 'a' < 'b' }} {{ 'B' < 'a' }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ [1, 2] == [1, 2] }} {{ [1, 2] < [1, 3] }} {{ none == none }} {{ 'a' != 'a' }} {{ {'a': 1} == {'a': 1} }}", {}),
    ("logic", "{{ 0 or 'x' }} {{ 'a' and 'b' }} {{ '' and 'b' }}|{{ none or [] }}|{{ not 0 }} {{ not [1] }} {{ 1 and 0 or 5 }} {{ not 1 == 2 }}", {}),
    ("membership", "{{ 'b' in 'abc' }} {{ 'x' not in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'v' in {'k': 'v'} }} {{ '' in 'abc' }}", {}),
    ("ternary", "{{ 'yes' if 1 else 'no' }} {{ 'yes' if 0 else 'no' }} [{{ 'only' if false }}] {{ 'a' if false else 'b' if true else 'c' }}", {}),
    ("subscripts-and-slices", "{{ xs[0] }} {{ xs[-1] }} {{ xs[1:] }} {{ xs[:-1] }} {{ xs[::-1] }} {{ xs[::2] }} {{ xs[1:3] }} {{ s[1:] }} {{ s[::-1] }} {{ s[-2] }} [{{ xs[10] }}] {{ d['a'] }} {{ d.a }} [{{ d.missing }}] [{{ d['missing'] }}] {{ xs[5:] }}",
     {"xs": [1, 2, 3, 4], "s": "héllo", "d": {"a": "A"}}),
    ("literals", "{{ \"dq\" }} {{ 'sq' 'adjacent' }} {{ 'esc: \\n\\t\\\\ \\u00e9 \\x41 \\101 \\q' }} {{ [1, [2, 3], {'k': (4,)}] }} {{ {} }} {{ [] }} {{ 0x1F }} {{ 0b101 }} {{ 0o17 }} {{ 1_000 }} {{ True }} {{ None }} {{ 1E3 }}", {}),
    ("tests", "{{ x is defined }} {{ y is defined }} {{ y is undefined }} {{ none is none }} {{ x is none }} {{ 's' is string }} {{ 1 is string }} {{ 1 is number }} {{ 1.5 is number }} {{ true is number }} {{ 1 is integer }} {{ 1.5 is float }} {{ {} is mapping }} {{ [] is mapping }} {{ [] is sequence }} {{ 's' is sequence }} {{ {} is sequence }} {{ 's' is iterable }} {{ 1 is iterable }} {{ y is iterable }} {{ true is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false }} {{ true is boolean }} {{ 4 is even }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 2 is in [1, 2] }} {{ 1 is eq 1 }} {{ 'a' is lower }} {{ 'A' is upper }} {{ x is not none }} {{ 1 is ne 2 }} {{ 3 is gt 2 }} {{ 2 is le 2 }}",
     {"x": 1}),
    ("filters-strings", "[{{ '  pad \\n' | trim }}] [{{ 'xxhixx' | trim('x') }}] {{ 'Hello' | upper }} {{ 'Hello' | lower }} {{ 'hELLO wORLD' | capitalize }} {{ 'hello big-world (x)' | title }} {{ 'a-b' | replace('-', '+') }} {{ 'aaa' | replace('a', 'b', 2) }} {{ 'abc' | length }} {{ 'héllo' | length }} {{ 'abc' | first }} {{ 'abc' | last }} {{ 'abc' | list }} {{ 'ab' | reverse }} {{ 42 | string }} {{ '12' | int + 1 }} {{ '3.7' | int }} {{ 'x' | int }} {{ 3.9 | int }} {{ '2.5' | float }} {{ '<a & \"b\">' | e }} {{ 'safe' | safe }} {{ 'x' | d('y') }}",
     {}),
    ("filters-lists", "{{ xs | length }} {{ xs | first }} {{ xs | last }} {{ xs | join }} {{ xs | join(', ') }} {{ xs | reverse | list }} {{ xs | sort }} {{ xs | sort(reverse=true) }} {{ xs | sum }} {{ xs | min }} {{ xs | max }} {{ [] | first is undefined }} {{ [1, 2, 2, 1] | unique | list }} {{ users | map(attribute='name') | join('/') }} {{ users | selectattr('admin') | map(attribute='name') | list }} {{ users | rejectattr('admin') | map(attribute='name') | list }} {{ users | selectattr('name', 'equalto', 'bo') | list }} {{ users | map(attribute='age', default=0) | list }} {{ ['a', 'B'] | map('upper') | list }} {{ [1, 2, 3, 4] | select('even') | list }} {{ [1, 2, 3, 4] | reject('odd') | list }} {{ users | map(attribute='name') | join }} {{ [3, 1.5] | join('-') }} {{ users | length }}",
     {"xs": [3, 1, 2], "users": [{"name": "al", "admin": True}, {"name": "bo", "admin": False, "age": 30}]}),
    ("filters-dicts", "{{ d | length }} {{ d | list }} {{ d | items | list }} {{ d | first }} {% for k, v in d | items %}{{ k }}={{ v }};{% endfor %} {% for k, v in d.items() %}{{ k }}:{{ v }};{% endfor %} {{ d.keys() | list }} {{ d.values() | list }} {{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }} {{ d | dictsort }}",
     {"d": {"b": 2, "a": 1, "c": [3]}}),
    ("default-filter", "[{{ u | default('dflt') }}] [{{ '' | default('dflt') }}] [{{ '' | default('dflt', true) }}] [{{ none | default('dflt') }}] [{{ none | default('dflt', boolean=true) }}] [{{ u | default }}] [{{ d.x | default('dx') }}]", {"d": {}}),
    ("tojson", "{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ [] | tojson(indent=2) }}|{{ {} | tojson }}|{{ 'é \"q\" \\\\ \\n \\t \\x01 \\u2028' | tojson }}|{{ d | tojson(sort_keys=true) }}|{{ [1, [2]] | tojson(separators=(',', ':')) }}|{{ none | tojson }}|{{ 1.0 | tojson }}|{{ (1, 'a') | tojson }}",
     {"d": {"name": "get_weather", "args": {"city": "Zürich", "n": 2, "x": 0.5, "ok": True, "none": None, "list": [1, "two", {}]}}}),
    ("string-methods", "{{ s.startswith('He') }} {{ s.startswith(('x', 'H')) }} {{ s.endswith('!') }} [{{ s.strip() }}] [{{ s.lstrip() }}] [{{ s.rstrip() }}] [{{ s.strip(' !') }}] {{ s.split() }} {{ s.split('l') }} {{ s.split('l', 1) }} {{ s.upper() }} {{ s.lower() }} {{ s.replace('l', 'L') }} {{ s.title() }} {{ 'hELLO wORLD'.capitalize() }} {{ s.find('o') }} {{ s.count('l') }} {{ ', '.join(['a', 'b']) }} {{ s.rsplit(' ', 1) }} {{ 'a,b,,c'.split(',') }} {{ 'ab'.center(6, '*') }} {{ 'x'.isdigit() }} {{ '12'.isdigit() }}",
     {"s": " Hello world! "}),
    ("for-loop-variables", "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('o', 'e') }} {% endfor %}", {}),
    ("for-else-filter-unpack", "{% for x in [] %}never{% else %}empty{% endfor %} {% for x in [1, 2, 3, 4, 5] if x is odd %}{{ loop.index }}/{{ loop.length }}:{{ x }} {% endfor %}{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }} {% endfor %}{% for c in 'hé' %}{{ c }}.{% endfor %} {% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}{% for x in undefined_list %}never{% endfor %}", {}),
    ("loop-controls", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %} {{ range(3) | list }} {{ range(2, 5) | list }} {{ range(10, 0, -3) | list }}", {}),
    ("nested-loops", "{% for i in [1, 2] %}{% for j in 'ab' %}{{ loop.index }}{{ i }}{{ j }} {% endfor %}{{ loop.index }};{% endfor %}", {}),
    ("scoping", "{% set x = 0 %}{% for i in [1, 2, 3] %}{{ x }}{% set x = i %}{{ x }};{% endfor %}{{ x }}|{% if true %}{% set y = 'if-sets-outer' %}{% endif %}{{ y }}|{% for i in [1, 2] %}{% if i == 2 %}[{{ z }}]{% endif %}{% set z = i %}{% endfor %}|{% set ns = namespace(count=0, found=none) %}{% for i in [1, 2, 3] %}{% set ns.count = ns.count + i %}{% if i == 2 %}{% set ns.found = i %}{% endif %}{% endfor %}{{ ns.count }} {{ ns.found }} {{ ns.missing is defined }}", {}),
    ("set-forms", "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set t = (3, 4) %}{% set c, d = t %}{{ c }}{{ d }} {% set block %}inner {{ a }}{% endset %}[{{ block }}] {% set up %}abc{% endset %}{{ up | upper }} {% set ns = namespace({'k': 'v'}) %}{{ ns.k }} {% set dd = dict(x=1, y='z') %}{{ dd }}", {}),
    ("macros", "{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', '?') }} {{ greet(punct='.', name='Cy') }} {% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(3) }} {{ greet('x') | upper }}", {}),
    ("messages-attribute-access", "{% for m in messages %}{{ m.role }}:{{ m['content'] }}:{{ m.tool_calls is defined }}:{{ 'tool_calls' in m }};{% endfor %}{{ messages[0].content.upper() }}|{{ messages | map(attribute='role') | join(',') }}|{{ messages | selectattr('role', 'equalto', 'user') | list | length }}",
     {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": []}]}),
    ("whitespace-trim-lstrip", "a\n  {% if true %}\n  b\n  {% endif %}\nc\n  {{ 'v' }}  \n    {# comment #}\nd {% if true -%}\n\n  e  {%- endif %} f\n{%+ if true %}keep{% endif %}\n  {%- if true +%}\nno-trim{% endif %}\n{% raw %}{{ not evaluated }}{% endraw %}\n", {}),
    ("whitespace-crlf-and-final-newline", "line1\r\n{% if true %}\r\nline2\r\n{% endif %}\rline3\n\n", {}),
    ("whitespace-minus", "x  {{- ' y ' -}}  z\n\n{%- set a = 1 -%}\n\n  w  {#- c -#}  v", {}),
    ("undefined-behaviour", "[{{ u }}] [{{ u | length }}] [{{ u | trim }}] [{{ u | list }}] [{{ u ~ 'x' }}] {{ u == u }} {{ u is none }} {{ not u }} [{{ u | join(',') }}] {{ 'a' in u }} [{{ d.missing }}] {{ d.missing is defined }} {{ d['missing'] is defined }} {{ [] | first is defined }}",
     {"d": {"k": 1}}),
    ("generators-and-views", "{{ xs | select('odd') | list }} {{ [] | select('odd') is iterable }} {{ 'yes' if ([] | select('odd')) else 'no' }} {{ none | map('upper') | list }} {{ none | selectattr('x') | list }} {% set g = xs | map('string') %}{{ g | first }}{{ g | list }}{{ g | list }} {{ d.items() }} {{ d.keys() }} {{ d.values() | list }} {{ d.items() | length }} {{ 'a' in d.keys() }} {{ xs | reverse | list }} {{ d | items | list }} {{ d.items() is sequence }} {{ xs | unique | list }}",
     {"xs": [1, 2, 3], "d": {"a": 1, "b": 2}}),
    ("markup", "{{ 'a<b' | safe + '<i>' }} {{ '<i>' + 'x&y' | safe }} {{ ('<' | e) ~ '<' }} {{ '<' | e | e }} {{ ('x' | safe) is string }} {{ 'a' | safe == 'a' }} {{ ('<' | safe) * 2 + '>' }}", {}),
    ("non-string-dict-keys", "{% set d = {0: 'zero', 512: 'big', 'k': 'v', none: 'n', 1.0: 'one'} %}{{ d[0] }} {{ d[512] }} {{ d[1] }} {{ d[true] }} {{ d }} {{ d | tojson }} {{ 512 in d }} {{ d.get(512) }} {{ d | length }}", {}),
    ("str-format", "{{ '{}-{}'.format(1, 'a') }} {{ '{1}{0}'.format('a', 'b') }} {{ '{x}!'.format(x=3) }} {{ '{{}}'.format() }} {{ '<{}>'.format(none) }}", {}),
    ("strftime", "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M:%S %A %B %a %j %y %I %p %%') }}", {}),
    # errors
    ("error-raise-exception", "before{{ raise_exception('Custom message: ' ~ 42) }}after", {}),
    ("error-undefined-attribute", "{{ u.attr }}", {}),
    ("error-undefined-nested", "{{ d.missing.attr }}", {"d": {}}),
    ("error-undefined-arithmetic", "{{ u + 1 }}", {}),
    ("error-type-concat", "{{ 'a' + 1 }}", {}),
    ("error-division-by-zero", "{{ 1 / 0 }}", {}),
    ("error-big-range", "{{ range(100001) | length }}", {}),
    ("error-not-iterable", "{% for x in 5 %}{% endfor %}", {}),
    ("error-tojson-undefined", "{{ u | tojson }}", {}),
    ("error-generator-length", "{{ xs | select('odd') | length }}", {"xs": [1, 2, 3]}),
    ("error-reverse-length", "{{ xs | reverse | length }}", {"xs": [1, 2, 3]}),
    ("error-generator-tojson", "{{ xs | map('string') | tojson }}", {"xs": [1, 2, 3]}),
    ("error-unhashable-key", "{{ {[1]: 2} }}", {}),
    ("error-compare-types", "{{ 'a' < 1 }}", {}),
]


def render_expression(source, context):
    try:
        template = ctu._compile_jinja_template(source)
        return {"expected": template.render(**context)}
    except jinja2.exceptions.TemplateSyntaxError as e:
        return {"error": f"syntax: {e.message}"}
    except Exception as e:  # noqa: BLE001 - the kind and message are what the case records
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    cases = conversation_cases()
    checked = check_smollm2_with_tokenizer(cases)
    expressions = []
    for name, source, context in EXPRESSIONS:
        e = {"name": name, "source": source, "context": context}
        e.update(render_expression(source, context))
        expressions.append(e)
    root = {
        "generator": "Tools/reference/make_chat_template_fixtures.py",
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "strftime_now": NOW.isoformat(),
        "templates": {name: {"source": s, "bos_token": b, "eos_token": e, "origin": o} for name, (s, b, e, o) in TEMPLATES.items()},
        "cases": cases,
        "expressions": expressions,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(root, f, ensure_ascii=False, indent=1)
        f.write("\n")
    errors = sum("error" in c for c in cases)
    print(f"wrote {OUT}: {len(cases)} conversation cases ({errors} raise), {checked} SmolLM2 cases also rendered by "
          f"the GGUF tokenizer's apply_chat_template, {len(expressions)} expression cases "
          f"({sum('error' in e for e in expressions)} errors)")
    for e in expressions:
        if "error" in e and not e["name"].startswith("error-"):
            print(f"  unexpected error in {e['name']}: {e['error']}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
