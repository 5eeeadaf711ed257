"""`charrnn serve`: a trained model over HTTP."""

from __future__ import annotations

from typing import Annotated

import typer

from charrnn.cli.options import DeviceOpt, Given, NewestCheckpointArg, with_options
from charrnn.config import ServeLimits


@with_options(ServeLimits)
def serve_cmd(
    checkpoint_path: NewestCheckpointArg = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 for every network.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on; 0 picks a free one.")
    ] = 8000,
    opts: Given = None,
    device: DeviceOpt = "cpu",
):
    """Serve a trained model over HTTP: generate (whole or streamed), score, info, and a page to write from.

    Concurrent requests share one batched sampling step, so many clients cost little more
    than one; a seeded request served alone writes what `charrnn sample` writes. Logs go to
    stderr, a line per request. Ctrl-C or SIGTERM lets requests in flight finish (5 s at most).

    [bold]Examples[/bold]

      charrnn serve checkpoints/my-run --port 8000

      curl -N localhost:8000/v1/generate -d '{"prime": "ROMEO:", "stream": true}'

      curl localhost:8000/v1/score -d '{"text": "To be, or not to be"}'
    """
    from charrnn.serve.server import serve  # see the note on lazy imports in charrnn.cli.app

    serve(checkpoint_path, host=host, port=port, limits=opts.of(ServeLimits), device=device)
