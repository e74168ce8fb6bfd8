"""Chat templates: HF-style sandboxed rendering, built-ins, and the placeholder rule."""
from __future__ import annotations

import pytest

from bitnet_cli.chat_template import (
    BUILTIN_TEMPLATES,
    builtin_name,
    is_placeholder,
    render,
    select_template,
)
from bitnet_cli.errors import UserError

MSGS = [
    {"role": "system", "content": "You are a helpful assistant"},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "How are you?"},
]
LLAMA3_BOS, EOT = "<|begin_of_text|>", "<|eot_id|>"

# bitnet.cpp's convert-ms-to-gguf-bitnet.py placeholder (spec §2.8).
PLACEHOLDER = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ 'Human: ' + message['content'] + '\\n\\nBITNETAssistant: ' + eos_token }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
)


def _vocab(*tokens):
    return set(tokens).__contains__


def test_bitnet_2b4t_is_hf_form():
    out = render(BUILTIN_TEMPLATES["bitnet-2b4t"], MSGS, bos_token=LLAMA3_BOS)
    assert out == (
        "<|begin_of_text|>System: You are a helpful assistant<|eot_id|>User: Hello<|eot_id|>"
        "Assistant: Hi there<|eot_id|>User: How are you?<|eot_id|>Assistant: "
    )


def test_bitnet_fork_matches_bitnet_cpp():
    # The rendering bitnet.cpp's C++ template gives (spec §6.6; BOS comes from the tokenizer there).
    out = render(BUILTIN_TEMPLATES["bitnet-fork"], MSGS, bos_token="")
    assert out == ("System: You are a helpful assistantUser: Hello<|eot_id|>Assistant: Hi there"
                   "User: How are you?<|eot_id|>Assistant: ")


def test_hf_transformers_example_prompt():
    # The prompt in transformers' BitNet docs.
    out = render(BUILTIN_TEMPLATES["bitnet-2b4t"], [{"role": "user", "content": "Hey"}], bos_token=LLAMA3_BOS)
    assert out == "<|begin_of_text|>User: Hey<|eot_id|>Assistant: "


def test_no_generation_prompt():
    out = render(BUILTIN_TEMPLATES["bitnet-2b4t"], MSGS[:2], add_generation_prompt=False, bos_token="<s>")
    assert out.endswith("User: Hello<|eot_id|>")


def test_llama3_builtin():
    out = render(BUILTIN_TEMPLATES["llama3"], MSGS[:2], bos_token=LLAMA3_BOS)
    assert out == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_falcon3_builtin():
    out = render(BUILTIN_TEMPLATES["falcon3"], MSGS, eos_token="<|endoftext|>")
    assert out == (
        "<|system|>\nYou are a helpful assistant\n<|user|>\nHello\n<|assistant|>\nHi there<|endoftext|>\n"
        "<|user|>\nHow are you?\n<|assistant|>\n"
    )


def test_placeholder_detected_and_replaced():
    assert is_placeholder(PLACEHOLDER) and is_placeholder(None) and is_placeholder("")
    src, name = select_template(PLACEHOLDER, arch="bitnet-b1.58", has_token=_vocab("<|eot_id|>", "<|start_header_id|>"))
    assert name == "bitnet-2b4t" and "BITNETAssistant" not in src


def test_file_template_used_when_real():
    real = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    src, name = select_template(real, arch="bitnet-b1.58", has_token=_vocab())
    assert (src, name) == (real, "file")
    assert render(src, MSGS[:2]) == "[system]You are a helpful assistant[user]Hello"


def test_override_by_name_and_source():
    assert select_template(None, arch="llama", has_token=_vocab(), override="llama3")[1] == "llama3"
    assert select_template("x", arch="llama", has_token=_vocab(), override="{{ 1 }}") == ("{{ 1 }}", "custom")


@pytest.mark.parametrize("arch,tokens,expected", [
    ("bitnet-b1.58", ("<|eot_id|>", "<|start_header_id|>"), "bitnet-2b4t"),
    ("bitnet-25", ("<|eot_id|>",), "bitnet-2b4t"),
    ("llama", ("<|eot_id|>", "<|start_header_id|>"), "llama3"),
    ("llama", ("<|user|>", "<|assistant|>", "<|system|>"), "falcon3"),
    ("bitnet", (), "plain"),
])
def test_builtin_choice(arch, tokens, expected):
    assert builtin_name(arch, _vocab(*tokens)) == expected


def test_hf_globals_raise_exception_tojson_strftime():
    src = ("{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}"
           "{{ messages | tojson }}|{{ strftime_now('%Y') | length }}")
    assert render(src, [{"role": "user", "content": "é<b>"}]) == '[{"role": "user", "content": "é<b>"}]|4'
    with pytest.raises(UserError, match="first must be user"):
        render(src, MSGS)


def test_sandbox_blocks_attribute_escape():
    with pytest.raises(UserError):
        render("{{ ''.__class__.__mro__[1].__subclasses__() }}", [])


def test_syntax_error_is_user_error():
    with pytest.raises(UserError, match="does not parse"):
        render("{% for m in messages %}", [])


def test_trim_blocks_like_hf():
    src = "{% for m in messages %}\n  {{ m['content'] }}\n{% endfor %}"
    assert render(src, MSGS[:2]) == "  You are a helpful assistant\n  Hello\n"
