"""`bitnet serve`: an OpenAI-compatible HTTP server (llama-server / run_inference_server.py flags)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

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


def serve(
    model: ModelOpt,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.", envvar="BITNET_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", envvar="BITNET_PORT")] = 8080,
    threads: ThreadsOpt = None,
    ctx_size: CtxOpt = 2048,
    n_predict: NPredictOpt = -1,
    alias: Annotated[Optional[str], typer.Option("-a", "--alias", help="Model id shown in /v1/models (default: the file name).")] = None,
    api_key: Annotated[Optional[str], typer.Option("--api-key", help="Require 'Authorization: Bearer KEY'.", envvar="BITNET_API_KEY")] = None,
    cors_origins: Annotated[str, typer.Option("--cors-origins", help="Access-Control-Allow-Origin value ('' = no CORS).")] = "*",
    system_prompt: Annotated[Optional[str], typer.Option("-p", "-sys", "--system-prompt", help="System prompt for chat requests that carry none.")] = None,
    chat_template: Annotated[Optional[str], typer.Option("--chat-template", help="Built-in template (bitnet-2b4t, bitnet-fork, llama3, falcon3, plain) or Jinja text.")] = None,
    chat_template_file: Annotated[Optional[Path], typer.Option("--chat-template-file", help="Read the Jinja chat template from a file.")] = None,
    max_body: Annotated[int, typer.Option("--max-body", help="Largest request body in bytes (413 above).")] = 1 << 20,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Requests that may wait for the engine (503 above).")] = 32,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for a request body.")] = 30.0,
    temp: TempOpt = 0.8,
    top_k: TopKOpt = 40,
    top_p: TopPOpt = 0.95,
    min_p: MinPOpt = 0.05,
    repeat_penalty: RepeatPenaltyOpt = 1.0,
    repeat_last_n: RepeatLastNOpt = 64,
    presence_penalty: PresencePenaltyOpt = 0.0,
    frequency_penalty: FrequencyPenaltyOpt = 0.0,
    seed: SeedOpt = -1,
    no_warmup: Annotated[bool, typer.Option("--no-warmup", help="Report ready before compiling the kernels.")] = False,
    cont_batching: Annotated[bool, typer.Option("-cb", "--cont-batching", hidden=True)] = False,
    n_gpu_layers: GpuLayersOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions)."""
    from bitnet_cli.cli.chat import read_template_option
    ignore_gpu_layers(n_gpu_layers)
    sampling = sampling_params(temp, top_k, top_p, min_p, repeat_penalty, repeat_last_n,
                               presence_penalty, frequency_penalty, seed)
    run_server(model=model, host=host, port=port, threads=threads, ctx_size=ctx_size, n_predict=n_predict,
               alias=alias, api_key=api_key, cors_origins=cors_origins, system_prompt=system_prompt,
               chat_template=read_template_option(chat_template, chat_template_file), max_body=max_body,
               max_queue=max_queue, timeout=timeout, sampling=sampling, warmup=not no_warmup, verbose=verbose)


def run_server(*, model: Path, host: str, port: int, threads: int | None, ctx_size: int, n_predict: int,
               alias: str | None, api_key: str | None, cors_origins: str, system_prompt: str | None,
               chat_template: str | None, max_body: int, max_queue: int, timeout: float, sampling: Any,
               warmup: bool, verbose: bool) -> None:
    """Load the model in the background and serve until Ctrl-C."""
    import bitnet_cli
    from bitnet_cli.errors import UserError
    from bitnet_cli.engine import check_model_path
    from bitnet_cli.server import ServerConfig, start_server
    from bitnet_cli.server_engine import Engine
    from bitnet_cli.ui import info

    checks = [(n_predict >= -1 and n_predict != 0, f"invalid -n {n_predict}", "pass a token count, or -1"),
              (ctx_size >= 0, f"invalid -c {ctx_size}", "pass a positive context size, or 0 for the model's"),
              (0 < port < 65536, f"invalid --port {port}", "pass a port between 1 and 65535"),
              (max_body > 0 and max_queue >= 0 and timeout > 0, "--max-body, --max-queue and --timeout must be positive", None)]
    for ok, message, hint in checks:
        if not ok:
            raise UserError(message, hint)
    check_model_path(model)  # fail before binding the port; the model loads in the background
    engine = Engine(lambda: bitnet_cli.load(model, n_ctx=ctx_size, threads=threads), template=chat_template,
                    system_prompt=system_prompt, max_queue=max_queue, warmup=warmup)
    config = ServerConfig(alias=alias or Path(model).name, api_key=api_key or None, cors_origins=cors_origins,
                          max_body=max_body, default_max_tokens=n_predict, sampling=sampling,
                          read_timeout=timeout, verbose=verbose)
    httpd = start_server(engine, config, host, port, on_ready=lambda: info("Model ready."))
    bound = httpd.server_address[1]
    info(f"Listening on http://{host}:{bound} (OpenAI API under /v1; Ctrl-C stops).")
    info(f"Loading {Path(model).name}…")
    try:
        httpd.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        info("Shutting down.")
    finally:
        httpd.server_close()
    if engine.state == "error" and engine.error is not None:
        raise engine.error


def register(app: typer.Typer) -> None:
    app.command("serve", no_args_is_help=True)(serve)
