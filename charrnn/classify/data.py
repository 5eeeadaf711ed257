"""Labelled examples for `charrnn classify`: read, checked, and split.

    examples = load_examples(Path("data/names"))           # LABEL.txt files, one example per line
    examples = load_examples(Path("reviews.tsv"), text_col="review", label_col="stars")
    train, val = stratified_split(examples, val_frac=0.1, seed=1337)

A directory holds one `LABEL.txt` file per label (the names tutorial's layout); a `.tsv` or
`.csv` file has a header row naming its columns (`--text-col`, `--label-col`; a column may
also be given by its 0-based number, and then there is no header row); a `.jsonl` file has
one object per line with those two keys. Every problem is a one-line InputError (exit 3)
naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from charrnn.config import CorpusOptions
from charrnn.corpus.text import iter_text
from charrnn.errors import BadValueError, InputError


@dataclass
class Examples:
    texts: list[str]
    labels: list[str]
    truncated: int = 0  # texts cut to max_length
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def label_set(self) -> list[str]:
        return sorted(set(self.labels))

    def counts(self) -> Counter:
        return Counter(self.labels)


def load_examples(
    path: Path,
    *,
    text_col: str = "text",
    label_col: str = "label",
    opts: CorpusOptions = CorpusOptions(),
    max_length: int | None = None,
    min_labels: int = 2,
) -> Examples:
    """Read labelled examples from a directory of LABEL.txt files, a TSV/CSV or a JSONL file;
    texts longer than `max_length` are cut to it (and counted in `truncated`)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        texts, labels = _from_directory(path, opts)
    else:
        suffix = path.suffix.lower()
        if suffix in (".tsv", ".csv", ".tab"):
            texts, labels = _from_table(path, opts, text_col, label_col, "\t" if suffix != ".csv" else ",")
        elif suffix in (".jsonl", ".ndjson"):
            texts, labels = _from_jsonl(path, opts, text_col, label_col)
        else:
            raise InputError(
                f"{path}: not a directory of LABEL.txt files, a .tsv/.csv or a .jsonl file (named by its suffix)"
            )
    if not texts:
        raise InputError(f"{path}: holds no examples")
    found = sorted(set(labels))
    if len(found) < min_labels:
        raise InputError(f"{path}: holds only one label ({found[0]!r}); a classifier needs at least two")
    truncated = 0
    if max_length is not None:
        for i, t in enumerate(texts):
            if len(t) > max_length:
                texts[i] = t[:max_length]
                truncated += 1
    return Examples(texts, labels, truncated, str(path))


def _read(path: Path, opts: CorpusOptions) -> str:
    return "".join(iter_text(path, opts))


def _from_directory(d: Path, opts: CorpusOptions) -> tuple[list[str], list[str]]:
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() == ".txt" and not p.name.startswith("."))
    if not files:
        raise InputError(f"{d}: holds no LABEL.txt files (one per label, one example per line)")
    texts, labels = [], []
    for f in files:
        lines = [line.rstrip("\r") for line in _read(f, opts).split("\n")]
        kept = [line for line in lines if line.strip()]
        if not kept:
            raise InputError(f"{f}: holds no examples (one per line)")
        texts += kept
        labels += [f.stem] * len(kept)
    return texts, labels


def _column(name: str, header: list[str] | None, path: Path, which: str) -> int:
    if name.isdigit():
        return int(name)
    if header is None or name not in header:
        have = f"its header has {', '.join(map(repr, header))}" if header else "it has no header row"
        raise InputError(f"{path}: no column {name!r} for --{which}-col ({have})")
    return header.index(name)


def _from_table(path: Path, opts: CorpusOptions, text_col: str, label_col: str, delimiter: str):
    # CSV quotes fields as the format does; a TSV has no quoting: a quote is a character of the text
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    try:
        rows = list(csv.reader(io.StringIO(_read(path, opts), newline=""), delimiter=delimiter, quoting=quoting))
    except csv.Error as e:
        raise InputError(f"{path}: not a readable {'CSV' if delimiter == ',' else 'TSV'} file ({e})") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise InputError(f"{path}: holds no rows")
    by_number = text_col.isdigit() and label_col.isdigit()
    header = None if by_number else rows[0]
    t, lab = _column(text_col, header, path, "text"), _column(label_col, header, path, "label")
    width = len(rows[0])
    texts, labels = [], []
    for i, row in enumerate(rows[0 if by_number else 1 :], start=1 if by_number else 2):
        if len(row) != width:
            raise InputError(f"{path}: row {i} has {len(row)} columns, the first has {width}")
        if max(t, lab) >= len(row):
            raise InputError(f"{path}: row {i} has no column {max(t, lab)}")
        if not row[lab].strip():
            raise InputError(f"{path}: row {i} has an empty label")
        texts.append(row[t])
        labels.append(row[lab].strip())
    return texts, labels


def _from_jsonl(path: Path, opts: CorpusOptions, text_col: str, label_col: str):
    texts, labels = [], []
    for i, line in enumerate(_read(path, opts).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: line {i} is not JSON ({e.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get(text_col), str):
            raise InputError(f"{path}: line {i} has no text field {text_col!r}")
        label = obj.get(label_col)
        if label is None or (isinstance(label, str) and not label.strip()) or isinstance(label, (dict, list)):
            raise InputError(f"{path}: line {i} has no label field {label_col!r}")
        texts.append(obj[text_col])
        labels.append(label.strip() if isinstance(label, str) else json.dumps(label))
    return texts, labels


def stratified_split(examples: Examples, val_frac: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, val): `val_frac` of each label's examples (at least one, if it has two or
    more), chosen by the seed; the same seed gives the same split."""
    if not 0 < val_frac < 1:
        raise BadValueError(f"--val-frac must be between 0 and 1, not {val_frac}")
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(examples.labels):
        by_label.setdefault(label, []).append(i)
    train, val = [], []
    for label in sorted(by_label):
        idx = by_label[label]
        rng.shuffle(idx)
        n_val = min(len(idx) - 1, max(1, round(len(idx) * val_frac))) if len(idx) >= 2 else 0  # train keeps one
        val += idx[:n_val]
        train += idx[n_val:]
    if not val or len(val) < 2:
        raise InputError(
            f"{examples.source}: {len(examples)} examples are too few to split off a validation set "
            f"(--val-frac {val_frac}); give more examples"
        )
    return sorted(train), sorted(val)
