"""`charrnn serve`: trained models over HTTP, for any OpenAI client too."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charrnn.cli.options import DeviceOpt, Given, with_options
from charrnn.config import ServeLimits
from charrnn.errors import InputError

Runs = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[NAME=]RUN",
        show_default=False,
        help="Models to serve: a checkpoint or run directory each, named NAME (default: its run directory's "
        "name); default: the newest run in checkpoints/. A request's model picks one; the first is the default.",
    ),
]
Access = "Access"


@with_options(ServeLimits)
def serve_cmd(
    runs: Runs = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 for every network.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on; 0 picks a free one.")
    ] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            show_default=False,
            rich_help_panel=Access,
            help="Require Authorization: Bearer KEY on every /v1 route (or set CHARRNN_API_KEY).",
        ),
    ] = None,  # fmt: skip
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            "--api-key-file",
            show_default=False,
            readable=False,
            rich_help_panel=Access,
            help="Read the API key from the first line of this file.",
        ),
    ] = None,  # fmt: skip
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            metavar="",
            rich_help_panel=Access,
            help="Serve other machines (--host not loopback) without an API key, on purpose.",
        ),
    ] = False,  # fmt: skip
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            show_default=False,
            rich_help_panel=Access,
            help="Let pages at this origin (https://example.org) call the server; repeat for several.",
        ),
    ] = None,  # fmt: skip
    metrics: Annotated[
        bool, typer.Option("--metrics", metavar="", help="Serve Prometheus metrics at /metrics.")
    ] = False,
    opts: Given = None,
    device: DeviceOpt = "cpu",
):
    """Serve trained models over HTTP: OpenAI's completions and chat routes, charrnn's own
    generate (whole or streamed) and score, info, and a page to write from.

    Concurrent requests share one batched sampling step, so many clients cost little more
    than one; a seeded request served alone writes what `charrnn sample` writes. Logs go to
    stderr, a line per request. Ctrl-C or SIGTERM lets requests in flight finish (5 s at most).

    [bold]Examples[/bold]

      charrnn serve checkpoints/my-run --port 8000

      charrnn serve bard=checkpoints/bard jokes=checkpoints/jokes --api-key s3cret

      curl -N localhost:8000/v1/generate -d '{"prime": "ROMEO:", "stream": true}'

      curl localhost:8000/v1/completions -d '{"prompt": "ROMEO:", "max_tokens": 99}'
    """
    from charrnn.serve.server import serve  # see the note on lazy imports in charrnn.cli.app

    serve(
        runs or None,
        host=host,
        port=port,
        limits=opts.of(ServeLimits),
        device=device,
        api_key=api_key if api_key is not None else _key_from(api_key_file),
        no_auth=no_auth,
        cors_origins=tuple(cors_origin or ()),
        metrics=metrics,
    )


def _key_from(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the API key ({getattr(e, 'strerror', None) or e})") from None
    key = lines[0].strip() if lines else ""
    if not key:
        raise InputError(f"{path}: holds no API key (its first line is empty)")
    return key
