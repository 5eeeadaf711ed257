"""Text files as text: UTF-8 decoding in chunks (BOM dropped, bad bytes reported by byte
offset and line), the binary sniff, and the checks a text file must pass.

    for chunk in iter_text(check_text_file(Path("poems.txt")), CorpusOptions(newline="lf")):
        ...
"""

from __future__ import annotations

import codecs
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from charrnn.config import CorpusOptions
from charrnn.errors import InputError

CHUNK_BYTES = 16 << 20
BOM = codecs.BOM_UTF8
MAX_CODEPOINT = 0x110000


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


def looks_binary(head: bytes) -> str | None:
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


def iter_text(path: Path, opts: CorpusOptions = CorpusOptions(), chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """Decode a UTF-8 file chunk by chunk: BOM dropped, errors reported by byte offset and line."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors=opts.encoding_errors)
    lines = 0  # newlines seen before this chunk
    held = ""  # a trailing "\r" kept back so that a CRLF split across chunks is still seen
    with open(path, "rb") as f:
        # The BOM and the binary sniff look at the file's head, whatever the chunk size.
        head = f.read(8192)
        offset = len(BOM) if head.startswith(BOM) else 0  # bytes of the file consumed before this chunk
        if not opts.force:
            why = looks_binary(head[offset:])
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


def codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)


def displayable(name: str) -> str:
    """A file name as text that UTF-8 can hold: bytes of a name that were not UTF-8 (kept by
    Python as lone surrogates) become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
