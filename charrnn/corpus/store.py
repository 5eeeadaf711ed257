"""A preprocessed corpus on disk: ids.bin (raw ids in the smallest unsigned dtype that fits),
vocab.json and meta.json (and a labelled collection's labels.bin), loaded and checked, and
read back through pread so that training's resident memory does not grow with the corpus.

    corpus = Corpus.load(Path("corpora/tinyshakespeare"))
    train = corpus.split_reader("train")           # train[i:j] is an array of ids
"""

from __future__ import annotations

import json
import os
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.corpus.text import CHUNK_BYTES
from charrnn.corpus.vocab import Vocab
from charrnn.errors import BadValueError, InputError
from charrnn.values import is_count

CORPUS_FORMAT = "charrnn-corpus"
CORPUS_VERSION = 1


@dataclass
class Corpus:
    """A preprocessed corpus: `ids` is a read-only memory map of the whole text."""

    path: Path
    meta: dict
    vocab: Vocab
    ids: np.ndarray

    @classmethod
    def load(cls, path: Path) -> Corpus:
        path = Path(path)
        try:
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
            n, dtype = _check_meta(meta)
            vocab = Vocab.load(path / "vocab.json")
            if (path / "ids.bin").stat().st_size != n * dtype.itemsize:
                raise ValueError("ids.bin has the wrong size")
            # an id past the vocabulary would fail only later, deep in the model's embedding
            top = _max_id(path / "ids.bin", dtype, n)
            if top >= len(vocab):
                raise ValueError(f"ids.bin holds id {top} but the vocabulary has {len(vocab)} characters")
            ids = np.memmap(path / "ids.bin", dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype)
            if "labels" in meta:
                _check_labels(path, meta["labels"], n)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}: not a usable preprocessed corpus ({e}); run charrnn preprocess again") from None
        return cls(path, meta, vocab, ids)

    @property
    def name(self) -> str:
        return self.meta.get("name", self.path.name)

    @property
    def labels(self) -> list[str]:
        """The label names of a labelled collection (ids in this order), else []."""
        return list(self.meta["labels"]["names"]) if "labels" in self.meta else []

    @property
    def label_counts(self) -> list[int]:
        """Each label's documents, in the order of `labels`."""
        return list(self.meta["labels"]["documents"]) if "labels" in self.meta else []

    def label_reader(self, name: str) -> IdReader | None:
        """A labelled collection's split as the label id of each symbol's document (read like
        `split_reader`); None for a corpus without labels."""
        if "labels" not in self.meta:
            return None
        a, b = self._bounds(name)
        return IdReader(self.path / "labels.bin", np.dtype(self.meta["labels"]["dtype"]), start=a, stop=b)

    def split(self, name: str) -> np.ndarray:
        a, b = self._bounds(name)
        return self.ids[a:b]

    def split_reader(self, name: str, vocab: Vocab | None = None) -> IdReader | Remapped:
        """The split read through pread, for training: the page cache it goes through is not
        mapped into the process, so resident memory stays flat however large the corpus. With
        `vocab` (a model's, holding every character of the corpus), the ids are that vocabulary's."""
        a, b = self._bounds(name)
        reader = IdReader(self.path / "ids.bin", self.ids.dtype, start=a, stop=b)
        table = self._table(vocab)
        return reader if table is None else Remapped(reader, table)

    def _table(self, vocab: Vocab | None) -> np.ndarray | None:
        """The corpus id -> `vocab` id table, or None where the two are the same."""
        if vocab is None or vocab == self.vocab:
            return None
        if vocab.tokenizer != self.vocab.tokenizer:
            raise InputError(
                f"corpus {self.name} is read as {self.vocab.tokenizer.describe()} and the model reads "
                f"{vocab.tokenizer.describe()}; preprocess the text for the model"
            )
        try:
            return self.vocab.ids_in(vocab)
        except ValueError as e:
            raise InputError(f"corpus {self.name} does not fit the model's vocabulary: {e}") from None

    def counts(self, name: str) -> np.ndarray:
        """How often each id of the corpus's vocabulary occurs in a split, read in chunks."""
        reader, step = self.split_reader(name), CHUNK_BYTES // self.ids.dtype.itemsize
        total = np.zeros(len(self.vocab), dtype=np.int64)
        for a in range(0, len(reader), step):
            total += np.bincount(reader[a : a + step], minlength=len(self.vocab))
        return total

    def _bounds(self, name: str) -> tuple[int, int]:
        if name not in self.meta["splits"]:
            raise BadValueError(f"split must be one of {', '.join(self.meta['splits'])}, not {name!r}")
        a, b = self.meta["splits"][name]
        return a, b


class IdReader:
    """ids[start:stop] of an id file, sliced like an array (`r[i:j]`, step 1) and read with pread."""

    def __init__(self, path: Path, dtype: np.dtype, *, start: int, stop: int):
        self.dtype = np.dtype(dtype)
        self.start, self.stop = start, stop
        self.fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self.fd)

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, key: slice) -> np.ndarray:
        a, b, step = key.indices(len(self))
        if step != 1:
            raise ValueError("IdReader slices with step 1 only")
        n = max(b - a, 0)
        size = self.dtype.itemsize
        data = os.pread(self.fd, n * size, (self.start + a) * size)
        return np.frombuffer(data, dtype=self.dtype, count=len(data) // size)


class Remapped:
    """An id reader seen through a table: `r[i:j]` is `table[reader[i:j]]` (a corpus's ids as
    the ids of a model whose vocabulary orders its characters otherwise)."""

    def __init__(self, reader: IdReader, table: np.ndarray):
        self.reader, self.table = reader, table

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, key: slice) -> np.ndarray:
        return self.table[self.reader[key]]


ID_DTYPES = ("uint8", "uint16", "uint32")  # the dtypes Vocab.dtype picks


def _check_meta(meta) -> tuple[int, np.dtype]:
    """The character count and id dtype of a corpus's meta.json, once the fields that loading
    and training rely on are checked; ValueError names the first that is missing or wrong."""
    if not isinstance(meta, dict) or meta.get("format") != CORPUS_FORMAT:
        raise ValueError("not a charrnn corpus")
    n = meta.get("chars")
    if not is_count(n):
        raise ValueError("meta.json: 'chars' is not a count of characters")
    if meta.get("dtype") not in ID_DTYPES:
        raise ValueError(f"meta.json: 'dtype' is not one of {', '.join(ID_DTYPES)}")
    if not isinstance(meta.get("name", ""), str):  # it names the run directory
        raise ValueError("meta.json: 'name' is not a string")
    splits = meta.get("splits")
    if not isinstance(splits, dict) or not {"train", "val"} <= splits.keys():
        raise ValueError("meta.json: 'splits' lacks the train and val splits")
    for name, bounds in splits.items():
        if not (
            isinstance(bounds, list) and len(bounds) == 2 and all(map(is_count, bounds)) and bounds[0] <= bounds[1] <= n
        ):
            raise ValueError(f"meta.json: split {name!r} is not [start, stop] within the {n:,} characters")
    return n, np.dtype(meta["dtype"])


def _check_labels(path: Path, labels, n: int) -> None:
    """A labelled corpus's label set and labels.bin, as loading and training rely on them;
    ValueError names what is wrong."""
    if not isinstance(labels, dict):
        raise ValueError("meta.json: 'labels' is not an object")
    names, counts = labels.get("names"), labels.get("documents")
    if (
        not isinstance(names, list)
        or not all(isinstance(x, str) and x for x in names)
        or len(set(names)) != len(names)
        or not isinstance(counts, list)
        or len(counts) != len(names)
        or not all(is_count(c) and c > 0 for c in counts)
    ):
        raise ValueError("meta.json: 'labels' is not a set of label names with their document counts")
    dtype = labels.get("dtype")
    if dtype not in ("uint8", "uint16"):
        raise ValueError("meta.json: the labels' 'dtype' is not uint8 or uint16")
    dtype = np.dtype(dtype)
    if (path / "labels.bin").stat().st_size != n * dtype.itemsize:
        raise ValueError("labels.bin has the wrong size")
    top = _max_id(path / "labels.bin", dtype, n)
    if top >= len(names):
        raise ValueError(f"labels.bin holds label {top} but there are {len(names)} labels")


def _max_id(path: Path, dtype: np.dtype, n: int) -> int:
    """The largest id of an id file (-1 if empty), read in chunks through pread rather than the
    memory map, so the pass leaves nothing resident; about 0.05 s per 100 MB."""
    reader = IdReader(path, dtype, start=0, stop=n)
    step = CHUNK_BYTES // dtype.itemsize
    return max((int(reader[a : a + step].max()) for a in range(0, n, step)), default=-1)


def split_bounds(n: int, val_frac: float, test_frac: float) -> dict[str, list[int]]:
    """Contiguous splits: val is the last `val_frac` of the text, test just before it."""
    val_start = int(n * (1 - val_frac))
    test_start = int(n * (1 - val_frac - test_frac))
    return {"train": [0, test_start], "test": [test_start, val_start], "val": [val_start, n]}
