"""`charrnn classify train | predict | eval`: the character-level classifier's commands."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from charrnn.classify.config import ClassifierReading, ClassifierSettings
from charrnn.cli.console import read_stdin, utf8_stdout
from charrnn.cli.errors import err, quiet_broken_pipe
from charrnn.cli.options import CheckpointArg, DeviceOpt, Given, field_option, with_options
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
UnknownOpt = field_option(ClassifierReading, "unknown")
UNSEEN_SHOWN = 5  # the commonest unseen characters the warning names
Out = Annotated[
    Path | None,
    typer.Option("--out", "-o", show_default=False, help="Run directory (default: checkpoints/classify/NAME-TIME)."),
]


class ClassifyView:
    """`train_classifier`'s callbacks as a progress bar and a line per epoch on stderr. The bar
    runs over the epochs where they cap the run, else over the seconds of --time-limit."""

    def __init__(self, settings: ClassifierSettings, quiet: bool):
        self.settings, self.quiet = settings, quiet
        self.by_time = settings.epoch_cap is None
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            TextColumn("loss {task.fields[loss]:.3f} · val acc {task.fields[acc]}"),
            console=err,
            disable=quiet,
            transient=False,
        )
        self.task = None
        self.t0 = 0.0

    def start(self, st) -> None:
        counts = st.examples.counts()
        # one line each, however narrow the terminal or the pipe: soft_wrap leaves the wrapping to it
        err.print(f"classifying {len(st.labels)} labels from {st.examples.source} {st.limit}", soft_wrap=True)
        rare = (
            f" ({st.rare:,} rare ones among them read as one, --min-count {self.settings.min_count})" if st.rare else ""
        )
        err.print(
            f"{len(st.examples):,} examples ({st.train:,} train, {st.val:,} val; largest "
            f"{counts.most_common(1)[0][1]:,}, smallest {min(counts.values()):,}) · {st.vocab_size} characters"
            f"{rare} · {st.parameters:,} parameters · {st.device} · run {st.run_dir}",
            soft_wrap=True,
        )
        if st.examples.truncated:
            err.print(
                f"charrnn: warning: {st.examples.truncated:,} texts were cut to --max-length {self.settings.max_length}"
            )
        total = self.settings.time_limit if self.by_time else self.settings.epoch_cap
        self.progress.start()
        self.t0 = time.monotonic()
        self.task = self.progress.add_task("train", total=total, epoch=1, loss=float("nan"), acc="-")

    def batch(self, done: float, loss: float) -> None:
        # `done` is epochs: 2.5 is halfway through the third, 3.0 the end of the third
        completed = min(self.settings.time_limit, time.monotonic() - self.t0) if self.by_time else done
        self.progress.update(self.task, completed=completed, epoch=max(1, math.ceil(done)), loss=loss)

    def epoch(self, e) -> None:
        self.progress.update(self.task, acc=f"{e.val_accuracy:.3f}", epoch=e.epoch)
        if not self.quiet:
            self.progress.console.print(
                f"epoch {e.epoch}: train loss {e.train_loss:.3f} · val accuracy {e.val_accuracy:.4f} · "
                f"macro-F1 {e.val_macro_f1:.4f} · {e.elapsed_s:.1f} s" + (" · best" if e.best else ""),
                soft_wrap=True,
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
        f"{result.val_accuracy:.4f}, macro-F1 {result.val_macro_f1:.4f}; checkpoint {result.checkpoint}",
        soft_wrap=True,
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
    where = (lambda i: f"text {i + 1}") if texts else (lambda i: f"line {i + 1} of stdin")
    if not texts:
        raw = read_stdin("the texts on stdin", "are")
        texts = [line.rstrip("\r") for line in raw.split("\n")]
        if texts and texts[-1] == "":
            texts.pop()
    out = utf8_stdout()
    # with --unknown error, every text is checked before a line is written
    predictions = clf.predict(texts, top=top, unknown=unknown, where=where)
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
    _warn_unseen(*clf.unseen(texts), len(texts), clf.unknown_rule(unknown))


def _warn_unseen(counts: Counter, holding: int, texts: int, rule: str) -> None:
    """One line on stderr: how many characters the classifier never saw, in how many texts,
    what was done with them, and the commonest."""
    if not counts:
        return
    how = "read as the unknown symbol" if rule == "unk" else "left out"
    common = ", ".join(f"{c!r} {n:,}" for c, n in counts.most_common(UNSEEN_SHOWN))
    more = f" and {len(counts) - UNSEEN_SHOWN:,} more" if len(counts) > UNSEEN_SHOWN else ""
    err.print(
        f"charrnn: warning: {holding:,} of {texts:,} texts held {sum(counts.values()):,} characters the "
        f"classifier never saw, {how} (--unknown error refuses them); the commonest: {common}{more}",
        soft_wrap=True,
    )


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
    unknown: UnknownOpt = "auto",
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
    _warn_unseen(ev.unseen, ev.unseen_texts, ev.scores.total, ev.unknown)


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
