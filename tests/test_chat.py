"""Chat sessions and the `bitnet chat` REPL: history, commands, prefix reuse, overflow, Ctrl-C."""
from __future__ import annotations

import string
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

import bitnet_cli
from bitnet_cli.chat import ChatSession
from bitnet_cli.cli.app import app
from bitnet_cli.cli.chat import ChatRepl
from bitnet_cli.errors import UserError
from bitnet_cli.kv_cache import KVCache
from bitnet_cli.sampling import SamplingParams

GREEDY = SamplingParams(temp=0)
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
PLACEHOLDER = ("{{ bos_token }}{% for m in messages %}{{ 'Human: ' + m['content'] + "
               "'BITNETAssistant: ' + eos_token }}{% endfor %}")


class CharTokenizer:
    """One token per character; the three LLaMA-3 specials are parsed out of text."""

    def __init__(self) -> None:
        self.vocab = SPECIALS + list(string.printable)
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.bos_id, self.eos_id = 0, 1
        self.eos_ids = frozenset({1, 2})
        self.chat_template = PLACEHOLDER
        self.vocab_size = len(self.vocab)

    def token_to_id(self, text):
        return self.index.get(text)

    def id_to_token(self, i):
        return self.vocab[i]

    def encode(self, text, add_bos=None):
        ids = [0] if add_bos is not False else []
        i = 0
        while i < len(text):
            for s in SPECIALS:
                if text.startswith(s, i):
                    ids.append(self.index[s])
                    i += len(s)
                    break
            else:
                ids.append(self.index[text[i]])
                i += 1
        return ids

    def detokenizer(self, skip_special=False):
        vocab = self.vocab
        return SimpleNamespace(add=lambda t: vocab[t] if t > 2 else "", flush=lambda: "")


class EchoModel:
    """After "Assistant: " it answers "ok" and ends the turn; records what each forward saw."""

    config = SimpleNamespace(arch="bitnet-b1.58")

    def __init__(self, n_ctx=512, reply="ok", interrupt_at=None):
        self.tokenizer = CharTokenizer()
        self.n_ctx, self.calls, self.interrupt_at = n_ctx, [], interrupt_at
        self.reply = [self.tokenizer.index[c] for c in reply] + [2]

    def new_cache(self, n_ctx=None):
        return KVCache(SimpleNamespace(n_layer=1, n_head_kv=1, head_dim=1), n_ctx or self.n_ctx)

    def forward(self, tokens, cache, last_only=True):
        self.calls.append(list(tokens))
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        cache.advance(tokens)
        text = "".join(self.tokenizer.vocab[t] for t in cache.tokens)
        k = len(text) - (text.rfind("Assistant: ") + len("Assistant: "))
        logits = np.zeros((1, len(self.tokenizer.vocab)), np.float32)
        logits[0, self.reply[min(k, len(self.reply) - 1)]] = 5.0
        return logits


def test_session_history_and_template():
    m = EchoModel()
    s = ChatSession(m, system_prompt="Be brief.", sampling=GREEDY)
    assert s.format.name == "bitnet-2b4t"  # the placeholder was replaced
    assert "".join(s.reply("Hi")) == "ok"
    assert s.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "ok"}]
    assert s.stats.finish_reason == "stop" and s.stats.generation_tokens == 3
    first_prompt = "".join(m.tokenizer.vocab[t] for t in m.calls[0])
    assert first_prompt == "<|begin_of_text|>System: Be brief.<|eot_id|>User: Hi<|eot_id|>Assistant: "


def test_second_turn_prefills_only_the_new_part():
    m = EchoModel()
    s = ChatSession(m, system_prompt="Be brief.", sampling=GREEDY)
    list(s.reply("Hi"))
    n_calls = len(m.calls)
    list(s.reply("More"))
    second_prefill = "".join(m.tokenizer.vocab[t] for t in m.calls[n_calls])
    # The cache held everything up to the reply's last token; only the rest is computed.
    assert second_prefill == "<|eot_id|>User: More<|eot_id|>Assistant: "
    assert s.stats.cached_tokens > 30


def test_regen_and_clear():
    m = EchoModel()
    s = ChatSession(m, system_prompt="S", sampling=GREEDY)
    with pytest.raises(UserError):
        s.regenerate()
    list(s.reply("Hi"))
    assert "".join(s.regenerate()) == "ok"
    assert [x["role"] for x in s.messages] == ["system", "user", "assistant"]
    s.command("/clear")
    assert s.messages == [{"role": "system", "content": "S"}]


def test_overflow_drops_oldest_turns_keeps_system():
    m = EchoModel(n_ctx=160)
    s = ChatSession(m, system_prompt="Sys", sampling=GREEDY, max_tokens=8)
    dropped = []
    for i in range(6):
        assert "".join(s.reply(f"question number {i}")) == "ok"
        dropped.append(s.stats.dropped_messages)
        assert len(s.format.encode(s.messages)) <= 160
    assert dropped[0] == 0 and sum(dropped) >= 4 and all(d % 2 == 0 for d in dropped)  # whole turns
    assert s.messages[0] == {"role": "system", "content": "Sys"}
    assert s.messages[-2:] == [{"role": "user", "content": "question number 5"},
                               {"role": "assistant", "content": "ok"}]
    assert all(x["content"] != "question number 0" for x in s.messages)


def test_too_long_message_is_refused_and_forgotten():
    m = EchoModel(n_ctx=40)
    s = ChatSession(m, sampling=GREEDY, max_tokens=4)
    with pytest.raises(UserError, match="context holds 40"):
        s.reply("x" * 60)
    assert s.messages == []


def test_interrupted_reply_is_kept():
    m = EchoModel(reply="abcdef", interrupt_at=4)  # prefill, then 2 decode steps, then Ctrl-C
    s = ChatSession(m, sampling=GREEDY)
    got = []
    with pytest.raises(KeyboardInterrupt):
        for t in s.reply("Hi"):
            got.append(t)
    assert s.stats.interrupted
    assert s.messages[-1] == {"role": "assistant", "content": "".join(got)} and got


def test_set_and_system_commands():
    s = ChatSession(EchoModel(), sampling=GREEDY)
    assert s.command("/set temp 0.5").message == "temp = 0.5"
    assert s.sampling.temp == 0.5
    s.command("/set top-k 7")
    assert s.sampling.top_k == 7
    s.command("/set n_predict 5")
    assert s.max_tokens == 5
    with pytest.raises(UserError):
        s.command("/set temp -1")
    with pytest.raises(UserError):
        s.command("/set bogus 1")
    with pytest.raises(UserError):
        s.command("/nonsense")
    s.command("/system Be terse.")
    assert s.messages[0] == {"role": "system", "content": "Be terse."}
    assert "Be terse." in s.command("/system").message
    assert s.command("/exit").action == "exit" and s.command("/bye").action == "exit"
    assert "/regen" in s.command("/help").message


def test_repl_ctrl_c_stops_reply_then_exits_130(capsys):
    m = EchoModel(reply="abcdef", interrupt_at=3)
    s = ChatSession(m, sampling=GREEDY)
    lines = iter(["Hi"])

    def read_line(prompt):
        try:
            return next(lines)
        except StopIteration:
            raise KeyboardInterrupt from None

    assert ChatRepl(s, read_line).run() == 130
    err = capsys.readouterr().err
    assert "[reply stopped]" in err and "Generation:" in err
    assert s.messages[-1]["role"] == "assistant"


@pytest.fixture
def fake_load(monkeypatch):
    made = {}

    def load(path, n_ctx=0, threads=None):
        made["model"] = EchoModel(n_ctx=n_ctx or 512)
        return made["model"]

    monkeypatch.setattr(bitnet_cli, "load", load)
    return made


def _first_prompt(m):
    """The first prefill's text (the CLI first warms up with one- and two-token passes)."""
    calls = [c for c in m.calls if len(c) > 2]
    assert m.calls[:2] == [[0, 0], [0]]  # the warm-up
    return "".join(m.tokenizer.vocab[t] for t in calls[0])


def _chat(args, stdin):
    return CliRunner().invoke(app, ["chat", "-m", "x.gguf", "--temp", "0", *args], input=stdin)


def test_cli_transcript_commands(fake_load):
    r = _chat(["-p", "You are a helpful assistant"],
              "Hello\n/regen\n/set temp 0\n/system New rules\n/help\n/bogus\n/clear\nBye\n/exit\n")
    assert r.exit_code == 0, r.output
    assert r.stdout.count("ok\n") == 3  # Hello, /regen, Bye
    assert "[ Prompt:" in r.stderr and "Generation:" in r.stderr and "t/s ]" in r.stderr
    assert "Error: unknown command /bogus" in r.stderr
    m = fake_load["model"]
    last_prompt = "".join(m.tokenizer.vocab[t] for t in m.calls[-3])  # prefill before the last reply
    assert last_prompt.endswith("User: Bye<|eot_id|>Assistant: ")


def test_cli_read_file(fake_load, tmp_path):
    (tmp_path / "q.txt").write_text("question from a file\n", encoding="utf-8")
    r = _chat([], f"/read {tmp_path / 'q.txt'}\n/read {tmp_path / 'missing.txt'}\n")
    assert r.exit_code == 0, r.output
    assert r.stdout.count("ok") == 1 and "Error: no file at" in r.stderr
    prompt = _first_prompt(fake_load["model"])
    assert "User: question from a file<|eot_id|>" in prompt  # trimmed by the template


def test_cli_system_prompt_and_multiline(fake_load):
    r = _chat(["-sys", "SYS"], '"""\nline one\nline two\n"""\n')
    assert r.exit_code == 0, r.output  # Ctrl-D (end of input) exits 0
    prompt = _first_prompt(fake_load["model"])
    assert "System: SYS<|eot_id|>User: line one\nline two<|eot_id|>" in prompt


def test_cli_overflow_warns(fake_load):
    stdin = "".join(f"this is question {i}\n" for i in range(8))
    r = _chat(["-c", "128", "-n", "4", "-p", "Sys"], stdin)
    assert r.exit_code == 0, r.output
    assert "dropped the" in r.stderr and "outgrew the context" in r.stderr
    assert r.stdout.count("ok") == 8


def test_run_cnv_enters_chat(fake_load):
    r = CliRunner().invoke(app, ["run", "-m", "x.gguf", "-cnv", "-p", "SYS", "--temp", "0"], input="Hi\n")
    assert r.exit_code == 0, r.output
    assert "ok" in r.stdout
    prompt = _first_prompt(fake_load["model"])
    assert prompt.startswith("<|begin_of_text|>System: SYS<|eot_id|>User: Hi")


# -- on a real (tiny, random) model file -------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_model_path(tiny_model):
    # conftest's 2B-4T-layout model, which carries bitnet.cpp's placeholder chat template.
    return tiny_model


def test_real_model_session_reuses_cache(tiny_model_path):
    model = bitnet_cli.load(tiny_model_path, n_ctx=256, threads=1)
    s = ChatSession(model, system_prompt="Be brief.", sampling=GREEDY, max_tokens=6)
    assert s.format.name == "bitnet-2b4t"
    ids = s.format.encode(s.messages + [{"role": "user", "content": "Hi"}])
    assert ids[0] == model.tokenizer.bos_id and ids.count(model.tokenizer.bos_id) == 1
    eot = model.tokenizer.tokens.index("<|eot_id|>")
    assert ids.count(eot) == 2 and eot in model.tokenizer.eos_ids  # parsed as one special token
    first = "".join(s.reply("Hi"))
    assert s.stats.generation_tokens >= 1 and s.stats.cached_tokens == 0
    second = "".join(s.reply("And then?"))
    assert s.stats.cached_tokens >= len(ids) - 1  # the first turn came from the cache
    assert "".join(s.regenerate()) == second  # same prompt, greedy: same reply from the cache
    assert [m["role"] for m in s.messages] == ["system", "user", "assistant", "user", "assistant"]
    s2 = ChatSession(model, system_prompt="Be brief.", sampling=GREEDY, max_tokens=6)
    assert "".join(s2.reply("Hi")) == first  # a fresh cache gives the same greedy reply


def test_real_model_cli_chat(tiny_model_path):
    r = CliRunner().invoke(app, ["chat", "-m", str(tiny_model_path), "-p", "Be brief.", "--temp", "0",
                                 "-n", "5", "-c", "128", "-t", "1"], input="Hello\n/regen\n/stats\n/exit\n")
    assert r.exit_code == 0, r.output
    assert r.stderr.count("[ Prompt:") == 2
    assert "template bitnet-2b4t" in r.stderr and "generation" in r.stderr
