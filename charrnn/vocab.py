"""`Vocab`: Unicode code points <-> integer ids. A corpus's are sorted by code point; a
fine-tuned model's keep its parent's order, with the new text's new characters after them.

>>> v = Vocab.from_text("hello")
>>> v.decode(v.encode("hole"))
'hole'
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from charrnn.errors import UnknownCharacterError


class Vocab:
    def __init__(self, chars: list[str]):
        if any(len(c) != 1 for c in chars):
            raise ValueError("a vocabulary holds single code points")
        if len(set(chars)) != len(chars):
            raise ValueError("a vocabulary holds each code point once")
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls(sorted(set(text)))

    @classmethod
    def from_codepoints(cls, codepoints) -> Vocab:
        return cls([chr(int(cp)) for cp in sorted(codepoints)])

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, ch: str) -> bool:
        return ch in self.index

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned integer type that holds every id."""
        n = len(self.chars)
        return np.dtype(np.uint8 if n <= 1 << 8 else np.uint16 if n <= 1 << 16 else np.uint32)

    def unknown(self, text: str) -> list[str]:
        """Characters of `text` outside the vocabulary, in order of first appearance."""
        return list(dict.fromkeys(c for c in text if c not in self.index))

    def encode(self, text: str, unknown: str = "error", context: str = "text") -> list[int]:
        """Ids of `text`. `unknown="error"` raises naming the missing characters; "skip" drops them."""
        missing = self.unknown(text)
        if missing:
            if unknown != "skip":
                raise UnknownCharacterError(missing, context)
            text = "".join(c for c in text if c in self.index)
        return [self.index[c] for c in text]

    def extended(self, other: Vocab) -> tuple[Vocab, list[str]]:
        """This vocabulary with the characters of `other` that it lacks appended, so that every
        id it had keeps its character; and those new characters, in `other`'s order."""
        new = [c for c in other.chars if c not in self.index]
        return Vocab(self.chars + new), new

    def ids_in(self, other: Vocab) -> np.ndarray:
        """For each id of this vocabulary, the id of the same character in `other` (int64);
        ValueError if `other` lacks some."""
        missing = [c for c in self.chars if c not in other.index]
        if missing:
            raise ValueError(f"{len(missing)} character(s) are not in the other vocabulary: {shown(missing)}")
        return np.array([other.index[c] for c in self.chars], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def lookup_table(self) -> np.ndarray:
        """A code point -> id table (-1 where absent), for encoding large texts with numpy."""
        cps = np.fromiter((ord(c) for c in self.chars), dtype=np.int64, count=len(self.chars))
        table = np.full(int(cps.max()) + 1 if len(cps) else 1, -1, dtype=np.int64)
        table[cps] = np.arange(len(cps))
        return table

    def to_json(self) -> str:
        return json.dumps({"chars": self.chars}, ensure_ascii=False)

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls(json.loads(Path(path).read_text(encoding="utf-8"))["chars"])


def shown(chars: list[str], most: int = 8, total: int | None = None, *, quote: bool = True) -> str:
    """The first few of `chars` (of `total` in all, if only some are given) for a message,
    quoted so that whitespace shows (names, such as labels, with quote=False)."""
    total = len(chars) if total is None else total
    listed = ", ".join(repr(c) if quote else c for c in chars[:most])
    return listed + (f" and {total - min(most, len(chars))} more" if total > min(most, len(chars)) else "")
