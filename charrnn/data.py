"""Corpus -> compact id file, train/val/test splits, and batches of contiguous streams.

    charrnn preprocess corpus.txt --out corpora/corpus

The text is read twice in chunks (vocabulary first, then ids), so memory stays bounded
whatever the file size. Ids are stored raw in the smallest unsigned dtype that fits and
read back through a memory map, so training's resident memory does not grow with the corpus.
"""

from __future__ import annotations

import array
import codecs
import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn import bundled, documents
from charrnn.config import TEST_FRAC, VAL_FRAC
from charrnn.errors import BadValueError, InputError
from charrnn.tokens import UNK, Tokenizer, VocabCap, coverage
from charrnn.values import is_count
from charrnn.vocab import Vocab

CORPUS_FORMAT = "charrnn-corpus"
CORPUS_VERSION = 1
CHUNK_BYTES = 16 << 20
BOM = codecs.BOM_UTF8
MAX_CODEPOINT = 0x110000
MIN_EVAL_STREAM = 512  # characters


@dataclass(frozen=True)
class TextOptions:
    """How raw bytes become text."""

    encoding_errors: str = "strict"  # strict | replace | ignore
    newline: str = "keep"  # keep | lf
    force: bool = False  # accept files that look binary

    def __post_init__(self):
        if self.encoding_errors not in ("strict", "replace", "ignore"):
            raise BadValueError(f"--encoding-errors must be strict, replace or ignore, not {self.encoding_errors!r}")
        if self.newline not in ("keep", "lf"):
            raise BadValueError(f"--newline must be keep or lf, not {self.newline!r}")


def check_text_file(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a text file")
    if not path.is_file():  # a pipe or a device: preprocessing reads the text twice
        raise InputError(f"{path}: is not a regular file; save the text to a file first")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def _looks_binary(head: bytes) -> str | None:
    if b"\x00" in head:
        return "it contains NUL bytes"
    text = head.decode("utf-8", errors="replace")
    if not text:
        return None
    # U+FFFD stands for bytes that are not UTF-8: it counts against the file, not for it.
    good = sum(1 for c in text if (c.isprintable() and c != "\ufffd") or c in "\n\r\t\f\v")
    if good / len(text) < 0.8:
        return f"only {100 * good / len(text):.0f}% of its first characters are printable text"
    return None


def iter_text(path: Path, opts: TextOptions = TextOptions(), chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """Decode a UTF-8 file chunk by chunk: BOM dropped, errors reported by byte offset and line."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors=opts.encoding_errors)
    lines = 0  # newlines seen before this chunk
    held = ""  # a trailing "\r" kept back so that a CRLF split across chunks is still seen
    with open(path, "rb") as f:
        # The BOM and the binary sniff look at the file's head, whatever the chunk size.
        head = f.read(8192)
        offset = len(BOM) if head.startswith(BOM) else 0  # bytes of the file consumed before this chunk
        if not opts.force:
            why = _looks_binary(head[offset:])
            if why:
                raise InputError(f"{path}: looks like a binary file ({why}); pass --force to use it anyway")
        f.seek(offset)
        while True:
            data = f.read(chunk_bytes)
            final = not data
            pending = decoder.getstate()[0]  # bytes of a character split across chunks
            try:
                text = decoder.decode(data, final=final)
            except UnicodeDecodeError as e:
                # e.start counts from the start of pending + data
                bad = offset - len(pending) + e.start
                line = lines + (pending + data)[: e.start].count(b"\n") + 1
                raise InputError(
                    f"{path}: invalid UTF-8 at byte {bad} (line {line}): {e.reason}; "
                    "pass --encoding-errors replace or ignore to proceed anyway"
                ) from None
            offset += len(data)
            lines += data.count(b"\n")
            if opts.newline == "lf":
                text = held + text
                held = ""
                if text.endswith("\r") and not final:
                    held, text = "\r", text[:-1]
                text = text.replace("\r\n", "\n")
            if text:
                yield text
            if final:
                return


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)


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


@dataclass(frozen=True)
class Source:
    """What a corpus is made from: one text file, or a collection of documents (several files,
    a directory, a glob pattern, or a file split at `doc_sep`)."""

    files: list[Path]
    documents: bool
    doc_sep: str | None = None
    skipped: tuple[Path, ...] = ()
    name: str = ""
    labels: str | None = None  # where documents' labels come from: from-dir, from-file, or tsv (the file)
    roots: tuple[Path | None, ...] = ()  # for from-dir: the directory named that each file was found under

    @classmethod
    def of(
        cls, inputs: Path | list[Path] | None, doc_sep: str | None = None, force: bool = False, labels=None
    ) -> Source:
        """The source that `charrnn preprocess` and `train` read from their inputs. `labels` is
        from-dir or from-file (a label for each file), or the path of a text<TAB>label file,
        which is then the source itself (the inputs may only name it again)."""
        inputs = [] if inputs is None else [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
        doc_sep = documents.check_separator(doc_sep)
        if labels is not None and str(labels) not in documents.LABEL_SOURCES:
            return cls._table(Path(labels), inputs, doc_sep)
        if not inputs:
            raise BadValueError("name a text file, a directory or a pattern")
        only = Path(inputs[0]) if len(inputs) == 1 else None
        # one file (a name with [ or * in it too), or a bundled corpus's name, is a plain text
        plain = only is not None and (only.is_file() or not only.exists() and not glob.has_magic(str(only)))
        if plain and doc_sep is None and labels is None:
            return cls([check_text_file(bundled.text_path(inputs[0]))], documents=False, name=Path(inputs[0]).stem)
        for given in map(Path, inputs):
            if (given / "meta.json").is_file() and (given / "ids.bin").is_file():
                raise InputError(f"{given}: is a preprocessed corpus already; train on it as it is")
        named = [Path(i) if glob.has_magic(str(i)) else bundled.text_path(i) for i in inputs]
        found = documents.collect(named, lambda p: not force and _head_binary(p))
        files = [check_text_file(f) for f in found.files]
        first = Path(inputs[0])
        if not first.exists() and glob.has_magic(str(first)):  # a pattern is named after the folder it looks in
            first = next((p for p in first.parents if not glob.has_magic(str(p))), Path("."))
            first = first.resolve() if first == Path(".") else first
        name = first.name if first.is_dir() else first.stem
        return cls(
            files,
            documents=True,
            doc_sep=doc_sep,
            skipped=tuple(found.skipped),
            name=name or "documents",
            labels=None if labels is None else str(labels),
            roots=tuple(found.roots),
        )

    @classmethod
    def _table(cls, path: Path, inputs: list[Path], doc_sep: str | None) -> Source:
        """A text<TAB>label file: each line a document of the label after its last tab."""
        if path.suffix.lower() not in (".tsv", ".tab", ".txt"):
            raise BadValueError(
                f"--labels must be from-dir, from-file, or a .tsv file of text<TAB>label lines, not {str(path)!r}"
            )
        check_text_file(path)
        if any(Path(i).absolute() != path.absolute() for i in inputs):
            raise BadValueError(f"with --labels {path} the documents are that file's lines: name no other input")
        if doc_sep is not None:
            raise BadValueError(f"--doc-sep does not apply to --labels {path}: each of its lines is a document")
        return cls([path], documents=True, doc_sep="\n", name=path.stem, labels="tsv")

    def pieces(self, opts: TextOptions, chunk_bytes: int) -> Iterator[tuple[str | None, str, bool]]:
        """(label, text, ends a document) pieces of a collection, in order; a document may come
        in several pieces, and an empty one as ("", True) alone. The label is None in a
        collection without labels. Text holding EOD is refused here, for every reader."""
        if self.labels == "tsv":
            path = self.files[0]
            for text, label in documents.tsv_documents(path, iter_text(path, opts, chunk_bytes)):
                _check_no_eod(path, text)
                yield label, text, True
            return
        for path, root in zip(self.files, self.roots, strict=True):
            label = _displayable(documents.label_of(path, self.labels, root)) if self.labels else None
            for text, end in documents.split_pieces(iter_text(path, opts, chunk_bytes), self.doc_sep):
                _check_no_eod(path, text)
                yield label, text, end

    def texts(self, opts: TextOptions, chunk_bytes: int, ends: list[int] | None = None) -> Iterator[str]:
        """The text of every file in turn, in chunks; in a collection each document that is not
        empty is followed by EOD (empty ones are dropped). `ends`, if given, gets the number
        of document ends met, the empty documents' too."""
        if not self.documents:
            for path in self.files:
                yield from iter_text(path, opts, chunk_bytes)
            return
        buf: list[str] = []
        size = length = count = 0  # characters in buf; in the current document; ends met
        for _, text, end in self.pieces(opts, chunk_bytes):
            if text:
                buf.append(text)
                length += len(text)
                size += len(text)
            if end:
                count += 1
                if length:
                    buf.append(documents.EOD)
                    size += 1
                length = 0
            if size >= chunk_bytes:
                yield "".join(buf)
                buf, size = [], 0
        if buf:
            yield "".join(buf)
        if ends is not None:
            ends.append(count)

    def sha256(self) -> str:
        """The file's sha256; for documents, one over every file's name and sha256, in order."""
        if not self.documents:
            return file_sha256(self.files[0])
        h = hashlib.sha256()
        for i, path in enumerate(self.files):
            name = _displayable(path.name)
            if self.labels == "from-dir":  # the label is a directory's name
                name = f"{_displayable(documents.label_of(path, self.labels, self.roots[i]))}/{name}"
            h.update(f"{name}\0{file_sha256(path)}\n".encode())
        return h.hexdigest()


def _check_no_eod(path: Path, text: str) -> None:
    if documents.EOD in text:
        raise InputError(f"{path}: holds U+FDD0, which charrnn keeps for the end of a document")


def _head_binary(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError:
        return None  # not binary: unreadable, which reading it says in one line
    return _looks_binary(head[len(BOM) :] if head.startswith(BOM) else head)


def check_fractions(val_frac: float, test_frac: float) -> None:
    if not 0 <= val_frac < 1:
        raise BadValueError(f"--val-frac must be in [0, 1), not {val_frac}")
    if not 0 <= test_frac < 1 or val_frac + test_frac >= 1:
        raise BadValueError(f"--test-frac must be in [0, 1) and leave some text for training, not {test_frac}")


def preprocess(
    src: Path | list[Path] | Source,
    out_dir: Path,
    *,
    val_frac: float = VAL_FRAC,
    test_frac: float = TEST_FRAC,
    opts: TextOptions = TextOptions(),
    doc_sep: str | None = None,
    labels: str | Path | None = None,
    tokenizer: Tokenizer = Tokenizer(),
    cap: VocabCap = VocabCap(),
    chunk_bytes: int = CHUNK_BYTES,
) -> Corpus:
    """Write `out_dir/` with ids.bin, vocab.json and meta.json (and a labelled collection's
    labels.bin); replaces it atomically. `src` is a text file, or inputs naming a collection
    of documents, and `labels` where their labels come from (see `Source.of`). The symbols
    are `tokenizer`'s, those `cap` leaves out read as UNK."""
    check_fractions(val_frac, test_frac)
    source = src if isinstance(src, Source) else Source.of(src, doc_sep, force=opts.force, labels=labels)
    if source.labels and (not tokenizer.plain or cap.capped):
        raise BadValueError("--labels takes plain characters for now: leave out --tokens word, --lowercase, "
                            "--max-vocab and --min-count")  # fmt: skip
    t0 = time.perf_counter()
    sha = source.sha256()
    if source.labels:
        scan = _scan_labelled(source, opts, chunk_bytes)
    elif tokenizer.plain and not cap.capped:
        scan = _scan(source, opts, chunk_bytes)
    else:
        scan = _scan_tokens(source, opts, chunk_bytes, tokenizer, cap)
    vocab, n = scan.vocab, scan.n

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a corpus folder is ordinary
    try:
        if source.labels:
            splits = _write_labelled(source, scan, tmp, opts, chunk_bytes, val_frac, test_frac)
        else:
            splits = _write_ids(source, tmp / "ids.bin", vocab, n, opts, chunk_bytes, val_frac, test_frac)
        vocab.save(tmp / "vocab.json")
        first = source.files[0]
        meta = {
            "format": CORPUS_FORMAT,
            "version": CORPUS_VERSION,
            "name": _displayable(source.name if source.documents else first.stem),
            "source": _displayable(first.name if not source.documents else f"{len(source.files)} file(s)"),
            "source_sha256": sha,
            "source_bytes": sum(f.stat().st_size for f in source.files),
            "chars": n,
            "vocab_size": len(vocab),
            "dtype": vocab.dtype.name,
            "val_frac": val_frac,
            "test_frac": test_frac,
            "newline": opts.newline,
            "encoding_errors": opts.encoding_errors,
            "splits": splits,
            "split_sizes": {k: b - a for k, (a, b) in splits.items()},
        }
        if scan.tokens is not None:
            split_chars = _split_chars(source, vocab.tokenizer, opts, chunk_bytes, splits)
            meta["tokens"] = {**scan.tokens, "split_chars": split_chars}
        meta["seconds"] = round(time.perf_counter() - t0, 3)
        if source.documents:
            meta.update(
                documents=scan.documents,
                doc_sep=source.doc_sep,
                files=len(source.files),
                skipped=[_displayable(str(p)) for p in source.skipped[: documents.SKIPPED_NAMED]],
                skipped_count=len(source.skipped),
            )
        if source.labels:
            meta["labels"] = {
                "source": source.labels,
                "names": scan.labels,
                "documents": scan.label_docs,
                "chars": scan.label_chars,
                "dtype": _label_dtype(len(scan.labels)).name,
            }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Corpus.load(out_dir)


def _write_ids(
    source: Source,
    path: Path,
    vocab: Vocab,
    n: int,
    opts: TextOptions,
    chunk_bytes: int,
    val_frac: float,
    test_frac: float,
) -> dict[str, list[int]]:
    """The second pass over a text or an unlabelled collection: its ids, written in order, and
    its splits (between documents, for a collection: a document starts after each EOD)."""
    points = documents.SplitPoints(n, val_frac, test_frac)
    eod = vocab.index.get(documents.EOD)
    with open(path, "wb") as f:
        written = 0
        for ids in _encoded(source.texts(opts, chunk_bytes), vocab):
            f.write(ids.tobytes())
            if eod is not None:
                points.add(written + np.flatnonzero(ids == eod) + 1)
            written += len(ids)
        f.flush()
        os.fsync(f.fileno())
    if written != n:
        raise InputError(f"{source.name}: the files changed while they were read; run the command again")
    return points.splits() if source.documents else split_bounds(n, val_frac, test_frac)


def _encoded(texts: Iterator[str], vocab: Vocab) -> Iterator[np.ndarray]:
    """The ids of text in chunks, in the vocabulary's dtype: a table of code points for
    characters, a dictionary for words; symbols left out of a capped vocabulary are UNK."""
    tokenizer = vocab.tokenizer
    if tokenizer.kind == "char":
        table = vocab.lookup_table()
        table = np.concatenate([table, np.full(MAX_CODEPOINT - len(table), -1)]) if vocab.unk is not None else table
        table = np.where(table < 0, vocab.unk or 0, table).astype(vocab.dtype)
        for text in texts:
            yield table[_codepoints(tokenizer.normalized(text))]
        return
    get, unk = vocab.index.get, vocab.unk
    for tokens in tokenizer.stream(texts):
        yield np.fromiter((get(t, unk) for t in tokens), dtype=vocab.dtype, count=len(tokens))


def _split_chars(
    source: Source, tokenizer: Tokenizer, opts: TextOptions, chunk_bytes: int, splits: dict[str, list[int]]
) -> dict[str, int]:
    """The characters of the text that each split's tokens stand for (an end of document
    counts one), read in a third pass: what a loss per token is turned into bits per character with."""
    total = {name: 0 for name in splits}
    at = 0
    for tokens in tokenizer.stream(source.texts(opts, chunk_bytes)):
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        for name, (a, b) in splits.items():
            lo, hi = max(a, at) - at, min(b, at + len(tokens)) - at
            if hi > lo:
                total[name] += int(lengths[lo:hi].sum())
        at += len(tokens)
    return total


@dataclass
class _Scan:
    vocab: Vocab
    n: int  # symbols, EODs included
    documents: int
    # a labelled collection: the label names (sorted; their ids), each label's documents and
    # symbols, and each document's label id and length (its EOD included), in order
    labels: list[str] | None = None
    label_docs: list[int] | None = None
    label_chars: list[int] | None = None
    doc_labels: np.ndarray | None = None
    doc_lengths: np.ndarray | None = None
    tokens: dict | None = None  # how the symbols were chosen, for meta.json (None: plain characters)


def _label_dtype(count: int) -> np.dtype:
    return np.dtype(np.uint8 if count <= 256 else np.uint16)


def _scan(source: Source, opts: TextOptions, chunk_bytes: int) -> _Scan:
    """The first pass over the text: its vocabulary, its length, and where documents start."""
    present = np.zeros(MAX_CODEPOINT, dtype=bool)
    n = docs = 0
    ends: list[int] = []
    for text in source.texts(opts, chunk_bytes, ends):
        present[_codepoints(text)] = True
        n += len(text)
        docs += text.count(documents.EOD) if source.documents else 0
    what = source.files[0] if not source.documents else f"{source.name} ({len(source.files)} file(s))"
    if n == 0:
        raise InputError(f"{what}: is empty")
    if source.doc_sep is not None and ends[0] == len(source.files):
        raise InputError(f"{what}: --doc-sep {source.doc_sep!r} never occurs in the text")
    if present[ord(UNK)]:
        raise _holds_unk(what)
    vocab = Vocab.from_codepoints(np.flatnonzero(present))
    if all(c.isspace() or c == documents.EOD for c in vocab.chars):
        raise InputError(f"{what}: holds only whitespace")
    return _Scan(vocab, n, docs)


def _holds_unk(what) -> InputError:
    # refused in every text, capped or not: in a vocabulary, U+FDD1 is always UNK
    return InputError(f"{what}: holds U+FDD1, which charrnn keeps for symbols outside a capped vocabulary")


def _scan_tokens(source: Source, opts: TextOptions, chunk_bytes: int, tokenizer: Tokenizer, cap: VocabCap) -> _Scan:
    """The first pass over a text, or an unlabelled collection, of words or a capped vocabulary:
    every symbol counted, then the vocabulary `cap` keeps (EOD always; UNK if any is left out)."""
    counts: dict[str, int] = {}
    ends: list[int] = []
    texts = source.texts(opts, chunk_bytes, ends)
    if tokenizer.kind == "char":
        total = np.zeros(MAX_CODEPOINT, dtype=np.int64)
        for text in texts:
            total += np.bincount(_codepoints(tokenizer.normalized(text)), minlength=MAX_CODEPOINT)
        counts = {chr(c): int(total[c]) for c in np.flatnonzero(total)}
    else:
        for tokens in tokenizer.stream(texts):
            for t in tokens:
                counts[t] = counts.get(t, 0) + 1
    what = source.files[0] if not source.documents else f"{source.name} ({len(source.files)} file(s))"
    n = sum(counts.values())
    if n == 0:
        raise InputError(f"{what}: is empty")
    if source.doc_sep is not None and ends[0] == len(source.files):
        raise InputError(f"{what}: --doc-sep {source.doc_sep!r} never occurs in the text")
    if UNK in counts:
        raise _holds_unk(what)
    kept, dropped = cap.keep(counts, always=[documents.EOD])
    if not [s for s in kept if s != documents.EOD]:
        raise InputError(f"{what}: the cap leaves no symbol (no symbol is seen --min-count {cap.min_count} times)")
    # a word model always has UNK: other text holds words it never saw (a character model's
    # text rarely does, and one without a cap keeps refusing unknown characters)
    symbols = kept + [UNK] if dropped or tokenizer.kind == "word" else kept
    if tokenizer.kind == "char":
        symbols.sort()  # by code point, as an uncapped vocabulary of characters
    vocab = Vocab(symbols, tokenizer)
    if all(c.isspace() or c == documents.EOD for c in kept):
        raise InputError(f"{what}: holds only whitespace" + (" among the symbols kept" if dropped else ""))
    text_counts = {s: c for s, c in counts.items() if s != documents.EOD}
    record = {
        **tokenizer.to_dict(),
        "max_vocab": cap.max_vocab,
        "min_count": cap.min_count,
        "distinct": len(text_counts),
        "coverage": round(coverage(text_counts, kept), 6),
    }
    return _Scan(vocab, n, counts.get(documents.EOD, 0), tokens=record)


def _scan_labelled(source: Source, opts: TextOptions, chunk_bytes: int) -> _Scan:
    """The first pass over a labelled collection: its vocabulary, its documents' labels and
    lengths (12 bytes a document are kept), and the checks that need the whole of it."""
    present = np.zeros(MAX_CODEPOINT, dtype=bool)
    present[ord(documents.EOD)] = True
    seen: dict[str, int] = {}  # label -> id in order of first sight
    doc_labels, doc_lengths = array.array("i"), array.array("q")
    length = ends = 0
    for label, text, end in source.pieces(opts, chunk_bytes):
        if label not in seen:
            if len(seen) >= documents.MAX_LABELS:
                raise InputError(f"{source.name}: more than {documents.MAX_LABELS:,} labels")
            seen[label] = len(seen)
        if text:
            present[_codepoints(text)] = True
            length += len(text)
        if end:
            ends += 1
            if length:
                doc_labels.append(seen[label])
                doc_lengths.append(length + 1)
            length = 0
    what = f"{source.name} ({len(source.files)} file(s))"
    if not doc_labels:
        raise InputError(f"{what}: is empty")
    if source.labels != "tsv" and source.doc_sep is not None and ends == len(source.files):
        raise InputError(f"{what}: --doc-sep {source.doc_sep!r} never occurs in the text")
    names = sorted(seen)
    to_sorted = np.empty(len(seen), dtype=np.int32)
    to_sorted[[seen[name] for name in names]] = np.arange(len(names), dtype=np.int32)
    labels = to_sorted[np.frombuffer(doc_labels, dtype=np.int32)]
    lengths = np.frombuffer(doc_lengths, dtype=np.int64)
    docs = np.bincount(labels, minlength=len(names))
    if not docs.all():
        empty = [names[i] for i in np.flatnonzero(docs == 0)]
        raise InputError(f"{what}: label {empty[0]!r} has no documents (its text is empty)" + (
            f", nor have {len(empty) - 1} other label(s)" if len(empty) > 1 else ""))  # fmt: skip
    if len(names) < 2:
        how = {"from-dir": "directory", "from-file": "file", "tsv": "label column"}[source.labels]
        raise InputError(f"{what}: every document has the label {names[0]!r}; labels need two or more (one {how} each)")
    if present[ord(UNK)]:
        raise _holds_unk(what)
    vocab = Vocab.from_codepoints(np.flatnonzero(present))
    if all(c.isspace() or c == documents.EOD for c in vocab.chars):
        raise InputError(f"{what}: holds only whitespace")
    chars = np.bincount(labels, weights=lengths, minlength=len(names)).astype(np.int64)
    return _Scan(vocab, int(lengths.sum()), len(labels), names, docs.tolist(), chars.tolist(), labels, lengths)


def _label_parts(scan: _Scan, val_frac: float, test_frac: float) -> np.ndarray:
    """Which split each document of a labelled collection goes to (0 train, 1 test, 2 val): of
    each label's documents, val takes the last, about `val_frac` of the label's text, and test
    the ones before them, as `SplitPoints` places them; so every label is in every split it
    has documents enough for."""
    parts = np.zeros(len(scan.doc_labels), dtype=np.uint8)
    order = np.argsort(scan.doc_labels, kind="stable")  # each label's documents, in order
    bounds = np.cumsum([0, *scan.label_docs])
    for label in range(len(scan.labels)):
        docs = order[bounds[label] : bounds[label + 1]]
        lengths = scan.doc_lengths[docs]
        starts = np.cumsum(lengths) - lengths
        points = documents.SplitPoints(int(lengths.sum()), val_frac, test_frac)
        points.add(starts[1:])
        splits = points.splits()
        parts[docs] = np.where(starts < splits["test"][0], 0, np.where(starts < splits["val"][0], 1, 2))
    return parts


SHUFFLE_SEED = 0  # the fixed order a labelled collection's documents are laid out in
LABELLED_LAYOUT = 1  # how labelled collections are laid out (`_write_labelled`): part of the cache key


def _write_labelled(
    source: Source,
    scan: _Scan,
    tmp: Path,
    opts: TextOptions,
    chunk_bytes: int,
    val_frac: float,
    test_frac: float,
) -> dict[str, list[int]]:
    """The second pass over a labelled collection: ids.bin, and labels.bin (the label id of
    each symbol's document). The documents are laid out split by split (train, test, val; see
    `_label_parts`), and within a split in a fixed shuffled order, so the documents before one
    do not tell its label: the model must learn it from the label. The text is first written
    in its own order, then copied document by document, a chunk at most at a time (memory
    stays at what the scan keeps; the disk briefly holds the ids twice)."""
    staged = tmp / "ids.staged"
    written = 0
    with open(staged, "wb") as f:
        for ids in _encoded(source.texts(opts, chunk_bytes), scan.vocab):
            written += f.write(ids.tobytes())
    itemsize = scan.vocab.dtype.itemsize
    if written != scan.n * itemsize:
        raise InputError(f"{source.name}: the files changed while they were read; run the command again")

    parts = _label_parts(scan, val_frac, test_frac)
    rng = np.random.default_rng(SHUFFLE_SEED)
    by_part = [rng.permutation(np.flatnonzero(parts == k)) for k in range(3)]  # train, test, val
    starts = np.cumsum(scan.doc_lengths) - scan.doc_lengths
    label_dtype = _label_dtype(len(scan.labels))
    block = max(1, chunk_bytes // itemsize)  # symbols read at once, and held before a write
    fd = os.open(staged, os.O_RDONLY)
    try:
        with open(tmp / "ids.bin", "wb") as ids_out, open(tmp / "labels.bin", "wb") as labels_out:
            held_ids: list[bytes] = []
            held_labels: list[np.ndarray] = []
            size = 0
            for docs in by_part:
                for doc in docs:
                    start, length, label = int(starts[doc]), int(scan.doc_lengths[doc]), scan.doc_labels[doc]
                    for a in range(0, length, block):  # a long document in bounded pieces
                        n = min(block, length - a)
                        held_ids.append(_pread_all(fd, n * itemsize, (start + a) * itemsize))
                        held_labels.append(np.full(n, label, dtype=label_dtype))
                        size += n
                        if size >= block:
                            ids_out.write(b"".join(held_ids))
                            labels_out.write(np.concatenate(held_labels).tobytes())
                            held_ids, held_labels, size = [], [], 0
            if held_ids:
                ids_out.write(b"".join(held_ids))
                labels_out.write(np.concatenate(held_labels).tobytes())
            for f in (ids_out, labels_out):
                f.flush()
                os.fsync(f.fileno())
    finally:
        os.close(fd)
        staged.unlink()
    sizes = [int(scan.doc_lengths[docs].sum()) for docs in by_part]
    train, test = sizes[0], sizes[0] + sizes[1]
    return {"train": [0, train], "test": [train, test], "val": [test, scan.n]}


def _pread_all(fd: int, n: int, offset: int) -> bytes:
    """`n` bytes at `offset`, however many reads that takes (a read returns 2 GiB at most)."""
    parts = []
    while n > 0:
        data = os.pread(fd, n, offset)
        if not data:
            raise OSError(f"unexpected end of file at byte {offset}")
        parts.append(data)
        n, offset = n - len(data), offset + len(data)
    return b"".join(parts)


def _replace_dir(new: Path, dest: Path) -> None:
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(new, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, dest)


def _displayable(name: str) -> str:
    """A file name as text that UTF-8 can hold: bytes of a name that were not UTF-8 (kept by
    Python as lone surrogates) become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def cached_corpus(
    src: Path | list[Path],
    root: Path,
    *,
    val_frac: float = VAL_FRAC,
    test_frac: float = TEST_FRAC,
    opts: TextOptions = TextOptions(),
    doc_sep: str | None = None,
    labels: str | Path | None = None,
    tokenizer: Tokenizer = Tokenizer(),
    cap: VocabCap = VocabCap(),
) -> Corpus:
    """Preprocess `src` into `root/<name>-<hash>/` unless an identical cache entry exists."""
    source = Source.of(src, doc_sep, force=opts.force, labels=labels)
    key = f"{source.sha256()}|{val_frac}|{test_frac}|{opts.newline}|{opts.encoding_errors}"
    if not tokenizer.plain or cap.capped:
        key += f"|tokens|{tokenizer.kind}|{tokenizer.lowercase}|{cap.max_vocab}|{cap.min_count}"
    if source.documents:
        key += f"|documents|{source.doc_sep!r}"
    if source.labels:
        key += f"|labels|{source.labels}|layout {LABELLED_LAYOUT}"
    out = Path(root) / f"{source.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (out / "meta.json").exists():
        try:
            return Corpus.load(out)
        except InputError:
            pass  # a damaged cache entry is rebuilt
    return preprocess(source, out, val_frac=val_frac, test_frac=test_frac, opts=opts, tokenizer=tokenizer, cap=cap)


class StreamBatcher:
    """Batches of B contiguous streams, as in char-rnn: batch k of an epoch holds, for each
    stream b, the characters [b*L + k*T, b*L + (k+1)*T] (inputs, and targets shifted by one),
    so a hidden state carried from batch k to k+1 continues the same text."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, *, rows: slice = slice(None)):
        n = len(ids)
        need = batch_size * seq_len + 1
        if n < need:
            raise InputError(
                f"the training split has {n} characters but --batch-size {batch_size} x "
                f"--seq-len {seq_len} needs at least {need}; lower --batch-size or --seq-len"
            )
        self.ids = ids
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.stream_len = (n - 1) // batch_size
        self.steps_per_epoch = self.stream_len // seq_len
        # the streams of the whole batch are laid out the same for any number of processes;
        # `rows` picks this process's share
        self.starts = (np.arange(batch_size, dtype=np.int64) * self.stream_len)[rows]

    def batch(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of the k-th batch of an epoch, each (B, T) int64."""
        return self.batch_at(k * self.seq_len)

    def batch_at(self, off: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of the window starting `off` characters into every stream."""
        t = self.seq_len
        chunk = np.stack([self.ids[s + off : s + off + t + 1] for s in self.starts]).astype(np.int64)
        return chunk[:, :-1], chunk[:, 1:]


def eval_batches(ids: np.ndarray, batch_size: int, seq_len: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every prediction of a split exactly once: the split is cut into at most `batch_size`
    contiguous streams of at least MIN_EVAL_STREAM characters (the last one padded with
    target -1, to be ignored), walked in windows of `seq_len` with the hidden state carried
    by the caller. Only one window is in memory at a time."""
    n_pred = len(ids) - 1
    if n_pred <= 0:
        return
    # Each stream starts from a zero state, so keep streams long enough for that to wash out.
    streams = max(1, min(batch_size, n_pred // MIN_EVAL_STREAM))
    length = math.ceil(n_pred / streams)
    rows = math.ceil(n_pred / length)
    for a in range(0, length, seq_len):
        w = min(seq_len, length - a)
        x = np.zeros((rows, w), dtype=np.int64)
        y = np.full((rows, w), -1, dtype=np.int64)
        for r in range(rows):
            start = r * length + a
            stop = min(start + w, r * length + length, n_pred)  # predictions this row makes here
            if stop > start:
                chunk = ids[start : stop + 1]
                x[r, : stop - start] = chunk[:-1]
                y[r, : stop - start] = chunk[1:]
        yield x, y
