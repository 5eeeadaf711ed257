"""`charrnn eval` and `charrnn info`: a model's loss on a text, and what a checkpoint holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from charrnn.cli.options import CheckpointArg, DeviceOpt, LabelOpt, UnknownOpt


def eval_cmd(
    checkpoint_path: CheckpointArg,
    split: Annotated[
        Literal["val", "test", "train"], typer.Option("--split", help="Split of the checkpoint's corpus to evaluate.")
    ] = "val",
    file: Annotated[
        Path | None, typer.Option("--file", readable=False, help="Evaluate on this UTF-8 file instead.")
    ] = None,
    unknown: UnknownOpt = "auto",
    label: LabelOpt = None,
    device: DeviceOpt = "auto",
):
    """Loss of a model on a split of its corpus, or on any UTF-8 file, in nats and bits per character
    (a word model's in nats per token, with its perplexity and bits per character of the text).

    A model trained with labels reads a split with its documents' labels, and --file as text of --label.

    [bold]Examples[/bold]

      charrnn eval checkpoints/my-run

      charrnn eval checkpoints/my-run/best.pt --file holdout.txt

      charrnn eval checkpoints/names --file more-french-names.txt --label French
    """
    from charrnn import api  # see the note on lazy imports in charrnn.cli.app

    ev = api.evaluate(checkpoint_path, split=split, file=file, unknown=unknown, device=device, label=label)
    typer.echo(f"{ev.what}: {ev.units.describe(ev.loss)} over {ev.predictions:,} predictions")


def info_cmd(checkpoint_path: CheckpointArg):
    """Show what a checkpoint holds: model, sizes, training state, corpus, provenance.

    [bold]Example[/bold]

      charrnn info checkpoints/my-run/best.pt
    """
    from charrnn import api  # see the note on lazy imports in charrnn.cli.app
    from charrnn.pages.report import loss_sparkline

    info = api.info(checkpoint_path)
    t = Table(title=str(info.path), show_header=False, title_justify="left")
    for label, text in info.rows:
        if label == "format":
            text = f"{text}, {info.size:,} bytes"
        t.add_row(label, text)
        if label == "best val loss":
            t.add_row("train loss", loss_sparkline(info.history) or "-")  # it skips damaged entries
    Console(highlight=False).print(t)
