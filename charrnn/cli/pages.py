"""`charrnn visualize` and `charrnn report`: the self-contained HTML pages of a model and of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charrnn.cli.errors import err
from charrnn.cli.options import CheckpointArg, LabelOpt, UnknownOpt


def visualize_cmd(
    checkpoint_path: CheckpointArg,
    text: Annotated[
        Path | None,
        typer.Option(
            "--text",
            readable=False,
            show_default=False,
            help="A UTF-8 file to run through the model (default: the start of the checkpoint's validation split).",
        ),
    ] = None,
    prime: Annotated[
        str | None, typer.Option("--prime", help="Text to run through the model, given on the command line.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", show_default=False, help="The HTML page to write (default: visualize.html beside the checkpoint)."
        ),
    ] = None,
    max_chars: Annotated[
        int, typer.Option("--max-chars", min=2, help="Characters of the text to show (the page grows with it).")
    ] = 3000,
    unknown: UnknownOpt = "auto",
    label: LabelOpt = None,
):
    """Write one self-contained HTML page showing what the model sees in a text.

    Each character is shaded by the probability the model gave it; hovering or tapping it
    shows the five likeliest next characters. A picker recolours the text by any hidden or
    cell-state unit, and "interesting cells" lists the units that track features of the
    text (inside quotes, position in line, start of word, ...). Works offline.

    [bold]Examples[/bold]

      charrnn visualize checkpoints/my-run

      charrnn visualize checkpoints/my-run --text act1.txt --max-chars 2000

      charrnn visualize checkpoints/my-run --prime "ROMEO: \\"Is she not down?\\""
    """
    from charrnn.pages.visualize import visualize_checkpoint  # see the note on lazy imports in charrnn.cli.app

    page, shown = visualize_checkpoint(
        checkpoint_path, text=text, prime=prime, out=out, max_chars=max_chars, unknown=unknown, label=label
    )
    err.print(f"wrote {page} ({page.stat().st_size / 1e6:.1f} MB, {shown:,} characters)", soft_wrap=True)


def report_cmd(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR", help="A directory written by `charrnn train`.", show_default=False, readable=False
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", show_default=False, help="The HTML page to write (default: RUN_DIR/report.html)."),
    ] = None,
):
    """Write one self-contained HTML page about a training run.

    Train and val loss by step and by time, learning rate and speed as charts; the run's
    configuration; and the progress samples as a timeline from noise to words (train writes
    one at every evaluation unless --sample-every says otherwise). Works offline. `charrnn
    train` writes the page at the end.

    [bold]Examples[/bold]

      charrnn report checkpoints/my-run

      charrnn report checkpoints/my-run --out ~/my-run.html
    """
    from charrnn.pages.report import write_report  # see the note on lazy imports in charrnn.cli.app

    err.print(f"wrote {write_report(run_dir, out)}", soft_wrap=True)
