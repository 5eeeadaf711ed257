"""What a model's symbols are: characters (the default), or words; and the vocabulary cap.

    charrnn train corpus.txt --tokens word --max-vocab 8000     # a word-level model
    charrnn train tang.txt --min-count 3                          # characters, rare ones as <unk>

The word tokenizer cuts text into runs, and the runs joined give back the text exactly, so
sampled tokens are written out as they are:

- a word: letters of any script, with the combining marks that follow them (`café`, `किताब`);
- a number: a run of digits (`1564`);
- a run of whitespace (`" "`, `"\\n\\n"`, `"\\t  "`);
- a CJK ideograph, kana or Thai... character (scripts written without spaces): one token each;
- any other character (punctuation, a symbol, an emoji), with the marks that follow it: one token each.

>>> Tokenizer("word").split("Hello,  wörld 42!")
['Hello', ',', '  ', 'wörld', ' ', '42', '!']

With a cap (`--max-vocab`, `--min-count`), the symbols left out of the vocabulary are all read
as one symbol, UNK, a Unicode noncharacter that no exchanged text holds; text shows it as `<unk>`.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache

from charrnn.config import WORD_MAX_VOCAB
from charrnn.errors import BadValueError
from charrnn.values import is_int

TOKEN_KINDS = ("char", "word")
UNK = "\ufdd1"  # the symbol of everything outside a capped vocabulary (EOD is U+FDD0)
_SPECIAL = "\ufdd0\ufdd1"  # EOD and UNK: a token each, whatever follows
UNK_TEXT = "<unk>"  # how text shows it

# Scripts written without spaces between words: each character is a token.
_NO_SPACES = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # halfwidth Katakana
    "\U00020000-\U0003134f"  # CJK extensions B-G
)


def _is_mark(c: int) -> bool:
    return unicodedata.category(chr(c)).startswith("M")


def _ranges(test) -> Iterator[tuple[int, int]]:
    """The runs of consecutive code points that pass `test`, as (first, last)."""
    start = None
    for c in range(sys.maxunicode + 2):
        inside = c <= sys.maxunicode and test(c)
        if inside and start is None:
            start = c
        elif not inside and start is not None:
            yield start, c - 1
            start = None


@cache
def _pattern() -> re.Pattern:
    """The word tokenizer's pattern, built once (it lists every combining mark of Unicode)."""
    marks = "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in _ranges(_is_mark))
    letter = rf"[^\W\d_{_NO_SPACES}{_SPECIAL}]"  # \w less digits, the underscore and the scripts above
    return re.compile(
        rf"[{_SPECIAL}]"
        rf"|[{_NO_SPACES}][{marks}]*"
        rf"|(?:{letter}[{marks}]*)+"
        rf"|\d+"
        rf"|\s+"
        rf"|.[{marks}]*",
        re.DOTALL,
    )


@dataclass(frozen=True)
class Tokenizer:
    """How text becomes a model's symbols: `kind` char (each code point) or word (see the
    module's docstring), after lowercasing with `lowercase`."""

    kind: str = "char"
    lowercase: bool = False

    def __post_init__(self):
        if self.kind not in TOKEN_KINDS:
            raise BadValueError(f"--tokens must be {' or '.join(TOKEN_KINDS)}, not {self.kind!r}")
        if not isinstance(self.lowercase, bool):
            raise ValueError(f"lowercase must be true or false, not {self.lowercase!r}")

    @property
    def plain(self) -> bool:
        """Code points as they are: the fast path, and the only one before word tokens."""
        return self.kind == "char" and not self.lowercase

    def describe(self) -> str:
        """'characters', 'lowercased words'...: for messages."""
        return ("lowercased " if self.lowercase else "") + ("characters" if self.kind == "char" else "words")

    def normalized(self, text: str) -> str:
        """The text as the tokens read it (lowercased, if asked)."""
        return text.lower() if self.lowercase else text

    @property
    def unit(self) -> str:
        """What a symbol is called in messages."""
        return "character" if self.kind == "char" else "token"

    def split(self, text: str) -> list[str]:
        """The tokens of `text` (lowercased first, if asked); joined, they are that text."""
        text = self.normalized(text)
        if self.kind == "char":
            return list(text)
        return _pattern().findall(text)

    def stream(self, chunks: Iterable[str]) -> Iterator[list[str]]:
        """The tokens of text that comes in chunks, a list per chunk: a token cut by a chunk's
        end is held back and read with the next chunk, so the tokens are those of the whole text."""
        if self.kind == "char":
            for chunk in chunks:
                yield self.split(chunk)
            return
        held = ""
        for chunk in chunks:
            tokens = self.split(held + chunk)
            held = tokens.pop() if tokens else ""
            if tokens:
                yield tokens
        if held:
            yield [held]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, d) -> Tokenizer:
        """A checkpoint's or corpus's record; none (written before word tokens) is characters."""
        if d is None:
            return cls()
        if not isinstance(d, dict) or d.get("kind", "char") not in TOKEN_KINDS:
            raise ValueError("the tokenizer record is not a known kind of tokens")
        return cls(kind=d.get("kind", "char"), lowercase=d.get("lowercase", False))


@dataclass(frozen=True)
class VocabCap:
    """Which symbols a corpus's vocabulary keeps: at most `max_vocab` (special symbols
    included; None: no cap), each seen at least `min_count` times."""

    max_vocab: int | None = None
    min_count: int = 1

    def __post_init__(self):
        if self.max_vocab is not None and not (is_int(self.max_vocab) and self.max_vocab >= 3):
            raise BadValueError(f"--max-vocab must be at least 3, not {self.max_vocab!r}")
        if not (is_int(self.min_count) and self.min_count >= 1):
            raise BadValueError(f"--min-count must be at least 1, not {self.min_count!r}")

    @property
    def capped(self) -> bool:
        return self.max_vocab is not None or self.min_count > 1

    def keep(self, counts: dict[str, int], always: Iterable[str] = ()) -> tuple[list[str], bool]:
        """The symbols kept of those counted (the likeliest first, ties in symbol order; the
        `always` ones whatever their counts), and whether any were left out (then UNK is needed)."""
        always = [s for s in always if s in counts]
        order = sorted((s for s in counts if s not in always), key=lambda s: (-counts[s], s))
        kept = [s for s in order if counts[s] >= self.min_count]
        room = None if self.max_vocab is None else self.max_vocab - len(always)
        dropped = len(kept) < len(order)
        if room is not None and len(kept) > room:
            kept, dropped = kept[:room], True
        if dropped and room is not None and len(kept) >= room:
            kept = kept[: room - 1]  # UNK takes a place of its own
        return always + kept, dropped


def cap_flags(record: dict) -> list[str]:
    """The options a corpus's vocabulary was capped with, from its record (meta.json's
    "tokens", or a checkpoint's copy of it, which may be damaged: what is not a count is left out)."""
    flags = [f"--max-vocab {record['max_vocab']:,}"] if is_int(record.get("max_vocab")) else []
    min_count = record.get("min_count")
    return flags + ([f"--min-count {min_count}"] if is_int(min_count) and min_count > 1 else [])


def coverage(counts: dict[str, int], kept: Iterable[str]) -> float:
    """The share of the text's tokens that are in the vocabulary."""
    total = sum(counts.values())
    return sum(counts.get(s, 0) for s in kept) / total if total else 1.0


def settings(
    kind: str | None = None,
    lowercase: bool | None = None,
    max_vocab: int | None = None,
    min_count: int | None = None,
    like: Tokenizer | None = None,
    like_cap: VocabCap | None = None,
) -> tuple[Tokenizer, VocabCap]:
    """The tokenizer and cap that the options --tokens, --lowercase, --max-vocab and --min-count
    ask for; those left out (None) are `like`'s and `like_cap`'s (a model's being resumed or
    fine-tuned), else characters as they are. Word tokens are capped at WORD_MAX_VOCAB unless
    --max-vocab says otherwise."""
    like = like or Tokenizer()
    tokenizer = Tokenizer(kind or like.kind, like.lowercase if lowercase is None else lowercase)
    same = like_cap is not None and tokenizer == like
    if max_vocab is None:
        max_vocab = like_cap.max_vocab if same else WORD_MAX_VOCAB if tokenizer.kind == "word" else None
    if min_count is None:
        min_count = like_cap.min_count if same else 1
    return tokenizer, VocabCap(max_vocab, min_count)


def chosen_tokens(
    options, like: Tokenizer | None = None, like_cap: VocabCap | None = None
) -> tuple[Tokenizer, VocabCap]:
    """The (tokenizer, cap) that a `CorpusOptions` asks for (see `settings`)."""
    return settings(options.tokens, options.lowercase or None, options.max_vocab, options.min_count, like, like_cap)
