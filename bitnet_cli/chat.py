"""A chat conversation over one model: messages, commands, KV-cache prefix reuse, overflow trimming.

``messages`` is the source of truth. Each turn renders the whole template again and hands the
token ids to ``stream_generate`` with the session's cache, which reuses the longest common
prefix, so only the new turn is prefilled. No terminal I/O here: the CLI drives a session.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bitnet_cli.chat_template import render, select_template
from bitnet_cli.errors import UserError
from bitnet_cli.sampling import SamplingParams, make_sampler

HELP = """Commands:
  /exit, /bye, /quit     leave (Ctrl-D at an empty prompt too)
  /clear                 forget the conversation, keep the system prompt
  /regen                 drop the last reply and generate it again
  /system [TEXT]         show or replace the system prompt
  /set NAME VALUE        change a setting: temp, top_k, top_p, min_p, repeat_penalty,
                         repeat_last_n, presence_penalty, frequency_penalty, seed, n_predict
  /set                   show the settings
  /read FILE             send the contents of a text file as your message
  /stats                 show the last reply's token counts and speeds
  /help, /?              this help
Ctrl-C stops a reply; at the prompt it exits. \"\"\" starts and ends a multi-line message."""

_SET_ALIASES = {
    "temperature": "temp", "top-k": "top_k", "top-p": "top_p", "min-p": "min_p",
    "repeat-penalty": "repeat_penalty", "repeat-last-n": "repeat_last_n",
    "presence-penalty": "presence_penalty", "frequency-penalty": "frequency_penalty",
    "max_tokens": "n_predict", "n-predict": "n_predict", "n": "n_predict",
}


@dataclass
class TurnStats:
    """Figures of the last reply (for the `[ Prompt: X t/s | Generation: Y t/s ]` line)."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    prompt_tps: float = 0.0
    generation_tokens: int = 0
    generation_tps: float = 0.0
    finish_reason: str | None = None
    interrupted: bool = False
    dropped_messages: int = 0

    def footer(self) -> str:
        return f"[ Prompt: {self.prompt_tps:.1f} t/s | Generation: {self.generation_tps:.1f} t/s ]"


@dataclass
class Command:
    """What the front end should do after a slash command: ``action`` is ``"exit"``,
    ``"regen"``, ``"send"`` (send ``text`` as a message) or ``"none"``; ``message`` is shown."""

    action: str
    message: str = ""
    text: str = ""


def _token_lookup(model: Any) -> Callable[[str], bool]:
    """A membership test for special-token texts in the model's vocabulary."""
    tok = model.tokenizer
    for attr in ("token_to_id", "piece_to_id"):
        fn = getattr(tok, attr, None)
        if callable(fn):
            def has(text: str, fn=fn) -> bool:
                try:
                    return fn(text) is not None
                except (KeyError, ValueError):
                    return False
            return has
    tokens = getattr(tok, "tokens", None)
    if tokens is None:
        mf = getattr(model, "model_file", None)
        tokens = mf.metadata.get("tokenizer.ggml.tokens", []) if mf is not None else []
    vocab = set(str(t) for t in tokens)
    return vocab.__contains__


def _token_text(model: Any, token_id: int | None) -> str:
    if token_id is None:
        return ""
    tok = model.tokenizer
    for attr in ("id_to_token", "token_text"):
        fn = getattr(tok, attr, None)
        if callable(fn):
            return str(fn(token_id))
    tokens = getattr(tok, "tokens", None)
    if tokens is None:
        mf = getattr(model, "model_file", None)
        tokens = mf.metadata.get("tokenizer.ggml.tokens", []) if mf is not None else []
    return str(tokens[token_id]) if 0 <= token_id < len(tokens) else ""


class ChatFormat:
    """Turns messages into prompt token ids with the model's (or a built-in) chat template."""

    def __init__(self, model: Any, template: str | None = None) -> None:
        tok = model.tokenizer
        arch = getattr(model.config, "arch", "")
        self.source, self.name = select_template(
            getattr(tok, "chat_template", None), arch=arch, has_token=_token_lookup(model), override=template
        )
        self.tokenizer = tok
        self.bos_token = _token_text(model, getattr(tok, "bos_id", None))
        self.eos_token = _token_text(model, getattr(tok, "eos_id", None))

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        return render(self.source, messages, add_generation_prompt=add_generation_prompt,
                      bos_token=self.bos_token, eos_token=self.eos_token)

    def encode(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        """Render and tokenize; a BOS the template writes is not added a second time."""
        text = self.render(messages, add_generation_prompt)
        if self.bos_token and text.startswith(self.bos_token):
            return list(self.tokenizer.encode(text[len(self.bos_token):], add_bos=True))
        return list(self.tokenizer.encode(text))


def warm_up(model: Any) -> None:
    """Run the prefill (several tokens) and decode (one token) paths once, so kernel compilation
    happens before the first reply instead of inside its timings."""
    bos = model.tokenizer.bos_id or 0
    cache = model.new_cache(8)
    model.forward([bos, bos], cache)
    model.forward([bos], cache)


class ChatSession:
    """A conversation: ``reply(text)`` streams the answer and keeps the history.

    Args:
        model: a loaded model (``bitnet_cli.load``).
        system_prompt: the first message, kept when old turns are dropped.
        sampling: sampling parameters; change them with ``/set``.
        max_tokens: tokens per reply (-1 = until end of turn or the context is full).
        n_ctx: the session cache's size (default: the model's).
        template: a built-in template name or Jinja source overriding the file's.
        generate_fn: the streaming generator (``bitnet_cli.stream_generate``).
    """

    def __init__(self, model: Any, *, system_prompt: str | None = None, sampling: SamplingParams | None = None,
                 max_tokens: int = -1, n_ctx: int | None = None, template: str | None = None,
                 stop: list[str] | None = None, generate_fn: Callable[..., Iterator[Any]] | None = None) -> None:
        if generate_fn is None:
            from bitnet_cli.generation import stream_generate as generate_fn
        self.model = model
        self.format = ChatFormat(model, template)
        self.cache = model.new_cache(n_ctx) if n_ctx else model.new_cache()
        self.sampling = sampling or SamplingParams()
        self._sampler = make_sampler(self.sampling)
        self.max_tokens = max_tokens
        self.stop = list(stop or [])
        self.generate_fn = generate_fn
        self.system_prompt = system_prompt or None
        self.messages: list[dict[str, str]] = []
        self.stats = TurnStats()
        self.clear()

    # -- history ---------------------------------------------------------------------------------
    def clear(self) -> None:
        """Forget the conversation but keep the system prompt."""
        self.messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []

    def set_system(self, text: str | None) -> None:
        self.system_prompt = text or None
        rest = [m for m in self.messages if m["role"] != "system"]
        self.messages = ([{"role": "system", "content": text}] if text else []) + rest

    # -- generation ------------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return int(self.cache.n_ctx)

    def _reserve(self) -> int:
        """Context kept free for the reply when old turns must go."""
        if 0 < self.max_tokens < self.n_ctx // 2:
            return self.max_tokens
        return max(1, self.n_ctx // 4)

    def _fit(self) -> tuple[list[int], int]:
        """Prompt ids for the current messages, dropping the oldest turns (never the system
        prompt or the newest message) until prompt plus reply room fit the context."""
        dropped = 0
        budget = self.n_ctx - self._reserve()
        while True:
            ids = self.format.encode(self.messages)
            if len(ids) <= budget:
                return ids, dropped
            first = 1 if self.messages and self.messages[0]["role"] == "system" else 0
            if len(self.messages) - first <= 1:
                if len(ids) < self.n_ctx:  # too little room for a full reply, but some
                    return ids, dropped
                raise UserError(
                    f"the message needs {len(ids)} tokens; the context holds {self.n_ctx}",
                    "shorten the message or the system prompt, or raise -c/--ctx-size",
                )
            # Drop the oldest turn: a user message and the reply after it.
            n = 2 if len(self.messages) - first > 2 and self.messages[first + 1]["role"] == "assistant" else 1
            del self.messages[first:first + n]
            dropped += n

    def reply(self, text: str) -> Iterator[str]:
        """Add a user message and stream the reply's text; the reply joins the history, even when
        the caller stops early (Ctrl-C) — then ``stats.interrupted`` is set."""
        self.messages.append({"role": "user", "content": text})
        return self._generate()

    def regenerate(self) -> Iterator[str]:
        """Drop the last reply and generate it again."""
        if not self.messages or self.messages[-1]["role"] != "assistant":
            raise UserError("there is no reply to regenerate", "send a message first")
        self.messages.pop()
        return self._generate()

    def _generate(self) -> Iterator[str]:
        try:
            ids, dropped = self._fit()
        except UserError:
            self.messages.pop()  # the message that did not fit
            raise
        self.stats = TurnStats(dropped_messages=dropped)
        return self._stream(ids)

    def _stream(self, ids: list[int]) -> Iterator[str]:
        parts: list[str] = []
        stream = self.generate_fn(self.model, ids, max_tokens=self.max_tokens, sampling=self.sampling,
                                  stop=self.stop, cache=self.cache, sampler=self._sampler)
        finished = False
        try:
            for r in stream:
                self._update_stats(r)
                if r.text:
                    parts.append(r.text)
                    yield r.text
            finished = True
        finally:
            self.stats.interrupted = not finished
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            self.messages.append({"role": "assistant", "content": "".join(parts)})

    def _update_stats(self, r: Any) -> None:
        s = self.stats
        s.prompt_tokens, s.prompt_tps = r.prompt_tokens, r.prompt_tps
        s.cached_tokens = getattr(r, "cached_tokens", 0)
        s.generation_tokens, s.generation_tps = r.generation_tokens, r.generation_tps
        s.finish_reason = r.finish_reason

    # -- commands --------------------------------------------------------------------------------
    def command(self, line: str) -> Command:
        """Carry out a slash command; the caller streams ``regenerate()`` for ``"regen"``."""
        name, _, arg = line.strip().partition(" ")
        name, arg = name.lower(), arg.strip()
        if name in ("/exit", "/bye", "/quit"):
            return Command("exit")
        if name in ("/help", "/?"):
            return Command("none", HELP)
        if name == "/clear":
            self.clear()
            return Command("none", "Conversation cleared.")
        if name == "/regen":
            return Command("regen")
        if name == "/system":
            if not arg:
                return Command("none", f"System prompt: {self.system_prompt}" if self.system_prompt
                               else "No system prompt.")
            self.set_system(arg)
            return Command("none", "System prompt set.")
        if name == "/set":
            return Command("none", self._set(arg))
        if name == "/read":
            return Command("send", text=_read_text(arg))
        if name == "/stats":
            s = self.stats
            return Command("none", f"prompt {s.prompt_tokens} tokens ({s.cached_tokens} cached), "
                                   f"{s.prompt_tps:.1f} t/s; generation {s.generation_tokens} tokens, "
                                   f"{s.generation_tps:.1f} t/s; context {self.n_ctx}")
        raise UserError(f"unknown command {name}", "type /help for the list")

    def settings(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self.sampling, f.name)}" for f in dataclasses.fields(self.sampling))
        return f"{fields}, n_predict={self.max_tokens}"

    def _set(self, arg: str) -> str:
        if not arg:
            return self.settings()
        key, _, value = arg.partition(" ")
        key = _SET_ALIASES.get(key.lower(), key.lower())
        value = value.strip()
        if key == "system":
            self.set_system(value)
            return "System prompt set."
        if not value:
            raise UserError(f"/set {key} needs a value", "for example: /set temp 0.7")
        if key == "n_predict":
            self.max_tokens = _parse(int, key, value)
            return f"n_predict = {self.max_tokens}"
        types = {f.name: f.type for f in dataclasses.fields(SamplingParams)}
        if key not in types:
            raise UserError(f"unknown setting '{key}'", "settings: " + ", ".join(list(types) + ["n_predict"]))
        cast = int if types[key] in (int, "int") else float
        self.sampling = dataclasses.replace(self.sampling, **{key: _parse(cast, key, value)})
        self._sampler = make_sampler(self.sampling)
        return f"{key} = {getattr(self.sampling, key)}"


def _parse(cast: type, key: str, value: str) -> Any:
    try:
        return cast(value)
    except ValueError:
        raise UserError(f"'{value}' is not a valid {cast.__name__} for {key}", "for example: /set temp 0.7") from None


def _read_text(path: str) -> str:
    from pathlib import Path

    if not path:
        raise UserError("/read needs a file name", "for example: /read notes.txt")
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"no file at {p}", "check the path given to /read")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{p} is not UTF-8 text", "/read takes text files") from None
    if not text.strip():
        raise UserError(f"{p} is empty", "/read takes a file with some text")
    return text
