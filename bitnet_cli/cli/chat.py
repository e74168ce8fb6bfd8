"""`bitnet chat`: an interactive conversation (llama-cli -cnv / run_inference.py -cnv flags)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from bitnet_cli.cli.options import (
    GpuLayersOpt,
    ignore_gpu_layers,
    sampling_params,
    CtxOpt,
    FrequencyPenaltyOpt,
    MinPOpt,
    ModelOpt,
    NPredictOpt,
    PresencePenaltyOpt,
    RepeatLastNOpt,
    RepeatPenaltyOpt,
    SeedOpt,
    TempOpt,
    ThreadsOpt,
    TopKOpt,
    TopPOpt,
    VerboseOpt,
)

ChatTemplateOpt = Annotated[
    Optional[str],
    typer.Option("--chat-template", help="Built-in template (bitnet-2b4t, bitnet-fork, llama3, falcon3, plain) or Jinja text."),
]
ChatTemplateFileOpt = Annotated[
    Optional[Path], typer.Option("--chat-template-file", help="Read the Jinja chat template from a file.")
]


def chat(
    model: ModelOpt,
    prompt: Annotated[Optional[str], typer.Option("-p", "--prompt", help="System prompt (as run_inference.py -cnv).")] = None,
    system_prompt: Annotated[Optional[str], typer.Option("-sys", "--system-prompt", help="System prompt (wins over -p).")] = None,
    n_predict: NPredictOpt = -1,
    threads: ThreadsOpt = None,
    ctx_size: CtxOpt = 2048,
    temp: TempOpt = 0.8,
    top_k: TopKOpt = 40,
    top_p: TopPOpt = 0.95,
    min_p: MinPOpt = 0.05,
    repeat_penalty: RepeatPenaltyOpt = 1.0,
    repeat_last_n: RepeatLastNOpt = 64,
    presence_penalty: PresencePenaltyOpt = 0.0,
    frequency_penalty: FrequencyPenaltyOpt = 0.0,
    seed: SeedOpt = -1,
    stop: Annotated[Optional[list[str]], typer.Option("--stop", "-r", "--reverse-prompt", help="Also end a reply at this string (repeatable).")] = None,
    chat_template: ChatTemplateOpt = None,
    chat_template_file: ChatTemplateFileOpt = None,
    conversation: Annotated[bool, typer.Option("-cnv", "--conversation", hidden=True)] = True,
    n_gpu_layers: GpuLayersOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Chat with a model. Replies stream to stdout; speeds go to stderr. Type /help inside."""
    ignore_gpu_layers(n_gpu_layers)
    sampling = sampling_params(temp, top_k, top_p, min_p, repeat_penalty, repeat_last_n,
                               presence_penalty, frequency_penalty, seed)
    run_chat(model=model, system_prompt=system_prompt or prompt, threads=threads, ctx_size=ctx_size,
             n_predict=n_predict, sampling=sampling, verbose=verbose, stop=stop,
             chat_template=read_template_option(chat_template, chat_template_file))


def read_template_option(name_or_source: str | None, file: Path | None) -> str | None:
    """The template override from --chat-template / --chat-template-file (the file wins)."""
    from bitnet_cli.errors import UserError

    if file is None:
        return name_or_source
    if not file.is_file():
        raise UserError(f"no chat template file at {file}", "check the path given to --chat-template-file")
    return file.read_text(encoding="utf-8")


def run_chat(*, model: Path, system_prompt: str | None = None, threads: int | None = None, ctx_size: int = 2048,
             n_predict: int = -1, sampling: Any = None, verbose: bool = False, stop: list[str] | None = None,
             chat_template: str | None = None) -> None:
    """Load the model and hold a conversation on the terminal (also used by `bitnet run -cnv`)."""
    import time

    import bitnet_cli
    from bitnet_cli.chat import ChatSession, warm_up
    from bitnet_cli.errors import UserError
    from bitnet_cli.ui import info

    if n_predict < -1:
        raise UserError(f"invalid -n {n_predict}", "pass a token count, or -1 for 'until end of turn'")
    t0 = time.perf_counter()
    loaded = bitnet_cli.load(model, n_ctx=ctx_size, threads=threads)
    session = ChatSession(loaded, system_prompt=system_prompt, sampling=sampling, max_tokens=n_predict,
                          template=chat_template, stop=stop)
    warm_up(loaded)
    if verbose:
        info(f"load time: {time.perf_counter() - t0:.2f} s; template: {session.format.name}")
    _banner(model, session)
    code = ChatRepl(session).run()
    if code:
        import sys

        sys.exit(code)  # typer.Exit's code is lost under the app's standalone_mode=False


def _banner(model: Path, session: Any) -> None:
    from bitnet_cli.ui import info

    s = session.sampling
    info(f"Chatting with {Path(model).name} · context {session.n_ctx} · template {session.format.name} · "
         f"temp {s.temp} top-k {s.top_k} top-p {s.top_p} min-p {s.min_p}")
    info("Type /help for commands, /exit or Ctrl-D to leave, Ctrl-C to stop a reply.")


class ChatRepl:
    """The terminal side of a chat: reads lines, runs commands, streams replies."""

    def __init__(self, session: Any, read_line: Callable[[str], str] | None = None) -> None:
        self.session = session
        self.read_line = read_line or _read_line

    def run(self) -> int:
        """Loop until /exit or Ctrl-D (returns 0) or Ctrl-C at the prompt (returns 130)."""
        import sys

        from bitnet_cli.errors import BitnetError
        from bitnet_cli.ui import error, info

        while True:
            try:
                text = self._read_message()
            except EOFError:
                sys.stdout.write("\n")
                return 0
            except KeyboardInterrupt:
                sys.stdout.write("\n")
                return 130
            if text is None:
                continue
            try:
                if text.startswith("/"):
                    cmd = self.session.command(text)
                    if cmd.message:
                        info(cmd.message)
                    if cmd.action == "exit":
                        return 0
                    if cmd.action == "regen":
                        self._stream(self.session.regenerate())
                    elif cmd.action == "send":
                        self._stream(self.session.reply(cmd.text))
                elif text.strip() in ("exit", "quit"):
                    return 0
                else:
                    self._stream(self.session.reply(text))
            except BitnetError as e:
                error(str(e))

    def _read_message(self) -> str | None:
        """One message: a line, or the lines between two \"\"\" lines. None for a blank line."""
        line = self.read_line("> ")
        if line.strip() == '"""':
            lines: list[str] = []
            while True:
                more = self.read_line("... ")
                if more.strip() == '"""':
                    break
                lines.append(more)
            line = "\n".join(lines)
        return line if line.strip() else None

    def _stream(self, chunks: Any) -> None:
        import sys

        from bitnet_cli.ui import info, warn

        stats = self.session.stats
        if stats.dropped_messages:
            warn(f"the conversation outgrew the context ({self.session.n_ctx} tokens): "
                 f"dropped the {stats.dropped_messages} oldest messages")
        try:
            for text in chunks:
                sys.stdout.write(text)
                sys.stdout.flush()
        except KeyboardInterrupt:
            chunks.close()  # keeps the partial reply in the history
            sys.stdout.write("\n")
            sys.stdout.flush()
            info("[reply stopped]")
        else:
            sys.stdout.write("\n")
            sys.stdout.flush()
        info(self.session.stats.footer())


def _read_line(prompt: str) -> str:
    """input() on a terminal (line editing); otherwise the prompt goes to stderr."""
    import sys

    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401 - enables line editing and history for input()
        except ImportError:
            pass
        return input(prompt)
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


def register(app: typer.Typer) -> None:
    app.command("chat", no_args_is_help=True)(chat)
