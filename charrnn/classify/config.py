"""The options of `charrnn classify train`, declared once (the command's flags and a Python
caller's keyword arguments both come from these fields, and the same bounds check them), and
the shape of the network they build.

    ClassifierSettings(hidden=128, time_limit=60)
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any

from charrnn.config import DEVICES, MAX_SEED, MODEL_TYPES, bound, check, fraction, opt


@dataclass(frozen=True)
class ClassifierSettings:
    """Everything `charrnn classify train` takes besides the data; the defaults are its defaults."""

    model: str = opt("lstm", "Recurrent cell.", choices=MODEL_TYPES)
    hidden: int = opt(64, "Units per layer and direction.", lo=1)
    layers: int = opt(1, "Recurrent layers.", lo=1)
    bidirectional: bool = opt(False, "Read the text both ways, or left to right.", off="--one-way")
    dropout: float = fraction(0.0, "Dropout between layers.")
    batch_size: int = opt(64, "Texts per batch.", short="-b", lo=1)
    lr: float = opt(5e-3, "AdamW rate.", lo=0, hi=10, lo_open=True)
    # the tutorial-sized data set (17k words) takes about 7 s on the 2-core CPU
    max_epochs: int = opt(3, "Passes over the training texts.", lo=1)
    time_limit: float | None = opt(None, "Seconds of training at most.", lo=0, lo_open=True)
    patience: int = opt(3, "Epochs without a better val accuracy before stopping.", lo=1)
    seed: int = opt(1337, "Seed for weights, dropout and samples.", lo=0, hi=MAX_SEED)
    balance: bool = opt(False, "Weight the loss by 1/label frequency (skewed labels).")
    val_frac: float = opt(0.1, "Held out, per label.", lo=0, hi=1, lo_open=True, hi_open=True)
    max_length: int = opt(256, "Characters read of each text; longer ones are cut.", lo=1)
    device: str = opt("auto", "auto picks cuda, then mps, then cpu.", choices=DEVICES)
    precision: str = opt("fp32", "Classifiers train in fp32.", choices=("fp32",))

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

    def __post_init__(self):
        check(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
