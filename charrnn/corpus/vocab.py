"""`Vocab`: a model's symbols <-> integer ids. The symbols are Unicode code points (a corpus's
sorted by code point; a fine-tuned model's keep its parent's order, with the new text's new
characters after them), or with word tokens the words, likeliest first (see `charrnn.corpus.tokens`).
A capped vocabulary holds UNK, which stands for every symbol it left out.

>>> v = Vocab.from_text("hello")
>>> v.decode(v.encode("hole"))
'hole'
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from charrnn.corpus.tokens import UNK, UNK_TEXT, Tokenizer
from charrnn.errors import UnknownCharacterError
from charrnn.values import Units


class Vocab:
    """`chars` are the symbols in id order (code points, or words with word tokens), and
    `tokenizer` how text is cut into them."""

    def __init__(self, chars: list[str], tokenizer: Tokenizer = Tokenizer()):
        if not all(isinstance(c, str) for c in chars):
            raise ValueError("a vocabulary holds strings")
        if tokenizer.kind == "char" and any(len(c) != 1 for c in chars):
            raise ValueError("a vocabulary of characters holds single code points")
        if any(not c for c in chars):
            raise ValueError("a vocabulary holds no empty symbol")
        if len(set(chars)) != len(chars):
            raise ValueError("a vocabulary holds each symbol once")
        self.chars = list(chars)
        self.tokenizer = tokenizer
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.unk = self.index.get(UNK)  # the id of UNK in a capped vocabulary, else None

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
        return isinstance(other, Vocab) and self.chars == other.chars and self.tokenizer == other.tokenizer

    @property
    def unit(self) -> str:
        """What a symbol is called in messages: character or token."""
        return self.tokenizer.unit

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned integer type that holds every id."""
        n = len(self.chars)
        return np.dtype(np.uint8 if n <= 1 << 8 else np.uint16 if n <= 1 << 16 else np.uint32)

    def unknown(self, text: str) -> list[str]:
        """Symbols of `text` outside the vocabulary, in order of first appearance."""
        return self._missing(self.tokenizer.split(text))

    def _missing(self, tokens: list[str]) -> list[str]:
        return list(dict.fromkeys(c for c in tokens if c not in self.index))

    def unknown_rule(self, unknown: str) -> str:
        """What `unknown` (error | skip | unk | auto) does with this vocabulary: auto is unk
        where the vocabulary has UNK (a capped one), else error."""
        if unknown == "auto":
            return "unk" if self.unk is not None else "error"
        if unknown == "unk" and self.unk is None:
            raise UnknownCharacterError.no_unk()
        return unknown

    def encode(self, text: str, unknown: str = "error", context: str = "text") -> list[int]:
        """Ids of `text`. Symbols outside the vocabulary: `unknown="error"` raises naming them,
        "skip" drops them, "unk" reads them as UNK, "auto" is unk or error (`unknown_rule`)."""
        rule = self.unknown_rule(unknown)
        tokens = self.tokenizer.split(text)
        if rule == "unk":
            return [self.index.get(c, self.unk) for c in tokens]
        missing = self._missing(tokens)
        if missing:
            if rule != "skip":
                raise UnknownCharacterError(missing, context, self.unit)
            tokens = [c for c in tokens if c in self.index]
        return [self.index[c] for c in tokens]

    def units_of(self, text: str, unknown: str, predictions: int) -> Units:
        """How a loss over `predictions` symbols of `text` (encoded with `unknown`) is reported:
        a word model's per token, with the characters of every symbol `encode` keeps (an unknown
        word read as <unk> with its own length), after the first, as the text it predicts."""
        if self.tokenizer.kind != "word":
            return Units()
        rule = self.unknown_rule(unknown)
        kept = [t for t in self.tokenizer.split(text) if rule == "unk" or t in self.index]
        chars = sum(map(len, kept)) - (len(kept[0]) if kept else 0)
        return Units(True, chars / max(1, predictions))

    def extended(self, other: Vocab) -> tuple[Vocab, list[str]]:
        """This vocabulary with the characters of `other` that it lacks appended, so that every
        id it had keeps its character; and those new characters, in `other`'s order."""
        if other.tokenizer != self.tokenizer:
            raise ValueError(
                f"the text is read as {other.tokenizer.describe()} and the model reads {self.tokenizer.describe()}"
            )
        new = [c for c in other.chars if c not in self.index]
        return Vocab(self.chars + new, self.tokenizer), new

    def ids_in(self, other: Vocab) -> np.ndarray:
        """For each id of this vocabulary, the id of the same character in `other` (int64);
        ValueError if `other` lacks some."""
        missing = [c for c in self.chars if c not in other.index]
        if missing:
            raise ValueError(f"{len(missing)} character(s) are not in the other vocabulary: {shown(missing)}")
        return np.array([other.index[c] for c in self.chars], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.shown_chars[int(i)] for i in ids)

    @property
    def shown_chars(self) -> list[str]:
        """The symbols as text shows them: UNK as <unk>."""
        if self.unk is None:
            return self.chars
        return [UNK_TEXT if i == self.unk else c for i, c in enumerate(self.chars)]

    def lookup_table(self) -> np.ndarray:
        """A code point -> id table (-1 where absent), for encoding large texts with numpy."""
        cps = np.fromiter((ord(c) for c in self.chars), dtype=np.int64, count=len(self.chars))
        table = np.full(int(cps.max()) + 1 if len(cps) else 1, -1, dtype=np.int64)
        table[cps] = np.arange(len(cps))
        return table

    def to_json(self) -> str:
        return json.dumps(self.record(), ensure_ascii=False)

    def record(self) -> dict:
        """The vocabulary as JSON holds it; a plain character one as before word tokens."""
        if self.tokenizer.plain:
            return {"chars": self.chars}
        return {"chars": self.chars, "tokens": self.tokenizer.to_dict()}

    @classmethod
    def from_record(cls, d: dict) -> Vocab:
        return cls(d["chars"], Tokenizer.from_dict(d.get("tokens")))

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls.from_record(json.loads(Path(path).read_text(encoding="utf-8")))


def shown(chars: list[str], most: int = 8, total: int | None = None, *, quote: bool = True) -> str:
    """The first few of `chars` (of `total` in all, if only some are given) for a message,
    quoted so that whitespace shows (names, such as labels, with quote=False)."""
    total = len(chars) if total is None else total
    listed = ", ".join(repr(c) if quote else c for c in chars[:most])
    return listed + (f" and {total - min(most, len(chars))} more" if total > min(most, len(chars)) else "")
