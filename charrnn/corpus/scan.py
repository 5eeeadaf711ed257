"""The first pass over a corpus's text: its vocabulary (every character, or the symbols a
cap keeps), its length, where its documents end, and a labelled collection's labels; the
checks that need the whole text (empty, only whitespace, a separator never met).

    found = scan_plain(source, CorpusOptions(), CHUNK_BYTES)   # found.vocab, found.n
"""

from __future__ import annotations

import array
from dataclasses import dataclass

import numpy as np

from charrnn.config import CorpusOptions
from charrnn.corpus import documents
from charrnn.corpus.source import Source
from charrnn.corpus.text import MAX_CODEPOINT, codepoints
from charrnn.corpus.tokens import UNK, Tokenizer, VocabCap, coverage
from charrnn.corpus.vocab import Vocab
from charrnn.errors import InputError


@dataclass
class Scan:
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


def label_dtype(count: int) -> np.dtype:
    return np.dtype(np.uint8 if count <= 256 else np.uint16)


def scan_plain(source: Source, opts: CorpusOptions, chunk_bytes: int) -> Scan:
    """The first pass over the text: its vocabulary, its length, and where documents start."""
    present = np.zeros(MAX_CODEPOINT, dtype=bool)
    n = docs = 0
    ends: list[int] = []
    for text in source.texts(opts, chunk_bytes, ends):
        present[codepoints(text)] = True
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
    return Scan(vocab, n, docs)


def _holds_unk(what) -> InputError:
    # refused in every text, capped or not: in a vocabulary, U+FDD1 is always UNK
    return InputError(f"{what}: holds U+FDD1, which charrnn keeps for symbols outside a capped vocabulary")


def scan_tokens(source: Source, opts: CorpusOptions, chunk_bytes: int, tokenizer: Tokenizer, cap: VocabCap) -> Scan:
    """The first pass over a text, or an unlabelled collection, of words or a capped vocabulary:
    every symbol counted, then the vocabulary `cap` keeps (EOD always; UNK if any is left out)."""
    counts: dict[str, int] = {}
    ends: list[int] = []
    texts = source.texts(opts, chunk_bytes, ends)
    if tokenizer.kind == "char":
        total = np.zeros(MAX_CODEPOINT, dtype=np.int64)
        for text in texts:
            total += np.bincount(codepoints(tokenizer.normalized(text)), minlength=MAX_CODEPOINT)
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
    return Scan(vocab, n, counts.get(documents.EOD, 0), tokens=record)


def scan_labelled(source: Source, opts: CorpusOptions, chunk_bytes: int) -> Scan:
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
            present[codepoints(text)] = True
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
    return Scan(vocab, int(lengths.sum()), len(labels), names, docs.tolist(), chars.tolist(), labels, lengths)
