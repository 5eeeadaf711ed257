"""`charrnn classify train | predict | eval`: the character-level classifier's commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from charrnn.classify.config import ClassifierSettings
from charrnn.cli.console import read_stdin, utf8_stdout
from charrnn.cli.errors import err, quiet_broken_pipe
from charrnn.cli.options import CheckpointArg, DeviceOpt, Given, UnknownOpt, field_option, with_options
from charrnn.config import CorpusOptions

TextCol = Annotated[
    str, typer.Option("--text-col", help="TSV/CSV header (or 0-based column number) / JSONL key of the text.")
]
LabelCol = Annotated[
    str, typer.Option("--label-col", help="TSV/CSV header (or 0-based column number) / JSONL key of the label.")
]
DataArg = Annotated[
    Path,
    typer.Argument(
        metavar="DATA",
        readable=False,
        show_default=False,
        help="A directory of LABEL.txt files (one example per line), a .tsv/.csv file or a .jsonl file.",
    ),
]
EncodingErrors = field_option(CorpusOptions, "encoding_errors")
Out = Annotated[
    Path | None,
    typer.Option("--out", "-o", show_default=False, help="Run directory (default: checkpoints/classify/NAME-TIME)."),
]


class ClassifyView:
    """`train_classifier`'s callbacks as a progress bar and a line per epoch on stderr."""

    def __init__(self, settings: ClassifierSettings, quiet: bool):
        self.settings, self.quiet = settings, quiet
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            TextColumn("loss {task.fields[loss]:.3f} · val acc {task.fields[acc]}"),
            console=err,
            disable=quiet,
            transient=False,
        )
        self.task = None

    def start(self, st) -> None:
        counts = st.examples.counts()
        err.print(
            f"classifying {len(st.labels)} labels from {st.examples.source}: {len(st.examples):,} examples "
            f"({st.train:,} train, {st.val:,} val; largest {counts.most_common(1)[0][1]:,}, "
            f"smallest {min(counts.values()):,}) · {st.vocab_size} characters · {st.parameters:,} parameters "
            f"· {st.device} · run {st.run_dir}"
        )
        if st.examples.truncated:
            err.print(
                f"charrnn: warning: {st.examples.truncated:,} texts were cut to --max-length {self.settings.max_length}"
            )
        self.progress.start()
        self.task = self.progress.add_task("train", total=self.settings.max_epochs, epoch=1, loss=float("nan"), acc="-")

    def batch(self, done: float, loss: float) -> None:
        self.progress.update(self.task, completed=done, epoch=int(done) + 1, loss=loss)

    def epoch(self, e) -> None:
        self.progress.update(self.task, acc=f"{e.val_accuracy:.3f}")
        if not self.quiet:
            self.progress.console.print(
                f"epoch {e.epoch}: train loss {e.train_loss:.3f} · val accuracy {e.val_accuracy:.4f} · "
                f"macro-F1 {e.val_macro_f1:.4f} · {e.elapsed_s:.1f} s" + (" · best" if e.best else "")
            )

    def close(self) -> None:
        if self.task is not None:
            self.progress.stop()


@with_options(ClassifierSettings)
def classify_train_cmd(
    data: DataArg,
    out: Out = None,
    opts: Given = None,
    text_col: TextCol = "text",
    label_col: LabelCol = "label",
    encoding_errors: EncodingErrors = "strict",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="No progress bar.")] = False,
):
    """Train a character-level classifier on labelled texts; writes RUN/best.pt.

    The examples are split per label into train and val (--val-frac, fixed by --seed); the
    weights with the best val accuracy are kept. Batches hold texts of similar length,
    padded and packed.

    [bold]Examples[/bold]

      charrnn classify train data/names --out checkpoints/names     # data/names/Russian.txt, ...

      charrnn classify train reviews.tsv --text-col review --label-col stars

      charrnn classify train lines.jsonl --model gru --hidden 256 --time-limit 60
    """
    from charrnn.classify.train import train_classifier
    from charrnn.training.interrupt import StopFlag

    settings = opts.of(ClassifierSettings)
    view = ClassifyView(settings, quiet)
    stop = StopFlag(on_stop=lambda: err.print("stopping: validating this epoch's weights, then saving the better"))
    try:
        with stop.installed():
            result = train_classifier(
                data, settings, out=out, text_col=text_col, label_col=label_col,
                opts=CorpusOptions(encoding_errors=encoding_errors), on_start=view.start, on_batch=view.batch,
                on_epoch=view.epoch, should_stop=stop,
            )  # fmt: skip
    finally:
        view.close()
    err.print(
        f"done: {result.epochs} epochs in {result.elapsed_s:.1f} s ({result.stopped}); val accuracy "
        f"{result.val_accuracy:.4f}, macro-F1 {result.val_macro_f1:.4f}; checkpoint {result.checkpoint}"
    )
    if stop.signum is not None:
        raise typer.Exit(stop.exit_code())


_ONE_FIELD = str.maketrans({"\t": " ", "\n": " ", "\r": " ", "\u2028": " ", "\u2029": " "})


def classify_predict_cmd(
    checkpoint_path: CheckpointArg,
    texts: Annotated[
        list[str] | None,
        typer.Argument(metavar="TEXT", show_default=False, help="Texts to label (default: stdin, one per line)."),
    ] = None,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="Likeliest labels to show for each text.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="One JSON object per line.")] = False,
    unknown: UnknownOpt = "auto",
    device: DeviceOpt = "cpu",
):
    """Label texts: each line out is text<TAB>label<TAB>probability (then the next likeliest, with --top).

    [bold]Examples[/bold]

      charrnn classify predict checkpoints/names Dostoevsky Nakamura --top 3

      cut -f1 names.txt | charrnn classify predict checkpoints/names | sort -k2

      charrnn classify predict checkpoints/names --json < names.txt > labelled.jsonl
    """
    from charrnn.classify.predict import load_classifier

    clf = load_classifier(checkpoint_path, device)  # before stdin is read
    if not texts:
        raw = read_stdin("the texts on stdin", "are")
        texts = [line.rstrip("\r") for line in raw.split("\n")]
        if texts and texts[-1] == "":
            texts.pop()
    out = utf8_stdout()
    predictions = clf.predict(texts, top=top, unknown=unknown)  # every text is checked before a line is written
    try:
        for text, ranked in zip(texts, predictions, strict=True):
            if as_json:
                out.write(json.dumps({"text": text, "labels": [{"label": lb, "p": p} for lb, p in ranked]}))
            else:  # one line per text: its tabs and line breaks become spaces
                shown = text.translate(_ONE_FIELD)
                out.write("\t".join([shown] + [f"{lb.translate(_ONE_FIELD)}\t{p:.4f}" for lb, p in ranked]))
            out.write("\n")
        out.flush()
    except BrokenPipeError:
        quiet_broken_pipe()


def classify_eval_cmd(
    checkpoint_path: CheckpointArg,
    data: DataArg,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", show_default=False, help="The HTML page (default: RUN/eval-DATA.html)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="The figures as one JSON object.")] = False,
    text_col: TextCol = "text",
    label_col: LabelCol = "label",
    encoding_errors: EncodingErrors = "strict",
    unknown: Annotated[
        Literal["error", "skip"],
        typer.Option("--unknown", help="Characters the classifier never saw: skip them, or error."),
    ] = "skip",
    device: DeviceOpt = "cpu",
):
    """Accuracy, macro-F1 and per-label precision and recall on labelled texts, and a page with the confusion matrix.

    [bold]Examples[/bold]

      charrnn classify eval checkpoints/names data/names-test

      charrnn classify eval checkpoints/names test.tsv --json | jq .accuracy
    """
    from charrnn.classify.evaluate import evaluate_classifier
    from charrnn.pages.classify import write_page

    ev = evaluate_classifier(
        checkpoint_path, data, text_col=text_col, label_col=label_col,
        opts=CorpusOptions(encoding_errors=encoding_errors), unknown=unknown, device=device,
    )  # fmt: skip
    if ev.skipped_chars:
        err.print(f"charrnn: warning: skipped {ev.skipped_chars:,} characters the classifier never saw")
    out_stream = utf8_stdout()
    if as_json:
        out_stream.write(json.dumps(ev.to_json()) + "\n")
    else:
        Console(file=out_stream, highlight=False).print(_scores_table(ev))
    out_stream.flush()
    page = out or ev.path.parent / f"eval-{Path(data).stem or 'data'}.html"
    try:  # the figures are out already: a page that cannot be written is a warning
        write_page(ev, page)
        err.print(f"page: {page}")
    except OSError as e:
        err.print(f"charrnn: warning: could not write the page {page}: {e.strerror or e}")


def _scores_table(ev) -> Table:
    sc = ev.scores
    t = Table(
        title=f"{ev.data}: accuracy {sc.accuracy:.4f}, macro-F1 {sc.macro_f1:.4f} over {sc.total:,} examples",
        title_justify="left",
    )
    for name in ("label", "precision", "recall", "F1", "support"):
        t.add_column(name, justify="left" if name == "label" else "right")
    for r in ev.scores.per_label():
        t.add_row(r["label"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", f"{r['support']:,}")
    return t
