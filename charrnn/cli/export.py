"""`charrnn export`: a trained model as ONNX, safetensors, or one HTML page that writes offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from charrnn.cli.errors import err
from charrnn.cli.options import CheckpointArg


def export_cmd(
    checkpoint_path: CheckpointArg,
    format: Annotated[
        Literal["onnx", "safetensors", "html"],
        typer.Option("--format", "-f", show_default=False, help="The form to write the model in."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            show_default=False,
            help="The file to write (default: beside the checkpoint, as best.html...).",
        ),
    ] = None,
    dtype: Annotated[
        Literal["float32", "float16", "int8"],
        typer.Option(
            "--dtype",
            help="How an HTML page stores its weights: float32 keeps them exact, float16 halves the page, int8 "
            "(a scale per row) quarters it. ONNX and safetensors keep float32.",
        ),
    ] = "float16",
):
    """Write a trained model in a form that runs without charrnn.

    safetensors: the weights, with the config, vocabulary and labels as JSON in the header;
    charrnn sample, serve and info take the file, and loading it runs no code. onnx: one step
    of the model (a classifier: its whole pass) for any ONNX runtime; needs the export extra,
    pip install 'charrnn[export]'. html: one page with the weights and a small JavaScript
    sampler, that writes in any browser, offline.

    [bold]Examples[/bold]

      charrnn export checkpoints/my-run --format html -o shakespeare.html

      charrnn export checkpoints/my-run -f safetensors -o my-model.safetensors

      charrnn export checkpoints/my-run -f onnx        [dim]# checkpoints/my-run/best.onnx[/dim]

      charrnn export checkpoints/my-run -f html --dtype float32
    """
    from charrnn import api  # see the note on lazy imports in charrnn.cli.app

    written = api.export(checkpoint_path, format, out, dtype=dtype)
    err.print(f"wrote {written} ({written.stat().st_size / 1e6:.2f} MB, {format})", soft_wrap=True)
