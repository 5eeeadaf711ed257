"""The `charrnn` command: the Typer app, its commands (one module each, thin functions over
the plain functions of `charrnn.api` and the packages below it) and its entry point.

    charrnn train corpus.txt --time-limit 600
    echo "ROMEO:" | charrnn sample --length 500 | tee out.txt

stdout carries only the product (generated text, eval figures, info tables); progress,
logs and errors go to stderr. Every error is one line, `charrnn: error: ...`, with a
distinct exit code (`charrnn.cli.errors`).

The commands import what runs them (and through it torch) inside their bodies: torch takes
seconds to load, which `--help` and a usage error should not wait for.
"""

from __future__ import annotations

from typing import Annotated

import typer

from charrnn import __version__
from charrnn.cli import classify, evaluate, export, pages, preprocess, sample, serve, train
from charrnn.cli.errors import Command, OneLineErrors

app = typer.Typer(
    cls=OneLineErrors,
    name="charrnn",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
classify_app = typer.Typer(
    cls=OneLineErrors,
    name="classify",
    help="A character-level classifier: train it on labelled texts, predict labels, evaluate it.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def _version(value: bool):
    if value:
        typer.echo(f"charrnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, metavar="", help="Print the version and exit."),
    ] = False,
):
    """Character-level RNN text generator: learn any UTF-8 text and write more of it.

    [bold]Examples[/bold]

      charrnn train corpus.txt --preset auto --time-limit 600

      charrnn sample --prime "ROMEO:" --temp 0.8 --length 500

      echo "ROMEO:" | charrnn sample --length 500 | tee out.txt
    """


app.command("preprocess", cls=Command)(preprocess.preprocess_cmd)
app.command("corpora", cls=Command)(preprocess.corpora_cmd)
app.command("train", cls=Command, epilog=train.preset_help())(train.train_cmd)
app.command("sample", cls=Command)(sample.sample_cmd)
app.command("eval", cls=Command)(evaluate.eval_cmd)
app.command("info", cls=Command)(evaluate.info_cmd)
app.command("visualize", cls=Command)(pages.visualize_cmd)
app.command("report", cls=Command)(pages.report_cmd)
app.command("serve", cls=Command)(serve.serve_cmd)
app.command("export", cls=Command)(export.export_cmd)
classify_app.command("train", cls=Command)(classify.classify_train_cmd)
classify_app.command("predict", cls=Command)(classify.classify_predict_cmd)
classify_app.command("eval", cls=Command)(classify.classify_eval_cmd)
app.add_typer(classify_app, name="classify")


def main() -> None:
    app()
