"""The `charrnn` command: Typer options, one thin function per subcommand over the plain
functions of `charrnn.api` (and the page writers of `report` and `visualize`), the console
views, and the mapping of errors to exit codes.

    charrnn train corpus.txt --time-limit 600
    echo "ROMEO:" | charrnn sample --length 500 | tee out.txt

stdout carries only the product (generated text, eval figures, info tables); progress,
logs and errors go to stderr. Every error is one line, `charrnn: error: ...`, with a
distinct exit code (see `charrnn.errors`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from charrnn import __version__
from charrnn.config import (
    AUTO_ADAPTIVE_VOCAB,
    DEFAULT_MAX_EPOCHS,
    FINETUNE_LR_FRAC,
    FINETUNE_WARMUP_STEPS,
    LABELS_SHOWN,
    MAX_DOCUMENT,
    PRESETS,
    SAMPLE_FIELDS,
    SETTINGS,
    TEST_FRAC,
    VAL_FRAC,
    ClassifierSettings,
    SampleConfig,
    ServeLimits,
    default,
    preset_settings,
)
from charrnn.corpus import documents
from charrnn.corpus.text import TextOptions
from charrnn.corpus.tokens import WORD_MAX_VOCAB, cap_flags
from charrnn.corpus.vocab import shown
from charrnn.errors import ERROR_PREFIX, LAUNCHED_ENV, CharRNNError, InputError, PeerLostError
from charrnn.values import Units

# The commands import charrnn.api (and through it torch) inside their bodies: torch takes
# seconds to load, which `--help` and a usage error should not wait for.

MAX_SEED = 2**63 - 1  # torch seeds are signed 64-bit
OUT_OF_MEMORY = "out of memory; try a smaller --batch-size, --seq-len, --hidden or --num-samples"

err = Console(stderr=True, highlight=False)


# --------------------------------------------------------------------------- errors -> exit codes


class _NoHelpPlaceholder:
    """--help shows no value placeholder after the flag itself."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class OneLineErrors(_NoHelpPlaceholder, TyperGroup):
    """Every failure ends as one line on stderr and an exit code; never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(
                args=args, prog_name=prog_name or "charrnn", complete_var=complete_var, standalone_mode=False, **extra
            )
        except typer.TyperException as e:  # usage errors: bad option values, missing arguments
            if type(e).__name__ == "NoArgsIsHelpError":  # `charrnn` alone: the help was the answer
                sys.exit(e.exit_code)
            _fail(e.format_message(), e.exit_code)
        except typer.Abort:
            _fail("aborted", 130)
        except PeerLostError as e:
            if not os.environ.get(LAUNCHED_ENV):  # else the launcher names the process that stopped first
                _print_error(str(e))
            _exit(e.exit_code)
        except CharRNNError as e:
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:
            _quiet_broken_pipe()
            sys.exit(0)
        except MemoryError:
            _fail(OUT_OF_MEMORY, 1)
        except RuntimeError as e:  # torch's allocators report a failed allocation as a RuntimeError
            if not _out_of_memory(e):
                raise
            _fail(OUT_OF_MEMORY, 1)
        except OSError as e:
            _fail(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}", 1)
        sys.exit(rv if isinstance(rv, int) else 0)


class Command(_NoHelpPlaceholder, TyperCommand):
    pass


def _out_of_memory(e: RuntimeError) -> bool:
    text = str(e)
    return type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in text or "out of memory" in text


def _fail(message: str, code: int):
    _print_error(message)
    _exit(code)


def _exit(code: int):
    if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1"):
        # a failed rank of a data-parallel run ends at once: the interpreter's own shutdown
        # tears down the process group, which can abort while a peer is still in a collective
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


def _print_error(message: str) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    try:
        err.print(Text(ERROR_PREFIX + first), soft_wrap=True)
    except BrokenPipeError:
        pass


def _quiet_broken_pipe() -> None:
    # The reader went away (`| head`): point stdout at /dev/null so the final flush is silent.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# --------------------------------------------------------------------------- options, declared once


def in_range(lo: float | None, hi: float | None, *, lo_open: bool = False, hi_open: bool = False):
    """An option callback for bounds that may be open (typer's min/max are closed)."""

    def check(value):
        if value is None:
            return value
        bad = (lo is not None and (value < lo or (lo_open and value == lo))) or (
            hi is not None and (value > hi or (hi_open and value == hi))
        )
        if bad or value != value or math.isinf(value):
            left = "(" if lo_open else "["
            right = ")" if hi_open or hi is None else "]"
            raise typer.BadParameter(
                f"{value} is not in {left}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{right}"
            )
        return value

    return check


def _fraction(flag: str, help: str):
    """The type of an option that takes a fraction in [0, 1)."""
    return Annotated[float, typer.Option(flag, callback=in_range(0, 1, hi_open=True), help=help)]


# Path arguments are declared readable=False: the library checks files itself, so an unreadable
# file gets its own message and exit code (3 for text, 4 for a checkpoint), not a usage error.
CheckpointArg = Annotated[
    Path,
    typer.Argument(
        metavar="CHECKPOINT_OR_RUN_DIR",
        help="A checkpoint file or run directory (its best.pt).",
        show_default=False,
        readable=False,
    ),
]
NewestCheckpointArg = Annotated[
    Path | None,
    typer.Argument(
        metavar="CHECKPOINT_OR_RUN_DIR",
        readable=False,
        show_default=False,
        help="A checkpoint file or run directory (its best.pt); default: the newest run in checkpoints/.",
    ),
]
DeviceName = Literal["auto", "cpu", "cuda", "mps"]
DeviceOpt = Annotated[DeviceName, typer.Option("--device", help="auto picks cuda, then mps, then cpu.")]
UnknownOpt = Annotated[
    Literal["auto", "error", "skip", "unk"],
    typer.Option(
        "--unknown",
        help="Symbols outside the model's vocabulary: error, skip them, or read them as <unk> (a model with "
        "--max-vocab or --min-count); auto is unk with a warning for such a model, else error.",
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed for weights, dropout and samples.")]
EncodingErrors = Annotated[
    Literal["strict", "replace", "ignore"],
    typer.Option(
        "--encoding-errors", help="What to do with bytes that are not UTF-8: strict (refuse), replace (U+FFFD), ignore."
    ),
]
Newline = Annotated[
    Literal["keep", "lf"], typer.Option("--newline", help="keep line endings as they are, or lf to turn CRLF into LF.")
]
Force = Annotated[bool, typer.Option("--force", metavar="", help="Accept a file that looks binary.")]


def _unescape(value: str | None) -> str | None:
    return None if value is None else documents.unescape(value)


DocSep = Annotated[
    str | None,
    typer.Option(
        "--doc-sep",
        callback=_unescape,
        show_default=False,
        help="Split each file into documents at this string ('\\n': one a line; '\\n%\\n': fortune files). "
        "\\n, \\t, \\r and \\\\ are read as escapes.",
    ),
]


def _labels_option(value: str | None) -> str | None:
    if value is not None and value not in documents.LABEL_SOURCES and not Path(value).suffix:
        raise typer.BadParameter(f"must be from-dir, from-file, or the path of a .tsv file, not {value!r}")
    return value


Labels = Annotated[
    str | None,
    typer.Option(
        "--labels",
        callback=_labels_option,
        show_default=False,
        metavar="from-dir|from-file|FILE.tsv",
        help="Label each document: from-dir (the folder it is in, below the directory named), from-file (its "
        "file's stem, as in "
        "names/French.txt), or FILE.tsv (text<TAB>label lines, each a document; then INPUT may be left out). "
        "The model learns a label embedding, and samples take --label.",
    ),
]
TokensOpt = Annotated[
    Literal["char", "word"] | None,
    typer.Option(
        "--tokens",
        show_default=False,
        help="What the model's symbols are: char (code points; the default) or word (words, numbers, punctuation "
        "marks and whitespace runs; CJK and Thai text a character each). Joined, the tokens are the text.",
    ),
]
LowercaseOpt = Annotated[
    bool,
    typer.Option(
        "--lowercase", metavar="", help="Lowercase the text first (a run from a lowercased model does it anyway)."
    ),
]
MaxVocabOpt = Annotated[
    int | None,
    typer.Option(
        "--max-vocab",
        min=3,
        show_default=False,
        help=f"Keep at most this many symbols, the likeliest (default: {WORD_MAX_VOCAB:,} for words, every "
        "character); the rest are read as <unk>.",
    ),
]
MinCountOpt = Annotated[
    int | None,
    typer.Option(
        "--min-count",
        min=1,
        show_default=False,
        help="Keep only symbols seen this many times; the rest are read as <unk> (--min-count 3 on CJK text; "
        "default 1).",
    ),
]
LabelOpt = Annotated[
    str | None,
    typer.Option("--label", show_default=False, help="A labelled model: the label of the text (see charrnn info)."),
]


def _inputs(help: str):
    """The INPUT... argument of preprocess and train: files, directories or patterns."""
    return Annotated[list[Path] | None, typer.Argument(metavar="INPUT", readable=False, show_default=False, help=help)]


Inputs = _inputs(
    "A UTF-8 text file (or a bundled corpus by name); or several files, directories (every file inside, "
    "recursively) or glob patterns, each file a document."
)
ValFrac = _fraction("--val-frac", "Fraction of the text, at its end, held out for validation.")
TestFrac = _fraction("--test-frac", "Fraction held out for testing, just before the validation split.")


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option `name` was on the command line (or in the environment), not its default."""
    return getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"


def _explicit_settings(ctx: typer.Context) -> dict:
    """The config settings given on the command line; the rest come from a preset, the
    resumed checkpoint or the config's defaults (which --help shows)."""
    return {
        name: value
        for name, value in ctx.params.items()
        if name in SETTINGS and getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
    }


app = typer.Typer(
    cls=OneLineErrors,
    name="charrnn",
    help="Character-level RNN text generator: learn any UTF-8 text and write more of it.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
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


# --------------------------------------------------------------------------- preprocess


@app.command("preprocess", cls=Command)
def preprocess_cmd(
    inputs: Inputs = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output directory (default: corpora/<input stem>).", show_default=False)
    ] = None,
    doc_sep: DocSep = None,
    labels: Labels = None,
    tokens: TokensOpt = None,
    lowercase: LowercaseOpt = False,
    max_vocab: MaxVocabOpt = None,
    min_count: MinCountOpt = None,
    val_frac: ValFrac = VAL_FRAC,
    test_frac: TestFrac = TEST_FRAC,
    encoding_errors: EncodingErrors = "strict",
    newline: Newline = "keep",
    force: Force = False,
):
    """Encode a text, or a collection of documents, as ids over its vocabulary of code points,
    with train/val/test splits.

    Writes DIR/ids.bin (memory-mappable, smallest unsigned dtype), DIR/vocab.json and
    DIR/meta.json. Splits are contiguous: val is the last --val-frac of the text. Several
    inputs, a directory (every file inside, recursively, in sorted order; files that look
    binary are skipped and listed), a glob pattern, or --doc-sep make a collection of
    documents: each ends with an end-of-document symbol of the vocabulary (⏎ in pages), and
    the splits fall between whole documents. With --labels each document has a label (written
    to DIR/labels.bin): val and test then take the last documents of every label, and each
    split's documents are laid out in a fixed shuffled order.

    [bold]Examples[/bold]

      charrnn preprocess tinyshakespeare            [dim]# the bundled corpus, into corpora/tinyshakespeare[/dim]

      charrnn preprocess poems.txt --out corpora/poems --val-frac 0.05 --test-frac 0.05

      charrnn preprocess /usr/share/games/fortunes/de --doc-sep '\\n%\\n'   [dim]# a fortune a document[/dim]

      charrnn preprocess 'names/*.txt' --doc-sep '\\n'                      [dim]# a name a document[/dim]

      charrnn preprocess names/ --doc-sep '\\n' --labels from-file   [dim]# names/French.txt: label French[/dim]

      charrnn preprocess --labels reviews.tsv                            [dim]# text<TAB>label lines[/dim]

      charrnn preprocess comments.txt --tokens word --max-vocab 8000     [dim]# words; the rarest as <unk>[/dim]

      charrnn preprocess tang.txt --min-count 3             [dim]# characters seen under 3 times as <unk>[/dim]
    """
    from charrnn import api  # see the note on lazy imports at the top

    if not inputs and (labels is None or labels in documents.LABEL_SOURCES):
        _fail("name a text file, a directory or a pattern to preprocess", 2)
    corpus = api.preprocess(
        inputs or None,
        out=out,
        val_frac=val_frac,
        test_frac=test_frac,
        text=TextOptions(encoding_errors, newline, force),
        doc_sep=doc_sep,
        labels=labels,
        tokens=tokens,
        lowercase=lowercase or None,
        max_vocab=max_vocab,
        min_count=min_count,
    )
    m = corpus.meta
    _say_skipped(m)
    t = Table(title=f"corpus {corpus.path}", show_header=False, title_justify="left")
    t.add_row("source", f"{m['source']} ({m['source_bytes']:,} bytes)")
    t.add_row("sha256", m["source_sha256"])
    unit = "tokens" if m.get("tokens", {}).get("kind") == "word" else "characters"
    t.add_row(unit, f"{m['chars']:,}" + (" (end-of-document symbols included)" if "documents" in m else ""))
    if "documents" in m:
        sep = f", split at {m['doc_sep']!r}" if m.get("doc_sep") is not None else ", a file each"
        t.add_row("documents", f"{m['documents']:,} from {m['files']:,} file(s){sep}")
    if "labels" in m:
        pairs = [
            f"{name} {count:,}" for name, count in zip(m["labels"]["names"], m["labels"]["documents"], strict=True)
        ]
        t.add_row("labels", f"{len(pairs)} ({shown(pairs, LABELS_SHOWN, quote=False)})")
    t.add_row("vocabulary", _vocab_summary(m))
    sizes = m["split_sizes"]
    t.add_row("splits", "  ".join(f"{k} {sizes[k]:,}" for k in ("train", "val", "test") if sizes[k]))
    err.print(t)


def _vocab_summary(m: dict) -> str:
    """The vocabulary row of preprocess's summary: its size, and what a cap left out."""
    tokens = m.get("tokens")
    if tokens is None:
        return f"{m['vocab_size']} code points, stored as {m['dtype']}"
    kind = "words and other tokens" if tokens["kind"] == "word" else "code points"
    unit = "tokens" if tokens["kind"] == "word" else "characters"
    low = ", lowercased" if tokens["lowercase"] else ""
    caps = cap_flags(tokens)
    return (
        f"{m['vocab_size']:,} {kind}{low} of {tokens['distinct']:,} distinct ({' '.join(caps) or 'no cap'}), "
        f"stored as {m['dtype']}; coverage {tokens['coverage']:.2%} of the text's {unit}"
    )


@app.command("corpora", cls=Command)
def corpora_cmd():
    """List the corpora that come with charrnn: train on one by its name.

    [bold]Examples[/bold]

      charrnn corpora

      charrnn train tinyshakespeare --preset auto --time-limit 600
    """
    from charrnn.corpus.bundled import CORPORA  # see the note on lazy imports at the top

    t = Table(show_header=True, title_justify="left")
    for column in ("name", "size", "source"):
        t.add_column(column)
    for c in CORPORA.values():
        t.add_row(c.name, f"{c.path.stat().st_size:,} bytes", c.source)
    Console(highlight=False).print(t)


# --------------------------------------------------------------------------- train


def _preset_help() -> str:
    rows = []
    for name in PRESETS:
        p = preset_settings(name)
        rows.append(
            f"  {name:<7} {p['layers']}x{p['hidden']} {p['model']}, dropout {p['dropout']}, "
            f"batch {p['batch_size']} x seq {p['seq_len']}, lr {p['lr']}, weight decay {p['weight_decay']}"
            + (", tied embeddings" if p["tie_embeddings"] else "")
            + (f", ema {p['ema']}" if p["ema"] else "")
            + (f", locked dropout {p['locked_dropout']}" if p["locked_dropout"] else "")
            + (f", weight dropout {p['weight_dropout']}" if p["weight_dropout"] else "")
            + (f", at most {p['max_epochs']:g} epochs" if p["max_epochs"] else "")
        )
    return (
        "[bold]Presets[/bold] (explicit flags override them). auto with --time-limit on the CPU first trains each "
        "preset a few steps on the corpus, within 3% of the time limit, and picks the one whose characters in that "
        "time reach the lowest val loss in a table measured on tiny-shakespeare (the console says why); on CUDA "
        "it picks xl, tuned on a GPU, and on the CPU without --time-limit large:\n\n"
        + "\n".join(rows)
        + "\n\n[bold]Fine-tuning[/bold] (--init-from RUN): a new run, with its own directory, optimizer, schedule "
        "and step 0, starts from RUN's weights. The architecture is RUN's (--model, --hidden and --layers may only "
        "repeat it). Characters RUN knows keep their ids; characters new to it get fresh rows, their output bias "
        "set from their frequency in the new text. The recipe is RUN's own, with the peak --lr at "
        f"{FINETUNE_LR_FRAC} of RUN's and {FINETUNE_WARMUP_STEPS} --warmup-steps, and the model is "
        "evaluated before the first step, to show where it starts on the new text. Explicit flags override the recipe."
    )


@app.command("train", cls=Command, epilog=_preset_help())
def train_cmd(
    ctx: typer.Context,
    inputs: _inputs(
        "A UTF-8 text file (preprocessed on the fly and cached in corpora/), a preprocessed directory, or "
        "several files, directories or glob patterns (each file a document; see charrnn preprocess --help). "
        "Optional with --resume."
    ) = None,
    doc_sep: DocSep = None,
    labels: Labels = None,
    tokens: TokensOpt = None,
    lowercase: LowercaseOpt = False,
    max_vocab: MaxVocabOpt = None,
    min_count: MinCountOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            show_default=False,
            help="Run directory (default: checkpoints/<corpus>-<time>, or the resumed run's).",
        ),
    ] = None,
    preset: Annotated[
        Literal["auto", "tiny", "small", "medium", "large", "xl"] | None,
        typer.Option("--preset", help="Named size and recipe; see the table below."),
    ] = None,
    model: Annotated[Literal["lstm", "gru", "rnn"], typer.Option("--model", help="Recurrent cell.")] = default("model"),
    hidden: Annotated[int, typer.Option("--hidden", min=1, help="Hidden units per layer.")] = default("hidden"),
    layers: Annotated[int, typer.Option("--layers", min=1, help="Recurrent layers.")] = default("layers"),
    dropout: _fraction("--dropout", "Dropout between layers.") = default("dropout"),
    softmax: Annotated[
        Literal["auto", "full", "adaptive"],
        typer.Option(
            "--softmax",
            help="The output layer: full, or adaptive (the 256 likeliest symbols in a head, the rarer ones in "
            "smaller clusters; several times faster steps for vocabularies of thousands: words, CJK); auto is "
            f"adaptive above {AUTO_ADAPTIVE_VOCAB:,} symbols.",
        ),
    ] = "auto",
    locked_dropout: _fraction(
        "--locked-dropout", "Dropout of the input embedding and the last layer's output, one mask per window."
    ) = default("locked_dropout"),
    weight_dropout: _fraction("--weight-dropout", "DropConnect on the recurrent hidden-to-hidden matrices.") = (
        default("weight_dropout")
    ),
    tie_embeddings: Annotated[
        bool,
        typer.Option(
            "--tie-embeddings/--untied",
            metavar="",
            show_default=False,
            help="The output layer's weight is the input embedding (or its own; default: the preset's, else untied).",
        ),
    ] = default("tie_embeddings"),
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Contiguous streams per batch.")] = default(
        "batch_size"
    ),
    seq_len: Annotated[int, typer.Option("--seq-len", min=1, help="Characters per truncated-BPTT window.")] = default(
        "seq_len"
    ),
    lr: Annotated[
        float, typer.Option("--lr", callback=in_range(0, None, lo_open=True), help="Peak learning rate.")
    ] = default("lr"),
    warmup_steps: Annotated[int, typer.Option("--warmup-steps", min=0, help="Linear warm-up steps.")] = default(
        "warmup_steps"
    ),
    decay_steps: Annotated[
        int | None,
        typer.Option(
            "--decay-steps",
            min=1,
            show_default=False,
            help="Cosine schedule horizon in steps (default: the run's --max-steps or --time-limit).",
        ),
    ] = None,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0.0, help="AdamW weight decay on matrices.")] = (
        default("weight_decay")
    ),
    ema: _fraction(
        "--ema", "Decay of a moving average of the weights that is evaluated and saved as best.pt, 0 = off."
    ) = default("ema"),
    grad_clip: Annotated[float, typer.Option("--grad-clip", min=0.0, help="Max global gradient norm, 0 = off.")] = (
        default("grad_clip")
    ),
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Total optimizer steps (counted across resumes).")
    ] = None,
    max_epochs: Annotated[
        float | None,
        typer.Option(
            "--max-epochs",
            callback=in_range(0, None, lo_open=True),
            show_default=False,
            help=f"Total passes over the training split ({DEFAULT_MAX_EPOCHS} when no limit is set).",
        ),
    ] = None,
    time_limit: Annotated[
        float | None,
        typer.Option(
            "--time-limit",
            callback=in_range(0, None, lo_open=True),
            help="Stop after this many seconds of training (counted across resumes), then evaluate and save.",
        ),
    ] = None,
    eval_every: Annotated[
        int, typer.Option("--eval-every", min=0, help="Steps between full validation passes, 0 = only at the end.")
    ] = default("eval_every"),
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", min=0, help="Steps between writes of last.pt, 0 = only at the end.")
    ] = default("checkpoint_every"),
    sample_every: Annotated[
        int | None,
        typer.Option(
            "--sample-every",
            min=0,
            show_default=False,
            help="Steps between progress samples, 0 = never (default: a sample at every evaluation).",
        ),
    ] = default("sample_every"),
    sample_length: Annotated[
        int, typer.Option("--sample-length", min=1, help="Characters per progress sample.")
    ] = default("sample_length"),
    sample_temp: Annotated[
        float, typer.Option("--sample-temp", min=0.0, help="Temperature of progress samples.")
    ] = default("sample_temp"),
    patience: Annotated[
        int, typer.Option("--patience", min=0, help="Stop after this many evals without a better val loss, 0 = never.")
    ] = default("patience"),
    log_every: Annotated[int, typer.Option("--log-every", min=1, help="Steps between metrics.jsonl lines.")] = default(
        "log_every"
    ),
    resume: Annotated[
        Path | None,
        typer.Option("--resume", readable=False, help="Continue a run: its directory (last.pt) or a checkpoint file."),
    ] = None,
    init_from: Annotated[
        Path | None,
        typer.Option(
            "--init-from",
            readable=False,
            help="Fine-tune: start a new run from a trained model's weights (its run directory, best.pt, or a "
            "checkpoint file). See the recipe above.",
        ),
    ] = None,
    device: DeviceOpt = default("device"),
    precision: Annotated[
        Literal["auto", "fp32", "bf16", "fp16"],
        typer.Option("--precision", help="auto: bf16 where the hardware is fast at it, else fp32."),
    ] = default("precision"),
    seed: SeedOpt = default("seed"),
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", metavar="", help="No progress bar or samples on the console.")
    ] = False,
    nproc: Annotated[
        int,
        typer.Option("--nproc", min=1, help="Data-parallel processes on this machine (one per GPU; gloo on the CPU)."),
    ] = 1,
    val_frac: ValFrac = VAL_FRAC,
    test_frac: TestFrac = TEST_FRAC,
    encoding_errors: EncodingErrors = "strict",
    newline: Newline = "keep",
    force: Force = False,
):
    """Train a model on a text file; writes last.pt, best.pt, metrics.jsonl and samples.txt.

    Runs on the GPU when there is one (cuDNN LSTM, bf16 autocast), else on the CPU (bf16
    autocast where the CPU has AMX or AVX512-BF16). Ctrl-C saves last.pt and tells how to
    resume; --resume continues exactly where the run stopped. Options left out come from
    --preset, or when resuming from the run itself.

    [bold]Examples[/bold]

      charrnn train tinyshakespeare --preset auto --time-limit 600        [dim]# the bundled corpus[/dim]

      charrnn train poems.txt --hidden 128 --layers 2 --max-steps 500 --sample-every 100

      charrnn train --resume checkpoints/tinyshakespeare-20261128-101500 --max-steps 5000

      charrnn train fortunes.txt --init-from checkpoints/tinyshakespeare-20261128-101500 --time-limit 120

      charrnn train names/ --doc-sep '\\n' --labels from-file --out checkpoints/names   [dim]# then sample --label[/dim]

      charrnn train comments.txt --tokens word --max-vocab 8000 --doc-sep '\\n'   [dim]# words; a comment a line[/dim]
    """
    from charrnn import api
    from charrnn.training import distributed  # see the note on lazy imports at the top
    from charrnn.training.interrupt import StopFlag

    is_main = distributed.from_env().is_main  # the other processes of --nproc stay silent
    distributed.die_with_launcher()
    plan = api.plan_training(
        inputs or None,
        out=out,
        preset=preset,
        resume=resume,
        init_from=init_from,
        settings=_explicit_settings(ctx),
        val_frac=val_frac,
        test_frac=test_frac,
        text=TextOptions(encoding_errors, newline, force),
        doc_sep=doc_sep,
        labels=labels,
        tokens=tokens,
        lowercase=lowercase or None,
        max_vocab=max_vocab,
        min_count=min_count,
    )
    if is_main:
        _say_skipped(plan.corpus.meta)
    if preset == "auto" and is_main:
        err.print(f"preset auto -> {plan.preset}{_auto_reason(plan.auto, plan.preset)}", soft_wrap=True)
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        if plan.auto is not None:  # the processes train what was chosen here, not a choice of their own
            os.environ[api.AUTO_ENV] = json.dumps(plan.auto)
        code, message = distributed.relaunch(
            nproc, sys.argv[1:], run_dir=plan.run_dir, batch_size=plan.train_config.batch_size
        )
        if message:
            _fail(message, code)
        raise typer.Exit(code)

    view = ConsoleView(quiet or not is_main)
    stop = StopFlag(on_stop=_say_stopping if is_main else None)
    with stop.installed():
        try:
            result = api.run_training(plan, callbacks=view, should_stop=stop)
        finally:
            view.close()
    if result.stopped == "interrupted":
        if is_main:  # soft_wrap: a long path must stay on one line to be copied
            err.print(f"interrupted at step {result.step}; saved {plan.run_dir / 'last.pt'}", soft_wrap=True)
            err.print(f"resume with: charrnn train --resume {plan.run_dir}", soft_wrap=True)
        raise typer.Exit(stop.exit_code())
    if not is_main:
        return
    _report_after_training(plan.run_dir)
    best = result.best_val_loss
    if math.isfinite(best):
        val = f"best val loss {Units.of(plan.corpus.meta).describe(best)} at step {result.best_step}"
    elif not plan.corpus.meta.get("split_sizes", {}).get("val"):
        val = "no val loss (the corpus has no validation split)"
    else:
        val = "no finite val loss"
    err.print(
        f"done: {result.step} steps in {result.elapsed_s:.1f} s ({result.stopped.replace('_', '-')}); "
        f"{val}; checkpoint {plan.run_dir / 'best.pt'}",
        soft_wrap=True,
    )


def _auto_reason(auto: dict | None, chosen: str) -> str:
    """Why --preset auto chose its preset: what the budget buys here, and the speeds measured."""
    if auto is None:
        return " (on CUDA: the preset tuned there)" if chosen == "xl" else " (no time limit: the design default)"
    speeds = ", ".join(f"{k} {v / 1e3:.1f}k" for k, v in auto["chars_per_sec"].items())
    skipped = f"; not measured: {', '.join(auto['not_measured'])}" if auto["not_measured"] else ""
    measured = f"measured in {auto['measure_s']:.1f} s after {auto.get('startup_s', 0):.1f} s of start-up"
    return f": {auto['reason']} ({measured}, chars/s: {speeds}{skipped})"


def _say_skipped(meta: dict) -> None:
    """The one-line summary of the files a collection of documents left out as binary."""
    count = meta.get("skipped_count") or 0
    if count:
        named = ", ".join(meta.get("skipped", []))
        more = f" and {count - len(meta.get('skipped', []))} more" if count > len(meta.get("skipped", [])) else ""
        err.print(Text(f"charrnn: warning: skipped {count} file(s) that look binary: {named}{more}"), soft_wrap=True)


def _say_stopping() -> None:
    err.print("stopping: saving last.pt (Ctrl-C again to quit at once)")


def _report_after_training(run_dir: Path) -> None:
    from charrnn.pages.report import load_run, loss_sparkline, write_report

    try:
        run = load_run(run_dir)  # reads last.pt once, for the sparkline and the report
        spark = loss_sparkline((run.ckpt or {}).get("history", []))
        if spark:
            err.print(f"train loss {spark}")
        err.print(f"report: {write_report(run_dir, run=run)}", soft_wrap=True)
    except (CharRNNError, OSError) as e:  # the model is saved; a report that fails must not fail the run
        err.print(Text(f"charrnn: warning: no report written: {e}"))


class ConsoleView:
    """The training loop's `Callbacks` as a rich progress bar and samples on stderr (or plain
    lines off a terminal)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task = None
        self.by_time = False

    def on_start(self, run) -> None:
        if self.quiet:
            return
        mc, tc = run.model_config, run.train_config
        err.print(
            f"{'resuming' if run.resumed else 'training'} {mc.layers}x{mc.hidden} {mc.model} "
            f"({run.params:,} parameters) on {run.corpus['name']} · {run.device} {run.precision} · "
            f"batch {tc.batch_size}x{tc.seq_len} · run {run.run_dir}",
            soft_wrap=True,
        )
        if run.parent and not run.resumed:
            p = run.parent
            new = f"{p['new_chars']} character(s) new to the model" + (
                f": {shown(p['new'], total=p['new_chars'])}" if p["new"] else ""
            )
            err.print(f"starting from {p['path']} (step {p['step']}) · {new} · lr {tc.lr:g}", soft_wrap=True)
        self.by_time = run.total_steps is None
        total = tc.time_limit if self.by_time else run.total_steps
        self.progress = Progress(
            TextColumn("[bold]step {task.fields[step]}"),
            BarColumn(),
            MofNCompleteColumn() if not self.by_time else TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val {task.fields[val]}"),
            TextColumn("{task.fields[cps]} " + ("tokens/s" if Units.of(run.corpus).word else "chars/s")),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )
        self.task = self.progress.add_task("train", total=total, step=run.start_step, loss="-", val="-", cps="-")
        self.progress.start()

    def on_step(self, m: dict, logged: bool) -> None:
        if self.progress is None:
            return
        fields = {"step": m["step"]}
        if logged:
            fields.update(loss=f"{m['train_loss']:.3f}", cps=f"{m['chars_per_sec']:,.0f}")
        if m["val_loss"] == m["val_loss"]:
            fields["val"] = f"{m['val_loss']:.3f}"
        completed = min(m["elapsed_s"], self.progress.tasks[0].total) if self.by_time else m["step"]
        self.progress.update(self.task, completed=completed, **fields)

    def on_eval(self, m: dict) -> None:
        if self.progress is not None:
            self.progress.update(self.task, val=f"{m['val_loss']:.3f}")
        if self.progress is not None and not err.is_terminal:
            err.print(f"step {m['step']}: val loss {m['val_loss']:.4f} (best {m['best_val_loss']:.4f})")

    def on_sample(self, step: int, text: str, m: dict) -> None:
        if self.progress is None:
            return
        val = f"{m['val_loss']:.3f}" if m["val_loss"] == m["val_loss"] else "-"  # nan: no eval yet
        train = f"{m['train_loss']:.3f}" if m["train_loss"] == m["train_loss"] else "-"  # nan: before the first step
        err.rule(f"sample at step {step} · train {train} · val {val}")
        err.print(Text(text.strip("\n")), soft_wrap=True)
        err.rule()

    def on_checkpoint(self, path: Path, kind: str) -> None: ...

    def on_warning(self, message: str) -> None:
        err.print(Text(f"charrnn: warning: {message}"), soft_wrap=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


# --------------------------------------------------------------------------- sample


@app.command("sample", cls=Command)
def sample_cmd(
    ctx: typer.Context,
    checkpoint_path: NewestCheckpointArg = None,
    temp: Annotated[
        float, typer.Option("--temp", "-t", min=0.0, help="Temperature; 0 = always the likeliest character.")
    ] = SampleConfig.temp,
    prime: Annotated[
        str | None,
        typer.Option(
            "--prime", "-p", show_default=False, help="Text to start from (default: stdin when it is not a terminal)."
        ),
    ] = None,
    length: Annotated[
        int,
        typer.Option("--length", "-n", min=0, help="New characters (a word model's tokens) per sample."),
    ] = SampleConfig.length,
    seed: Annotated[
        int | None,
        typer.Option("--seed", min=0, max=MAX_SEED, show_default=False, help="Same seed, same text (default: random)."),
    ] = SampleConfig.seed,
    top_k: Annotated[
        int | None, typer.Option("--top-k", min=1, help="Sample only among the K likeliest characters.")
    ] = SampleConfig.top_k,
    top_p: Annotated[
        float | None,
        typer.Option(
            "--top-p",
            callback=in_range(0, 1, lo_open=True),
            help="Sample from the smallest set of characters whose probability reaches P.",
        ),
    ] = SampleConfig.top_p,
    stop: Annotated[
        str | None, typer.Option("--stop", help="End a sample when this string appears (it is not printed).")
    ] = SampleConfig.stop,
    num_samples: Annotated[
        int, typer.Option("--num-samples", min=1, help="Independent samples, generated together.")
    ] = SampleConfig.num_samples,
    separator: Annotated[
        str,
        typer.Option(
            "--separator",
            show_default=False,
            help="Printed between samples (default: a blank line), and between --documents (default: as the "
            "corpus separated them).",
        ),
    ] = "\n\n",
    documents: Annotated[
        int | None,
        typer.Option(
            "--documents",
            min=1,
            show_default=False,
            help="A model trained on documents: write N whole ones, each from a document's start (and beginning "
            "with --prime) to its end; --length does not apply.",
        ),
    ] = SampleConfig.documents,
    min_length: Annotated[
        int | None,
        typer.Option("--min-length", min=0, show_default=False, help="With --documents: no document shorter."),
    ] = SampleConfig.min_length,
    max_length: Annotated[
        int | None,
        typer.Option(
            "--max-length",
            min=1,
            show_default=False,
            help=f"With --documents: a document is ended at this length (default {MAX_DOCUMENT:,}).",
        ),
    ] = SampleConfig.max_length,
    label: Annotated[
        str | None,
        typer.Option(
            "--label",
            show_default=False,
            help="A model trained with --labels: write text of this label (default: each document's label is "
            "drawn by how many documents of each the model learnt from).",
        ),
    ] = SampleConfig.label,
    unknown: UnknownOpt = SampleConfig.unknown,
    allow_unk: Annotated[
        bool,
        typer.Option(
            "--allow-unk", metavar="", help="A model with a capped vocabulary may write <unk> (it never does without)."
        ),
    ] = SampleConfig.allow_unk,
    precision: Annotated[
        Literal["fp32", "bf16"],
        typer.Option(
            "--precision",
            help="fp32: exact, the same text on every machine; bf16: matrix products in bfloat16, much "
            "faster for many --num-samples on CPUs with AVX512-BF16/AMX and on GPUs, but different "
            "text.",
        ),
    ] = SampleConfig.precision,
    device: DeviceOpt = "cpu",
):
    """Generate text from a trained model to stdout, streamed as it is written.

    [bold]Examples[/bold]

      charrnn sample --prime "ROMEO:" --temp 0.8 --length 500 --seed 7

      echo "ROMEO:" | charrnn sample checkpoints/my-run --length 500 | tee out.txt

      charrnn sample --temp 0 --length 200            [dim]# greedy: always the likeliest character[/dim]

      charrnn sample --num-samples 4 --stop $'\\n\\n'   [dim]# four paragraphs[/dim]

      charrnn sample --num-samples 32 --precision bf16 --length 2000 > many.txt

      charrnn sample checkpoints/fortunes --documents 3      [dim]# three whole fortunes[/dim]

      charrnn sample checkpoints/names --documents 10 --prime K --max-length 12

      charrnn sample checkpoints/names --label French --documents 10 --separator $'\\n'

      charrnn sample checkpoints/comments --prime "I think" --length 50   [dim]# a word model: 50 tokens[/dim]
    """
    from charrnn import api  # see the note on lazy imports at the top

    model = api.load(checkpoint_path, device=device, precision=precision)  # before stdin is read
    settings = {name: value for name, value in ctx.params.items() if name in SAMPLE_FIELDS}
    if (min_length is not None or max_length is not None) and documents is None:
        _fail("--min-length and --max-length go with --documents", 2)
    if documents is not None and _given(ctx, "separator"):
        settings["doc_separator"] = separator
    config = SampleConfig(**settings | {"prime": _read_stdin_prime() if prime is None else prime})
    _warn_unk(model.vocab, config.prime, config.unknown, "the prime text")
    stream = model.pieces(config)
    out = _utf8_stdout()
    rest: list[list[str]] = [[] for _ in range(num_samples - 1)]  # printed after the first, which streams
    try:
        for pieces in stream:
            if pieces[0]:
                out.write(pieces[0])
                out.flush()
            for buf, piece in zip(rest, pieces[1:], strict=True):
                buf.append(piece)
        for buf in rest:
            out.write(separator + "".join(buf))
        out.write("\n")
        out.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()


def _warn_unk(vocab, text: str, unknown: str, what: str) -> None:
    """The warning that `text`'s symbols outside a capped vocabulary are read as <unk>."""
    if text and vocab.unknown_rule(unknown) == "unk":
        missing = vocab.unknown(text)
        if missing:
            err.print(
                Text(f"charrnn: warning: {what} has {len(missing)} {vocab.unit}(s) not in the model's vocabulary, "
                     f"read as <unk>: {shown(missing)} (--unknown error refuses them)"),
                soft_wrap=True,
            )  # fmt: skip


def _read_stdin_prime(what: str = "the prime text on stdin") -> str:
    stdin = sys.stdin
    if stdin is None or stdin.closed:
        return ""
    try:
        if stdin.isatty():
            return ""
        data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode("utf-8")
    except (OSError, ValueError):
        return ""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{what} is not UTF-8 (byte {e.start})") from None


def _utf8_stdout():
    out = sys.stdout
    if out is None:  # started with stdout closed (`>&-`)
        raise CharRNNError("stdout is closed: there is nowhere to write the text")
    if hasattr(out, "reconfigure") and (out.encoding or "").lower().replace("-", "") != "utf8":
        try:
            out.reconfigure(encoding="utf-8")
        except (ValueError, OSError):
            pass
    return out


# --------------------------------------------------------------------------- eval, info


@app.command("eval", cls=Command)
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
    from charrnn import api  # see the note on lazy imports at the top

    ev = api.evaluate(checkpoint_path, split=split, file=file, unknown=unknown, device=device, label=label)
    typer.echo(f"{ev.what}: {ev.units.describe(ev.loss)} over {ev.predictions:,} predictions")


@app.command("info", cls=Command)
def info_cmd(checkpoint_path: CheckpointArg):
    """Show what a checkpoint holds: model, sizes, training state, corpus, provenance.

    [bold]Example[/bold]

      charrnn info checkpoints/my-run/best.pt
    """
    from charrnn import api  # see the note on lazy imports at the top
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


# --------------------------------------------------------------------------- visualize, report


@app.command("visualize", cls=Command)
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

      charrnn visualize checkpoints/my-run/best.pt --text act1.txt --out act1.html --max-chars 2000

      charrnn visualize checkpoints/my-run --prime "ROMEO: (aside) \\"Is she not down so late?\\""
    """
    from charrnn.pages.visualize import visualize_checkpoint  # see the note on lazy imports at the top

    page, shown = visualize_checkpoint(
        checkpoint_path, text=text, prime=prime, out=out, max_chars=max_chars, unknown=unknown, label=label
    )
    err.print(f"wrote {page} ({page.stat().st_size / 1e6:.1f} MB, {shown:,} characters)", soft_wrap=True)


@app.command("report", cls=Command)
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
    from charrnn.pages.report import write_report  # see the note on lazy imports at the top

    err.print(f"wrote {write_report(run_dir, out)}", soft_wrap=True)


# --------------------------------------------------------------------------- serve


@app.command("serve", cls=Command)
def serve_cmd(
    checkpoint_path: NewestCheckpointArg = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 for every network.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on; 0 picks a free one.")
    ] = 8000,
    max_length: Annotated[
        int, typer.Option("--max-length", min=1, help="Most characters one request may ask for.")
    ] = ServeLimits.max_length,
    max_streams: Annotated[
        int, typer.Option("--max-streams", min=1, help="Samples written at once (one batched step); more wait.")
    ] = ServeLimits.max_streams,
    max_queue: Annotated[
        int, typer.Option("--max-queue", min=0, help="Requests that may wait for room; more are answered 429.")
    ] = ServeLimits.max_waiting,
    max_body: Annotated[
        int, typer.Option("--max-body", min=64, help="Largest request body in bytes; larger is answered 413.")
    ] = ServeLimits.max_body,
    device: DeviceOpt = "cpu",
):
    """Serve a trained model over HTTP: generate (whole or streamed), score, info, and a page to write from.

    Concurrent requests share one batched sampling step, so many clients cost little more
    than one; a seeded request served alone writes what `charrnn sample` writes. Logs go to
    stderr, a line per request. Ctrl-C or SIGTERM lets requests in flight finish (5 s at most).

    [bold]Examples[/bold]

      charrnn serve checkpoints/my-run --port 8000

      curl -N localhost:8000/v1/generate -d '{"prime": "ROMEO:", "length": 200, "stream": true}'

      curl localhost:8000/v1/score -d '{"text": "To be, or not to be"}'
    """
    from charrnn.serve.app import serve  # see the note on lazy imports at the top

    limits = ServeLimits(max_length=max_length, max_streams=max_streams, max_waiting=max_queue, max_body=max_body)
    serve(checkpoint_path, host=host, port=port, limits=limits, device=device)


# --------------------------------------------------------------------------- classify

classify_app = typer.Typer(
    cls=OneLineErrors,
    name="classify",
    help="A character-level classifier: train it on labelled texts, predict labels, evaluate it.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(classify_app, name="classify")
CS = ClassifierSettings  # the defaults of `classify train`

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


@classify_app.command("train", cls=Command)
def classify_train_cmd(
    data: DataArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", show_default=False, help="Run directory (default: checkpoints/classify/NAME-TIME)."
        ),
    ] = None,
    model: Annotated[Literal["lstm", "gru", "rnn"], typer.Option("--model", help="Recurrent cell.")] = CS.model,
    hidden: Annotated[int, typer.Option("--hidden", min=1, help="Units per layer and direction.")] = CS.hidden,
    layers: Annotated[int, typer.Option("--layers", min=1, help="Recurrent layers.")] = CS.layers,
    bidirectional: Annotated[
        bool, typer.Option("--bidirectional/--one-way", metavar="", help="Read the text both ways, or left to right.")
    ] = CS.bidirectional,
    dropout: _fraction("--dropout", "Dropout between layers.") = CS.dropout,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Texts per batch.")] = CS.batch_size,
    lr: Annotated[float, typer.Option("--lr", callback=in_range(0, 10, lo_open=True), help="AdamW rate.")] = CS.lr,
    max_epochs: Annotated[
        int, typer.Option("--max-epochs", min=1, help="Passes over the training texts.")
    ] = CS.max_epochs,
    time_limit: Annotated[
        float | None,
        typer.Option("--time-limit", callback=in_range(0, None, lo_open=True), help="Seconds of training at most."),
    ] = CS.time_limit,
    patience: Annotated[
        int, typer.Option("--patience", min=1, help="Epochs without a better val accuracy before stopping.")
    ] = CS.patience,
    balance: Annotated[
        bool, typer.Option("--balance", metavar="", help="Weight the loss by 1/label frequency (skewed labels).")
    ] = False,
    val_frac: Annotated[
        float,
        typer.Option("--val-frac", callback=in_range(0, 1, lo_open=True, hi_open=True), help="Held out, per label."),
    ] = CS.val_frac,
    max_length: Annotated[
        int, typer.Option("--max-length", min=1, help="Characters read of each text; longer ones are cut.")
    ] = CS.max_length,
    text_col: TextCol = "text",
    label_col: LabelCol = "label",
    encoding_errors: EncodingErrors = "strict",
    seed: SeedOpt = CS.seed,
    device: DeviceOpt = CS.device,
    precision: Annotated[Literal["fp32"], typer.Option("--precision", help="Classifiers train in fp32.")] = "fp32",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="No progress bar.")] = False,
):
    """Train a character-level classifier on labelled texts; writes RUN/best.pt.

    The examples are split per label into train and val (--val-frac, fixed by --seed); the
    weights with the best val accuracy are kept. Batches hold texts of similar length,
    padded and packed.

    [bold]Examples[/bold]

      charrnn classify train data/names --out checkpoints/names     # data/names/Russian.txt, ...

      charrnn classify train reviews.tsv --text-col review --label-col stars --balance

      charrnn classify train lines.jsonl --model gru --hidden 256 --time-limit 60
    """
    from charrnn.classify.classifier import train_classifier

    settings = ClassifierSettings(
        model=model, hidden=hidden, layers=layers, bidirectional=bidirectional, dropout=dropout,
        batch_size=batch_size, lr=lr, max_epochs=max_epochs, time_limit=time_limit, patience=patience, seed=seed,
        balance=balance, val_frac=val_frac, max_length=max_length, device=device, precision=precision,
    )  # fmt: skip
    progress = Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]:.3f} · val acc {task.fields[acc]}"),
        console=err,
        disable=quiet,
        transient=False,
    )
    task = None

    def start(st) -> None:
        nonlocal task
        counts = st.examples.counts()
        err.print(
            f"classifying {len(st.labels)} labels from {st.examples.source}: {len(st.examples):,} examples "
            f"({st.train:,} train, {st.val:,} val; largest {counts.most_common(1)[0][1]:,}, "
            f"smallest {min(counts.values()):,}) · {st.vocab_size} characters · {st.parameters:,} parameters "
            f"· {st.device} · run {st.run_dir}"
        )
        if st.examples.truncated:
            err.print(f"charrnn: warning: {st.examples.truncated:,} texts were cut to --max-length {max_length}")
        progress.start()
        task = progress.add_task("train", total=max_epochs, epoch=1, loss=float("nan"), acc="-")

    def batch(done: float, loss: float) -> None:
        progress.update(task, completed=done, epoch=int(done) + 1, loss=loss)

    def epoch(e) -> None:
        progress.update(task, acc=f"{e.val_accuracy:.3f}")
        if quiet:
            return
        progress.console.print(
            f"epoch {e.epoch}: train loss {e.train_loss:.3f} · val accuracy {e.val_accuracy:.4f} · "
            f"macro-F1 {e.val_macro_f1:.4f} · {e.elapsed_s:.1f} s" + (" · best" if e.best else "")
        )

    from charrnn.training.interrupt import StopFlag

    stop = StopFlag(on_stop=lambda: err.print("stopping: validating this epoch's weights, then saving the better"))
    try:
        with stop.installed():
            result = train_classifier(
                data, settings, out=out, text_col=text_col, label_col=label_col,
                opts=TextOptions(encoding_errors=encoding_errors), on_start=start, on_batch=batch, on_epoch=epoch,
                should_stop=stop,
            )  # fmt: skip
    finally:
        if task is not None:
            progress.stop()
    err.print(
        f"done: {result.epochs} epochs in {result.elapsed_s:.1f} s ({result.stopped}); val accuracy "
        f"{result.val_accuracy:.4f}, macro-F1 {result.val_macro_f1:.4f}; checkpoint {result.checkpoint}"
    )
    if stop.signum is not None:
        raise typer.Exit(stop.exit_code())


@classify_app.command("predict", cls=Command)
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

      cut -f1 names.txt | charrnn classify predict checkpoints/names | sort -t$'\t' -k2

      charrnn classify predict checkpoints/names --json < names.txt > labelled.jsonl
    """
    import json

    from charrnn.classify.classifier import load_classifier

    clf = load_classifier(checkpoint_path, device)  # before stdin is read
    if not texts:
        raw = _read_stdin_prime("the texts on stdin")
        texts = [line.rstrip("\r") for line in raw.split("\n")]
        if texts and texts[-1] == "":
            texts.pop()
    out = _utf8_stdout()
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
        _quiet_broken_pipe()


_ONE_FIELD = str.maketrans({"\t": " ", "\n": " ", "\r": " ", "\u2028": " ", "\u2029": " "})


@classify_app.command("eval", cls=Command)
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
    import json

    from charrnn.classify.classifier import evaluate_classifier
    from charrnn.pages.classify import write_page

    ev = evaluate_classifier(
        checkpoint_path, data, text_col=text_col, label_col=label_col,
        opts=TextOptions(encoding_errors=encoding_errors), unknown=unknown, device=device,
    )  # fmt: skip
    if ev.skipped_chars:
        err.print(f"charrnn: warning: skipped {ev.skipped_chars:,} characters the classifier never saw")
    out_stream = _utf8_stdout()
    if as_json:
        out_stream.write(json.dumps(ev.to_json()) + "\n")
    else:
        sc = ev.scores
        t = Table(
            title=f"{ev.data}: accuracy {sc.accuracy:.4f}, macro-F1 {sc.macro_f1:.4f} over {sc.total:,} examples",
            title_justify="left",
        )
        for name in ("label", "precision", "recall", "F1", "support"):
            t.add_column(name, justify="left" if name == "label" else "right")
        for r in ev.scores.per_label():
            t.add_row(r["label"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", f"{r['support']:,}")
        Console(file=out_stream, highlight=False).print(t)
    out_stream.flush()
    page = out or ev.path.parent / f"eval-{Path(data).stem or 'data'}.html"
    try:  # the figures are out already: a page that cannot be written is a warning
        write_page(ev, page)
        err.print(f"page: {page}")
    except OSError as e:
        err.print(f"charrnn: warning: could not write the page {page}: {e.strerror or e}")


def main() -> None:
    app()
