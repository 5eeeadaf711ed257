"""Text -> a corpus directory: the vocabulary first (`charrnn.corpus.scan`), then the ids,
written in chunks, so memory stays bounded whatever the file size; a labelled collection laid
out split by split; the whole directory replaced atomically, and a cache of corpora by content.

    charrnn preprocess corpus.txt --out corpora/corpus
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import numpy as np

from charrnn.config import CorpusOptions
from charrnn.corpus import documents
from charrnn.corpus.scan import Scan, label_dtype, scan_labelled, scan_plain, scan_tokens
from charrnn.corpus.source import Source
from charrnn.corpus.store import CORPUS_FORMAT, CORPUS_VERSION, Corpus, split_bounds
from charrnn.corpus.text import CHUNK_BYTES, MAX_CODEPOINT, codepoints, displayable
from charrnn.corpus.tokens import Tokenizer, VocabCap, chosen_tokens
from charrnn.corpus.vocab import Vocab
from charrnn.errors import BadValueError, InputError


def preprocess(
    src: Path | list[Path] | Source,
    out_dir: Path,
    options: CorpusOptions | None = None,
    *,
    tokens: tuple[Tokenizer, VocabCap] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    **fields,
) -> Corpus:
    """Write `out_dir/` with ids.bin, vocab.json and meta.json (and a labelled collection's
    labels.bin); replaces it atomically. `src` is a text file, or inputs naming a collection
    of documents (see `Source.of`). The symbols are those `options` (or its `fields`, by name)
    choose, or `tokens`' (the tokenizer and cap of a model going on), those the cap leaves out
    read as UNK."""
    options = options if options is not None else CorpusOptions(**fields)
    source = src if isinstance(src, Source) else Source.of(src, options)
    tokenizer, cap = tokens or chosen_tokens(options)
    if source.labels and (not tokenizer.plain or cap.capped):
        raise BadValueError("--labels takes plain characters for now: leave out --tokens word, --lowercase, "
                            "--max-vocab and --min-count")  # fmt: skip
    t0 = time.perf_counter()
    sha = source.sha256()
    if source.labels:
        found = scan_labelled(source, options, chunk_bytes)
    elif tokenizer.plain and not cap.capped:
        found = scan_plain(source, options, chunk_bytes)
    else:
        found = scan_tokens(source, options, chunk_bytes, tokenizer, cap)
    out_dir = Path(out_dir)
    with _replacing(out_dir) as tmp:
        if source.labels:
            splits = _write_labelled(source, found, tmp, options, chunk_bytes)
        else:
            splits = _write_ids(source, tmp / "ids.bin", found.vocab, found.n, options, chunk_bytes)
        found.vocab.save(tmp / "vocab.json")
        meta = _meta(source, found, sha, options, splits)
        if found.tokens is not None:
            split_chars = _split_chars(source, found.vocab.tokenizer, options, chunk_bytes, splits)
            meta["tokens"] = {**found.tokens, "split_chars": split_chars}
        meta["seconds"] = round(time.perf_counter() - t0, 3)
        meta.update(_collection_meta(source, found))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    return Corpus.load(out_dir)


@contextlib.contextmanager
def _replacing(out_dir: Path) -> Iterator[Path]:
    """A temporary directory beside `out_dir` to write into, which replaces `out_dir` whole
    once the block ends well, and is removed if it does not."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a corpus folder is ordinary
    try:
        yield tmp
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _meta(source: Source, found: Scan, sha: str, options: CorpusOptions, splits: dict[str, list[int]]) -> dict:
    """meta.json's fields that every corpus has."""
    first = source.files[0]
    return {
        "format": CORPUS_FORMAT,
        "version": CORPUS_VERSION,
        "name": displayable(source.name if source.documents else first.stem),
        "source": displayable(first.name if not source.documents else f"{len(source.files)} file(s)"),
        "source_sha256": sha,
        "source_bytes": sum(f.stat().st_size for f in source.files),
        "chars": found.n,
        "vocab_size": len(found.vocab),
        "dtype": found.vocab.dtype.name,
        "val_frac": options.val_frac,
        "test_frac": options.test_frac,
        "newline": options.newline,
        "encoding_errors": options.encoding_errors,
        "splits": splits,
        "split_sizes": {k: b - a for k, (a, b) in splits.items()},
    }


def _collection_meta(source: Source, found: Scan) -> dict:
    """meta.json's fields of a collection of documents, and of their labels."""
    meta = {}
    if source.documents:
        meta.update(
            documents=found.documents,
            doc_sep=source.doc_sep,
            files=len(source.files),
            skipped=[displayable(str(p)) for p in source.skipped[: documents.SKIPPED_NAMED]],
            skipped_count=len(source.skipped),
        )
    if source.labels:
        meta["labels"] = {
            "source": source.labels,
            "names": found.labels,
            "documents": found.label_docs,
            "chars": found.label_chars,
            "dtype": label_dtype(len(found.labels)).name,
        }
    return meta


def _write_ids(
    source: Source,
    path: Path,
    vocab: Vocab,
    n: int,
    options: CorpusOptions,
    chunk_bytes: int,
) -> dict[str, list[int]]:
    """The second pass over a text or an unlabelled collection: its ids, written in order, and
    its splits (between documents, for a collection: a document starts after each EOD)."""
    val_frac, test_frac = options.val_frac, options.test_frac
    points = documents.SplitPoints(n, val_frac, test_frac)
    eod = vocab.index.get(documents.EOD)
    with open(path, "wb") as f:
        written = 0
        for ids in _encoded(source.texts(options, chunk_bytes), vocab):
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
            yield table[codepoints(tokenizer.normalized(text))]
        return
    get, unk = vocab.index.get, vocab.unk
    for tokens in tokenizer.stream(texts):
        yield np.fromiter((get(t, unk) for t in tokens), dtype=vocab.dtype, count=len(tokens))


def _split_chars(
    source: Source, tokenizer: Tokenizer, options: CorpusOptions, chunk_bytes: int, splits: dict[str, list[int]]
) -> dict[str, int]:
    """The characters of the text that each split's tokens stand for (an end of document
    counts one), read in a third pass: what a loss per token is turned into bits per character with."""
    total = {name: 0 for name in splits}
    at = 0
    for tokens in tokenizer.stream(source.texts(options, chunk_bytes)):
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        for name, (a, b) in splits.items():
            lo, hi = max(a, at) - at, min(b, at + len(tokens)) - at
            if hi > lo:
                total[name] += int(lengths[lo:hi].sum())
        at += len(tokens)
    return total


def _label_parts(scan: Scan, val_frac: float, test_frac: float) -> np.ndarray:
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
    scan: Scan,
    tmp: Path,
    options: CorpusOptions,
    chunk_bytes: int,
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
        for ids in _encoded(source.texts(options, chunk_bytes), scan.vocab):
            written += f.write(ids.tobytes())
    itemsize = scan.vocab.dtype.itemsize
    if written != scan.n * itemsize:
        raise InputError(f"{source.name}: the files changed while they were read; run the command again")

    parts = _label_parts(scan, options.val_frac, options.test_frac)
    rng = np.random.default_rng(SHUFFLE_SEED)
    by_part = [rng.permutation(np.flatnonzero(parts == k)) for k in range(3)]  # train, test, val
    starts = np.cumsum(scan.doc_lengths) - scan.doc_lengths
    dtype = label_dtype(len(scan.labels))
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
                        held_labels.append(np.full(n, label, dtype=dtype))
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


# The options the cache key has always named itself (the rest of CorpusOptions' fields are
# named in it when they differ from their defaults; --force only changes whether a file is read)
KEYED = ("val_frac", "test_frac", "newline", "encoding_errors", "doc_sep", "labels", "tokens", "lowercase",
         "max_vocab", "min_count", "force")  # fmt: skip


def cached_corpus(
    src: Path | list[Path],
    root: Path,
    options: CorpusOptions = CorpusOptions(),
    *,
    tokens: tuple[Tokenizer, VocabCap] | None = None,
) -> Corpus:
    """Preprocess `src` into `root/<name>-<hash>/` unless an identical cache entry exists."""
    source = Source.of(src, options)
    tokenizer, cap = tokens or chosen_tokens(options)
    o = options
    key = f"{source.sha256()}|{o.val_frac}|{o.test_frac}|{o.newline}|{o.encoding_errors}"
    if not tokenizer.plain or cap.capped:
        key += f"|tokens|{tokenizer.kind}|{tokenizer.lowercase}|{cap.max_vocab}|{cap.min_count}"
    if source.documents:
        key += f"|documents|{source.doc_sep!r}"
    if source.labels:
        key += f"|labels|{source.labels}|layout {LABELLED_LAYOUT}"
    for f in fields(CorpusOptions):
        if f.name not in KEYED and getattr(o, f.name) != f.default:
            key += f"|{f.name}={getattr(o, f.name)!r}"
    out = Path(root) / f"{source.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (out / "meta.json").exists():
        try:
            return Corpus.load(out)
        except InputError:
            pass  # a damaged cache entry is rebuilt
    return preprocess(source, out, options, tokens=(tokenizer, cap))
