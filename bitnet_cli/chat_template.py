"""Chat templates: sandboxed Jinja rendering the way HF transformers does it, plus built-ins.

A GGUF carries its template in ``tokenizer.chat_template``. bitnet.cpp's converters write a
placeholder (``Human: … BITNETAssistant: …``) that the 2B-4T model was not trained on, so that
placeholder, like a missing template, is replaced by a built-in chosen from the architecture and
the vocabulary's special tokens.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from bitnet_cli.errors import UserError

PLACEHOLDER_MARKER = "BITNETAssistant"

# HF's form for microsoft/bitnet-b1.58-2B-4T (tokenizer_config.json): every message, the system
# prompt included, is "Role: content<|eot_id|>", and the generation prompt is "Assistant: ".
# The fork's C++ `bitnet` template differs: no <|eot_id|> after system or assistant turns.
BITNET_2B4T = (
    "{% for message in messages %}"
    "{% set content = message['role'] | capitalize + ': ' + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"
)

# bitnet.cpp's C++ `bitnet` template, for parity with its -cnv mode (pick it by name): the
# generation prompt rides on every user turn, and only user turns end in <|eot_id|>.
BITNET_FORK = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ 'System: ' + message['content'] }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '<|eot_id|>Assistant: ' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}"
    "{% endif %}"
    "{% endfor %}"
)

LLAMA3 = (
    "{% for message in messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# tiiuae/Falcon3-*-Instruct (and their 1.58-bit versions), without the tool-calling branches.
FALCON3 = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% if not loop.last %}{{ '<|assistant|>\n' + message['content'] + eos_token + '\n' }}"
    "{% else %}{{ '<|assistant|>\n' + message['content'] + eos_token }}{% endif %}"
    "{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    "{% endfor %}"
)

# For vocabularies without chat tokens (base models): plain role lines ended by EOS.
PLAIN = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize + ': ' + message['content'] | trim + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"
)

BUILTIN_TEMPLATES: dict[str, str] = {
    "bitnet-2b4t": BITNET_2B4T,
    "bitnet-fork": BITNET_FORK,
    "llama3": LLAMA3,
    "falcon3": FALCON3,
    "plain": PLAIN,
}


class TemplateRaised(UserError):
    """The template itself rejected the messages (its ``raise_exception`` was called)."""


def _raise_exception(message: str) -> None:
    raise TemplateRaised(f"chat template: {message}", "fix the messages or pass another --chat-template-file")


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # HF overrides Jinja's tojson: no HTML escaping, unicode kept.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def _compile(source: str):
    from jinja2 import TemplateSyntaxError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except TemplateSyntaxError as e:
        raise UserError(f"the chat template does not parse: {e.message} (line {e.lineno})",
                        "pass a valid --chat-template-file") from None


def render(
    source: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    **extra: Any,
) -> str:
    """Render ``messages`` (``[{"role", "content"}]``) with the Jinja template ``source``."""
    from jinja2 import TemplateError

    template = _compile(source)
    try:
        return template.render(
            messages=[dict(m) for m in messages],
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
            **extra,
        )
    except TemplateRaised:
        raise
    except TemplateError as e:
        raise UserError(f"the chat template failed: {e}", "pass another --chat-template-file") from None


def is_placeholder(source: str | None) -> bool:
    """True for a missing template or bitnet.cpp's ``BITNETAssistant`` placeholder."""
    return not source or PLACEHOLDER_MARKER in source


def builtin_name(arch: str, has_token: Callable[[str], bool]) -> str:
    """Pick a built-in template from the architecture and which special tokens the vocab has."""
    if has_token("<|user|>") and has_token("<|assistant|>"):
        return "falcon3"
    if arch.startswith("bitnet") and has_token("<|eot_id|>"):
        return "bitnet-2b4t"
    if has_token("<|start_header_id|>") and has_token("<|eot_id|>"):
        return "llama3"
    return "plain"


def select_template(
    file_template: str | None,
    *,
    arch: str,
    has_token: Callable[[str], bool],
    override: str | None = None,
) -> tuple[str, str]:
    """Return ``(source, name)``: an override (a built-in name or Jinja source) wins, then the
    file's own template unless it is missing or the placeholder, then a built-in."""
    if override:
        if override in BUILTIN_TEMPLATES:
            return BUILTIN_TEMPLATES[override], override
        return override, "custom"
    if not is_placeholder(file_template):
        return str(file_template), "file"
    name = builtin_name(arch, has_token)
    return BUILTIN_TEMPLATES[name], name
