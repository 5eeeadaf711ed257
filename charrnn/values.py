"""Checks of plain values read from files a user may have edited or damaged (meta.json,
metrics.jsonl, a checkpoint's descriptive fields), and the one unit conversion the
figures need.

    >>> is_int(True), is_count(3), is_number(float("nan")), round(bits(1.0), 4)
    (False, True, True, 1.4427)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LN2 = math.log(2)


def bits(nats: float) -> float:
    """A loss in nats per character as bits per character."""
    return nats / LN2


def is_int(v) -> bool:
    """An integer that is not a bool (JSON and Python both let True pass as 1)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_count(v) -> bool:
    return is_int(v) and v >= 0


def is_number(v) -> bool:
    """A number that float() takes: not a bool, not an integer beyond a float's range."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        float(v)
    except OverflowError:
        return False
    return True


def as_dict(v) -> dict:
    """`v` where it is a dict, else an empty one: for descriptive fields that nothing checks."""
    return v if isinstance(v, dict) else {}


def number(value, spec: str = "") -> str:
    """A number formatted by `spec`, or "?" for a missing or damaged one."""
    return format(value, spec) if is_number(value) else "?"


@dataclass(frozen=True)
class Units:
    """How a mean loss per symbol is reported: a character model's in nats and bits per
    character; a word model's in nats per token with its perplexity (the units of word-level
    language models), and in bits per character of the text the tokens stand for, which
    compares with a character model's. `chars_per_token` is that text's (None: unknown)."""

    word: bool = False
    chars_per_token: float | None = None

    @classmethod
    def of(cls, corpus: dict | None, split: str = "val") -> Units:
        """The units of a corpus's split, from its meta.json or a checkpoint's record of it."""
        corpus = as_dict(corpus)
        tokens = as_dict(corpus.get("tokens"))
        if tokens.get("kind") != "word":
            return cls()
        chars = as_dict(tokens.get("split_chars")).get(split)
        size = as_dict(corpus.get("split_sizes")).get(split)
        ok = is_number(chars) and is_number(size) and chars > 0 and size > 0
        return cls(True, chars / size if ok else None)

    @property
    def per(self) -> str:
        return "token" if self.word else "char"

    def bpc(self, nats: float) -> float | None:
        """Bits per character of the text (None where a word model's text length is unknown)."""
        if not self.word:
            return bits(nats)
        return None if self.chars_per_token is None else bits(nats) / self.chars_per_token

    def describe(self, nats: float) -> str:
        """'1.2345 nats/char (1.7810 bits/char)', or for words
        '4.5678 nats/token, perplexity 96.4 (1.5432 bits/char)'."""
        if not is_number(nats):
            return f"? nats/{self.per}"
        bpc = self.bpc(nats)
        tail = f" ({bpc:.4f} bits/char)" if bpc is not None else ""
        if not self.word:
            return f"{nats:.4f} nats/char{tail}"
        return f"{nats:.4f} nats/token, perplexity {perplexity(nats):,.1f}{tail}"


def perplexity(nats: float) -> float:
    """exp of a mean loss in nats per token: the number of equally likely tokens it amounts to."""
    return math.exp(min(nats, 700.0))
