"""The options of `charrnn classify train`, declared once (the command's flags and a Python
caller's keyword arguments both come from these fields, and the same bounds check them), and
the shape of the network they build.

    ClassifierSettings(hidden=128, time_limit=60)
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any

from charrnn.config import DEVICES, MAX_SEED, MODEL_TYPES, bound, check, fraction, opt

DEFAULT_EPOCHS = 10  # the cap of a run given neither --max-epochs nor --time-limit
# what `predict` and `eval` do with characters training never saw (see Vocab.encode); auto reads
# them as the unknown symbol, or leaves them out with a checkpoint from before it had one
UNKNOWN_RULES = ("auto", "unk", "skip", "error")
MAX_NGRAM = 8  # the longest n-gram the bag may read


@dataclass(frozen=True)
class ClassifierSettings:
    """Everything `charrnn classify train` takes besides the data; the defaults are its defaults."""

    model: str = opt("lstm", "Recurrent cell.", choices=MODEL_TYPES)
    hidden: int = opt(64, "Units per layer and direction.", lo=1)
    layers: int = opt(1, "Recurrent layers.", lo=1)
    bidirectional: bool = opt(False, "Read the text both ways, or left to right.", off="--one-way")
    dropout: float = fraction(0.0, "Dropout between layers.")
    ngrams: int = opt(
        4,
        "Also read the text's character n-grams up to this length, hashed into --buckets rows of label "
        "scores added to the recurrent model's (0: the recurrent model alone).",
        lo=0,
        hi=MAX_NGRAM,
    )
    buckets: int = opt(1 << 18, "Rows the n-grams are hashed into.", lo=1, hi=1 << 24)
    batch_size: int = opt(64, "Texts per batch.", short="-b", lo=1)
    lr: float = opt(5e-3, "AdamW rate.", lo=0, hi=10, lo_open=True)
    max_epochs: int | None = opt(
        None,
        f"Passes over the training texts at most (default: {DEFAULT_EPOCHS}, or no cap with --time-limit).",
        lo=1,
        show_default=False,
    )
    time_limit: float | None = opt(
        None, "Seconds of training at most; alone, it trains until they are up.", lo=0, lo_open=True
    )
    patience: int = opt(3, "Epochs without a better val accuracy before stopping.", lo=1)
    min_count: int = opt(
        2,
        "Characters seen fewer times in the training texts are read as the unknown symbol, which then "
        "stands for the characters a text to label holds that training never saw.",
        lo=1,
    )
    seed: int = opt(1337, "Seed for weights, dropout and samples.", lo=0, hi=MAX_SEED)
    balance: bool = opt(False, "Weight the loss by 1/label frequency (skewed labels).")
    val_frac: float = opt(0.1, "Held out, per label.", lo=0, hi=1, lo_open=True, hi_open=True)
    max_length: int = opt(256, "Characters read of each text; longer ones are cut.", lo=1)
    device: str = opt("auto", "auto picks cuda, then mps, then cpu.", choices=DEVICES)
    precision: str = opt("fp32", "Classifiers train in fp32.", choices=("fp32",))

    def __post_init__(self):
        check(self)

    @property
    def epoch_cap(self) -> int | None:
        """The epochs the run may take at most: --max-epochs where given, none with --time-limit
        alone, else the default."""
        if self.max_epochs is not None:
            return self.max_epochs
        return None if self.time_limit is not None else DEFAULT_EPOCHS


@dataclass(frozen=True)
class ClassifierReading:
    """How `classify predict` and `classify eval` read texts."""

    unknown: str = opt(
        "auto",
        "Characters training never saw: unk reads them as the unknown symbol, skip leaves them out, error "
        "refuses the text; auto is unk (skip for a classifier trained before it had the symbol).",
        choices=UNKNOWN_RULES,
    )

    def __post_init__(self):
        check(self)


@dataclass(frozen=True)
class ClassifierConfig:
    """The classifier network's shape, as its checkpoint stores it."""

    vocab_size: int = bound(MISSING, lo=1)
    labels: int = bound(MISSING, lo=1)
    model: str = bound("lstm", choices=MODEL_TYPES)
    hidden: int = bound(64, lo=1)
    layers: int = bound(1, lo=1)
    bidirectional: bool = bound(False)
    dropout: float = bound(0.0, lo=0, hi=1, hi_open=True)  # between layers and before the output layer
    ngrams: int = bound(0, lo=0, hi=MAX_NGRAM)  # the longest character n-gram of the bag; 0: no bag
    buckets: int = bound(0, lo=0)  # rows the n-grams are hashed into

    def __post_init__(self):
        check(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
