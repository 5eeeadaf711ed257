"""What a corpus is made from: one text file, or a collection of documents (several files,
a directory, a glob pattern, or a file split at --doc-sep), with their labels; read as text
in chunks, document by document.

    source = Source.of([Path("names/")], CorpusOptions(doc_sep="\\n", labels="from-file"))
    for label, text, end in source.pieces(CorpusOptions(), CHUNK_BYTES): ...
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from charrnn.config import LABEL_SOURCES, CorpusOptions
from charrnn.corpus import bundled, documents
from charrnn.corpus.text import BOM, check_text_file, displayable, file_sha256, iter_text, looks_binary
from charrnn.errors import BadValueError, InputError


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
    def of(cls, inputs: Path | list[Path] | None, options: CorpusOptions = CorpusOptions()) -> Source:
        """The source that `charrnn preprocess` and `train` read from their inputs, split at
        `options.doc_sep`. `options.labels` is from-dir or from-file (a label for each file), or
        the path of a text<TAB>label file, which is then the source itself (the inputs may only
        name it again)."""
        inputs = [] if inputs is None else [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
        doc_sep, force, labels = documents.check_separator(options.doc_sep), options.force, options.labels
        if labels is not None and str(labels) not in LABEL_SOURCES:
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

    def pieces(self, opts: CorpusOptions, chunk_bytes: int) -> Iterator[tuple[str | None, str, bool]]:
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
            label = displayable(documents.label_of(path, self.labels, root)) if self.labels else None
            for text, end in documents.split_pieces(iter_text(path, opts, chunk_bytes), self.doc_sep):
                _check_no_eod(path, text)
                yield label, text, end

    def texts(self, opts: CorpusOptions, chunk_bytes: int, ends: list[int] | None = None) -> Iterator[str]:
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
            name = displayable(path.name)
            if self.labels == "from-dir":  # the label is a directory's name
                name = f"{displayable(documents.label_of(path, self.labels, self.roots[i]))}/{name}"
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
    return looks_binary(head[len(BOM) :] if head.startswith(BOM) else head)
