"""`charrnn preprocess` and `charrnn corpora`: text into a corpus directory, and the corpora
that come with charrnn."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from charrnn.cli.console import say_skipped
from charrnn.cli.errors import err, fail
from charrnn.cli.options import Given, inputs, with_options
from charrnn.config import LABEL_SOURCES, LABELS_SHOWN, CorpusOptions
from charrnn.corpus.tokens import cap_flags
from charrnn.corpus.vocab import shown

Inputs = inputs(
    "A UTF-8 text file (or a bundled corpus by name); or several files, directories (every file inside, "
    "recursively) or glob patterns, each file a document."
)
Out = Annotated[
    Path | None, typer.Option("--out", help="Output directory (default: corpora/<input stem>).", show_default=False)
]


@with_options(CorpusOptions)
def preprocess_cmd(inputs: Inputs = None, out: Out = None, opts: Given = None):
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

      charrnn preprocess poems.txt --out corpora/poems --val-frac 0.05

      charrnn preprocess /usr/share/games/fortunes/de --doc-sep '\\n%\\n'   [dim]# a fortune a document[/dim]

      charrnn preprocess 'names/*.txt' --doc-sep '\\n'                      [dim]# a name a document[/dim]

      charrnn preprocess names/ --doc-sep '\\n' --labels from-file   [dim]# names/French.txt: label French[/dim]

      charrnn preprocess --labels reviews.tsv                            [dim]# text<TAB>label lines[/dim]

      charrnn preprocess comments.txt --tokens word --max-vocab 8000     [dim]# words; the rarest as <unk>[/dim]

      charrnn preprocess tang.txt --min-count 3             [dim]# characters seen under 3 times as <unk>[/dim]
    """
    from charrnn import api  # see the note on lazy imports in charrnn.cli.app

    corpus = opts.of(CorpusOptions)
    if not inputs and (corpus.labels is None or corpus.labels in LABEL_SOURCES):
        fail("name a text file, a directory or a pattern to preprocess", 2)
    show_summary(api.preprocess(inputs or None, out=out, **asdict(corpus)))


def show_summary(corpus) -> None:
    """What preprocess wrote, as a table on stderr."""
    m = corpus.meta
    say_skipped(m)
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


def corpora_cmd():
    """List the corpora that come with charrnn: train on one by its name.

    [bold]Examples[/bold]

      charrnn corpora

      charrnn train tinyshakespeare --preset auto --time-limit 600
    """
    from charrnn.corpus.bundled import CORPORA  # see the note on lazy imports in charrnn.cli.app

    t = Table(show_header=True, title_justify="left")
    for column in ("name", "size", "source"):
        t.add_column(column)
    for c in CORPORA.values():
        t.add_row(c.name, f"{c.path.stat().st_size:,} bytes", c.source)
    Console(highlight=False).print(t)
