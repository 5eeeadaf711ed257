"""Collections of documents: which files a set of inputs names, how a file splits into
documents, and where the splits of a corpus of documents fall.

    charrnn train names/ --doc-sep '\\n'            # every file under names/, one document a line
    charrnn train fortunes/ --doc-sep '\\n%\\n'     # fortune files: documents between % lines
    charrnn train names/ --doc-sep '\\n' --labels from-file   # names/French.txt: label French

Each file is a document, or with a separator each stretch between two separators (empty ones
are dropped). In the corpus, every document ends with EOD, a symbol of the vocabulary that is
never a character of the text (a Unicode noncharacter, which no text exchanged between programs
holds), so a model learns where documents end, and how they begin after one.

Documents may have labels: their directory's name (`--labels from-dir`), their file's stem
(`--labels from-file`), or the second column of a `text<TAB>label` file (`--labels PATH.tsv`).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.errors import BadValueError, InputError

EOD = "\ufdd0"  # the end of a document
EOD_TEXT = "\n\n"  # how sampled text writes a document end when the corpus had no --doc-sep
SKIPPED_NAMED = 10  # skipped files a summary names
MAX_LABELS = 65_535  # label ids are stored as uint16 at most
ESCAPES = {"\\n": "\n", "\\t": "\t", "\\r": "\r", "\\\\": "\\"}


@dataclass(frozen=True)
class Collection:
    """The text files that some inputs name, in order, and those left out as binary."""

    files: list[Path]
    skipped: list[Path]
    roots: list[Path | None]  # for each file, the directory named that it was found under (None: not in one)


def collect(inputs: list[Path], looks_binary) -> Collection:
    """Files named, every file under a directory named (recursively, in sorted order, hidden
    names and files seen already left out), and files matching a glob pattern. A file found
    in a directory or by a pattern that `looks_binary` (path -> reason or None) is skipped; one
    named on its own is not (it fails later with the reason, unless forced)."""
    files, skipped, roots, seen = [], [], [], set()

    def add(path: Path, named: bool, root: Path | None = None) -> None:
        key = path.resolve()
        if key in seen:
            return
        seen.add(key)
        if not named and looks_binary(path):
            skipped.append(path)
        else:
            files.append(path)
            roots.append(root)

    for given in inputs:
        given = Path(given)
        if given.is_dir():
            found = sorted(_files_under(given), key=lambda p: p.relative_to(given).parts)
            if not found:
                raise InputError(f"{given}: the directory holds no files")
            for path in found:
                add(path, named=False, root=given)
        elif given.exists() or not glob.has_magic(str(given)):
            add(given, named=True)  # a file (or what is not one: reading it says so in one line)
        else:
            matched = sorted(Path(p) for p in glob.glob(str(given), recursive=True) if Path(p).is_file())
            if not matched:
                raise InputError(f"{given}: no file matches the pattern")
            for path in matched:
                add(path, named=False)
    if not files:
        named = ", ".join(str(p) for p in skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        if not skipped:
            raise InputError("no files among the inputs")
        raise InputError(
            f"no text files among the inputs ({len(skipped)} look binary: {named}); --force reads them anyway"
        )
    return Collection(files, skipped, roots)


def _files_under(root: Path) -> Iterator[Path]:
    def unreadable(e: OSError):
        raise InputError(f"{e.filename}: cannot be read ({e.strerror})")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=unreadable):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath) / name
            if not name.startswith(".") and path.is_file():
                yield path


def check_separator(sep: str | None) -> str | None:
    if sep is None:
        return None
    if sep == "":
        raise BadValueError("--doc-sep must not be empty")
    if EOD in sep:
        raise BadValueError("--doc-sep must not hold U+FDD0, which charrnn keeps for the end of a document")
    return sep


def split_pieces(chunks: Iterator[str], sep: str | None) -> Iterator[tuple[str, bool]]:
    """(text, ends a document) pieces of one file's text, read chunk by chunk: the whole file
    is one document, or with `sep` each stretch between separators. Memory stays within a
    chunk or so, however long a document is."""
    if sep is None:
        for text in chunks:
            yield text, False
        yield "", True
        return
    held = ""
    for text in chunks:
        *done, held = (held + text).split(sep)
        for part in done:
            yield part, True
        if len(held) >= len(sep):  # keep back only what may be the start of a separator
            cut = len(held) - (len(sep) - 1)
            yield held[:cut], False
            held = held[cut:]
    yield held, True


class SplitPoints:
    """Where the splits of `n` symbols fall in a corpus of documents, found in one pass over
    the document starts (nothing is kept per document): val is the last documents, about
    `val_frac` of the text, and test the ones before them, each boundary at the document start
    nearest its share. Train keeps the first document; val, when asked for and there are two
    documents or more, keeps the last."""

    def __init__(self, n: int, val_frac: float, test_frac: float):
        self.n, self.val_frac, self.test_frac = n, val_frac, test_frac
        self.targets = {"val": n * (1 - val_frac), "test": n * (1 - val_frac - test_frac)}
        self.nearest: dict[str, int | None] = {"val": None, "test": None}

    def add(self, starts: np.ndarray) -> None:
        """Starts of documents after the first, ascending, and after those given before; a
        start at the end of the text (after the last document) is not one."""
        starts = starts[starts < self.n]
        if not len(starts):
            return
        for name, target in self.targets.items():
            start = int(starts[np.argmin(np.abs(starts - target))])  # the first of two as near
            best = self.nearest[name]
            if best is None or abs(start - target) < abs(best - target):
                self.nearest[name] = start

    def splits(self) -> dict[str, list[int]]:
        n = self.n
        val = n if not self.val_frac or self.nearest["val"] is None else self.nearest["val"]
        test = val if not self.test_frac or self.nearest["test"] is None else min(self.nearest["test"], val)
        return {"train": [0, test], "test": [test, val], "val": [val, n]}


def document_splits(n: int, starts: list[int], val_frac: float, test_frac: float) -> dict[str, list[int]]:
    """`SplitPoints` over a list of document starts (ascending, 0 first)."""
    points = SplitPoints(n, val_frac, test_frac)
    points.add(np.asarray(starts[1:], dtype=np.int64))
    return points.splits()


def unescape(value: str) -> str:
    """Backslash escapes \\n, \\t, \\r and \\\\ read as the characters they stand for (in
    --doc-sep, so that '\\n%\\n' works in any shell, and in the text of a .tsv file's lines)."""
    out, i = [], 0
    while i < len(value):
        pair = value[i : i + 2]
        if pair in ESCAPES:
            out.append(ESCAPES[pair])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def label_of(path: Path, how: str, root: Path | None = None) -> str:
    """A file's label: its stem (from-file), or (from-dir) the name of the folder it is in
    below `root`, the directory named that it was found under, at whatever depth
    (names/French/old/a.txt: French); a file named alone or by a pattern takes the name of
    the folder it is in."""
    if how == "from-file":
        return path.stem
    if root is None:
        return Path(os.path.abspath(path)).parent.name
    parts = path.relative_to(root).parts
    if len(parts) < 2:
        raise InputError(
            f"{path}: is directly in {root}; with --labels from-dir each document is in a folder named "
            f"after its label, inside {root}"
        )
    return parts[0]


def tsv_documents(path: Path, chunks: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(text, label) of each line of a `text<TAB>label` file, read chunk by chunk; the label is
    after the last tab, and the text's escapes are read (`unescape`). Blank lines are skipped;
    a line without a tab or with an empty label is a one-line InputError."""
    number, line = 0, []
    for text, end in split_pieces(chunks, "\n"):
        line.append(text)
        if not end:
            continue
        number += 1
        whole, line = "".join(line).removesuffix("\r"), []
        if not whole.strip():
            continue
        body, tab, label = whole.rpartition("\t")
        if not tab:
            raise InputError(f"{path}: line {number} has no tab (each line is text<TAB>label)")
        if not label.strip():
            raise InputError(f"{path}: line {number} has an empty label")
        yield unescape(body), label.strip()


def eod_text(corpus: dict | None) -> str:
    """How a model of documents writes the end of one: as its corpus (a run's record of it)
    separated them (`--doc-sep`), else, a file a document, as a blank line."""
    sep = corpus.get("doc_sep") if isinstance(corpus, dict) else None
    return sep if isinstance(sep, str) and sep else EOD_TEXT
