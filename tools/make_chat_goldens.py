"""Render chat-template goldens for tests/tokenizer.rs.

Renders a set of conversations through transformers' own Jinja machinery
(`render_jinja_template`, the function behind `apply_chat_template`) with the real
chat templates of SmolLM2-Instruct, Qwen2-Instruct (ChatML with a default system
prompt), a plain ChatML template, Llama-3-Instruct and Llama-3.1-Instruct, and writes
tests/fixtures/chat/goldens.json. Rust tests compare `Tokenizer::apply_chat` against it
byte for byte; they never run Python.

Usage: /opt/ffvenv/bin/python tools/make_chat_goldens.py [--out DIR]
"""

import argparse
import json
import os

from transformers.utils.chat_template_utils import render_jinja_template

# SmolLM2-135M-Instruct (GGUF metadata tokenizer.chat_template, identical to its
# tokenizer_config.json).
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Qwen2-0.5B/1.5B/7B-Instruct tokenizer_config.json.
QWEN2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Plain ChatML (no default system message), as in many fine-tunes; written with the
# Jinja escape '\\n' rather than a raw newline.
CHATML = (
    "{%- for message in messages %}\n"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "{{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

# Meta-Llama-3-8B-Instruct tokenizer_config.json.
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Meta-Llama-3.1-8B-Instruct tokenizer_config.json.
LLAMA31 = """{{- bos_token }}
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
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
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
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
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
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

TEMPLATES = {
    "smollm2": {"template": SMOLLM2, "bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
    "qwen2": {"template": QWEN2, "bos_token": None, "eos_token": "<|im_end|>"},
    "chatml": {"template": CHATML, "bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
    "llama3": {"template": LLAMA3, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama31": {"template": LLAMA31, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
}

M = lambda role, content: {"role": role, "content": content}  # noqa: E731

CONVERSATIONS = {
    "user_only": [M("user", "Hello!")],
    "system_user": [M("system", "You are terse."), M("user", "What is 2+2?")],
    "multi_turn": [
        M("user", "Hi there"),
        M("assistant", "Hello! How can I help?"),
        M("user", "Tell me a joke about cats."),
    ],
    "system_multi_turn": [
        M("system", "Answer in French."),
        M("user", "Good morning"),
        M("assistant", "Bonjour"),
        M("user", "Thanks"),
        M("assistant", "De rien"),
    ],
    "whitespace_unicode": [
        M("system", "  padded system \n"),
        M("user", "\n  café 你好 🦀 naïve\t\n"),
        M("assistant", " spaced answer "),
        M("user", "line1\nline2\n\nline4"),
    ],
    "empty_content": [M("user", "")],
    "system_only": [M("system", "Only a system prompt.")],
    "late_system": [M("user", "first"), M("system", "a late system message"), M("user", "second")],
    "no_messages": [],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "chat"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cases = []
    for tname, t in TEMPLATES.items():
        for cname, conv in CONVERSATIONS.items():
            for gen in (False, True):
                kwargs = {}
                if t["bos_token"] is not None:
                    kwargs["bos_token"] = t["bos_token"]
                kwargs["eos_token"] = t["eos_token"]
                dates = [None]
                if tname == "llama31":
                    dates = [None, "05 Mar 2025"]
                for date in dates:
                    kw = dict(kwargs)
                    if date is not None:
                        kw["date_string"] = date
                    try:
                        rendered, _ = render_jinja_template(
                            conversations=[conv],
                            chat_template=t["template"],
                            add_generation_prompt=gen,
                            **kw,
                        )
                        expected = rendered[0]
                    except Exception:  # the template itself refuses (e.g. no messages)
                        expected = None
                    cases.append(
                        {
                            "template": tname,
                            "conversation": cname,
                            "add_generation_prompt": gen,
                            "date_string": date,
                            "messages": conv,
                            "expected": expected,  # null: the template raises
                        }
                    )
    out = {
        "generator": "tools/make_chat_goldens.py (transformers render_jinja_template)",
        "templates": {k: {"chat_template": v["template"], "bos_token": v["bos_token"], "eos_token": v["eos_token"]} for k, v in TEMPLATES.items()},
        "cases": cases,
    }
    path = os.path.join(args.out, "goldens.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
    main()
