"""Typed configuration: every default of the model, of training and of sampling lives here.

The CLI maps its options one-to-one onto these fields (and shows `default(name)` in its
help); presets are partial overrides of `TrainConfig` and `ModelConfig` fields, and explicit
settings win over them:

    model_cfg, train_cfg = configs(65, "small", {"lr": 0.01})
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from charrnn.corpus.vocab import shown
from charrnn.errors import BadValueError
from charrnn.values import is_int, is_number

MODEL_TYPES = ("lstm", "gru", "rnn")
SOFTMAX_KINDS = ("full", "adaptive")
ADAPTIVE_MIN_VOCAB = 512  # --softmax adaptive needs a vocabulary larger than this
# --softmax auto (a new run's default) is adaptive above this many symbols: on 5,965 Chinese
# characters a full softmax made `small`'s steps 3.3x slower than tiny-shakespeare's 65, an
# adaptive one 1.26x, with a lower loss (benchmarks/word_level.py); the threshold is a judgement
AUTO_ADAPTIVE_VOCAB = 1024
# The corpus's splits: val is the last tenth of the text (nanoGPT's tiny-shakespeare split), and
# there is no test split unless asked for.
VAL_FRAC = 0.1
TEST_FRAC = 0.0
LABELS_SHOWN = 20  # labels a message or summary names


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    model: str = "lstm"  # lstm | gru | rnn
    hidden: int = 512
    layers: int = 3
    dropout: float = 0.0  # between recurrent layers and before the output layer
    # the output layer: full (one product over the whole vocabulary), or adaptive (the likeliest
    # symbols in a head, the rarer ones in clusters of smaller products: for large vocabularies)
    softmax: str = "full"
    locked_dropout: float = 0.0  # on the input embedding and the last layer's output, one mask per window
    weight_dropout: float = 0.0  # DropConnect on the recurrent hidden-to-hidden matrices
    tie_embeddings: bool = False  # the output layer's weight is the input embedding
    # A model trained with labels (`charrnn train DIR --labels from-dir`): their names, in id
    # order, and how many documents of each it was trained on (sampling without a label draws
    # one by these counts). The corpus sets both; they are not settings.
    labels: tuple[str, ...] = ()
    label_counts: tuple[int, ...] = ()

    def __post_init__(self):  # a checkpoint's config is not checked by the CLI's options
        if self.model not in MODEL_TYPES:
            raise ValueError(f"model must be one of {', '.join(MODEL_TYPES)}, not {self.model!r}")
        _positive(self, "vocab_size", "hidden", "layers")
        if self.softmax not in SOFTMAX_KINDS:
            raise ValueError(f"softmax must be one of {', '.join(SOFTMAX_KINDS)}, not {self.softmax!r}")
        if self.softmax == "adaptive" and self.vocab_size <= ADAPTIVE_MIN_VOCAB:
            raise ValueError(
                f"--softmax adaptive is for vocabularies of more than {ADAPTIVE_MIN_VOCAB} symbols, "
                f"not {self.vocab_size}: a full softmax is as fast there"
            )
        for name in ("dropout", "locked_dropout", "weight_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), not {getattr(self, name)!r}")
        if self.tie_embeddings and self.softmax == "adaptive":
            raise ValueError(
                "--tie-embeddings needs a full softmax (--softmax full): an adaptive one has no single output matrix"
            )
        # stored as lists in a checkpoint: kept as tuples, so the config stays hashable
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "label_counts", tuple(self.label_counts))
        if not all(isinstance(n, str) and n for n in self.labels) or len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be distinct names")
        if len(self.label_counts) != len(self.labels) or not all(is_int(c) and c >= 1 for c in self.label_counts):
            raise ValueError("label_counts must be a count >= 1 for each label")

    def label_id(self, label: str | None) -> int | None:
        """The id of `label` in a labelled model (which needs one to read text), None for a model
        without labels (which takes none)."""
        if not self.labels:
            if label is not None:
                raise BadValueError("--label needs a model trained with labels (charrnn train ... --labels)")
            return None
        listed = shown(list(self.labels), LABELS_SHOWN, quote=False)
        if label is None:
            raise BadValueError(f"the model was trained with labels: name one with --label ({listed})")
        if label not in self.labels:
            raise BadValueError(f"--label {label!r} is not one of the model's labels: {listed}")
        return self.labels.index(label)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {**d, "labels": list(self.labels), "label_counts": list(self.label_counts)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, d)


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 64  # contiguous streams per batch
    seq_len: int = 128  # truncated-BPTT window in characters
    lr: float = 2e-3  # peak learning rate (AdamW)
    min_lr_frac: float = 0.1  # the schedule decays to lr * min_lr_frac
    warmup_steps: int = 100
    schedule: str = "cosine"  # cosine | constant
    decay_steps: int | None = None  # cosine horizon in steps (default: the run's step or time limit)
    weight_decay: float = 0.0  # decoupled (AdamW), applied to matrices only
    ema: float = 0.0  # decay of the weights' moving average that is evaluated and saved as best.pt; 0: off
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    max_steps: int | None = None  # total optimizer steps, counted across resumes
    max_epochs: float | None = None  # total passes over the training split
    time_limit: float | None = None  # total seconds of training, counted across resumes
    eval_every: int = 500  # steps between full-validation evaluations (0: only at the end)
    checkpoint_every: int = 500  # steps between writes of last.pt (0: only at the end)
    sample_every: int | None = None  # steps between progress samples (None: at every evaluation; 0: never)
    sample_length: int = 200
    sample_temp: float = 0.8
    log_every: int = 10  # steps between metrics.jsonl lines
    patience: int = 0  # stop after this many evals without improvement (0: never)
    eval_batch_size: int = 32  # streams used to evaluate a split
    seed: int = 1337
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self):
        _positive(self, "batch_size", "seq_len", "eval_batch_size", "sample_length")
        if not (is_number(self.ema) and 0 <= self.ema < 1):
            raise ValueError(f"ema must be in [0, 1), not {self.ema!r}")
        if not (is_number(self.sample_temp) and 0 <= self.sample_temp < math.inf):
            raise ValueError(f"sample_temp must be a number >= 0, not {self.sample_temp!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, d)

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        return replace(self, **{k: v for k, v in overrides.items() if k in _names(TrainConfig)})


UNKNOWN_RULES = ("auto", "error", "skip", "unk")  # what --unknown takes (see Vocab.encode)
MAX_DOCUMENT = 10_000  # characters a sampled document is ended at when no max_length is given


@dataclass(frozen=True)
class SampleConfig:
    """What `charrnn sample` writes: each field is the option of the same name (the command's
    --separator and --device are about where the text goes and what runs it, not the text)."""

    prime: str = ""  # text to start from ("": as a document starts)
    length: int = 1000  # new characters per sample
    temp: float = 0.8  # 0: always the likeliest character
    top_k: int | None = None
    top_p: float | None = None
    stop: str | None = None  # a sample ends where this appears (without it)
    seed: int | None = None  # None: a random one
    num_samples: int = 1
    # prime symbols outside the vocabulary: error | skip | unk (read as <unk>, where the
    # vocabulary is capped) | auto (unk where it is capped, else error)
    unknown: str = "auto"
    allow_unk: bool = False  # a capped vocabulary's <unk> may be written (else it is never drawn)
    precision: str = "fp32"  # fp32 | bf16 matrix products
    # A model trained on documents: write this many whole ones per sample (then `length` does
    # not apply), each starting with the prime, between these lengths in characters, joined by
    # `doc_separator` (None: as the corpus separated them).
    documents: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    doc_separator: str | None = None
    # A model trained with labels: write documents of this label (None: each document's label
    # is drawn by how many documents of each the model was trained on).
    label: str | None = None

    def __post_init__(self):  # the CLI checks its options itself; Python callers meet these
        checks = [
            ("length", is_int(self.length) and self.length >= 0, "a count >= 0"),
            ("temp", isinstance(self.temp, (int, float)) and 0 <= self.temp < float("inf"), "a number >= 0"),
            ("top-k", self.top_k is None or (is_int(self.top_k) and self.top_k >= 1), "a count >= 1"),
            (
                "top-p",
                self.top_p is None or (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1),
                "in (0, 1]",
            ),
            ("num-samples", is_int(self.num_samples) and self.num_samples >= 1, "a count >= 1"),
            ("unknown", self.unknown in UNKNOWN_RULES, "one of " + ", ".join(UNKNOWN_RULES)),
            ("precision", self.precision in ("fp32", "bf16"), "fp32 or bf16"),
            ("documents", self.documents is None or (is_int(self.documents) and self.documents >= 1), "a count >= 1"),
            ("label", self.label is None or (isinstance(self.label, str) and self.label != ""), "a label's name"),
            ("min-length", self.min_length is None or (is_int(self.min_length) and self.min_length >= 0), "a count"),
            (
                "max-length",
                self.max_length is None
                or (is_int(self.max_length) and self.max_length >= max(1, self.min_length or 0)),
                "a count >= 1 and >= --min-length",
            ),
        ]
        for name, ok, valid in checks:
            if not ok:
                value = getattr(self, name.replace("-", "_"))
                raise BadValueError(f"--{name} must be {valid}, not {value!r}")


@dataclass(frozen=True)
class ServeLimits:
    """What `charrnn serve` accepts before it answers 4xx instead."""

    max_length: int = 10_000  # characters one request may ask for
    max_streams: int = 64  # samples written at once, in one batched step; more wait
    max_waiting: int = 256  # requests waiting for room; more are answered 429
    max_body: int = 64 * 1024  # bytes of a request body; more is answered 413


@dataclass(frozen=True)
class ClassifierSettings:
    """Everything `charrnn classify train` takes besides the data; the defaults are its defaults."""

    model: str = "lstm"
    hidden: int = 64
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    batch_size: int = 64
    lr: float = 5e-3
    max_epochs: int = 3  # the tutorial-sized data set (17k words) takes about 7 s on the 2-core CPU
    time_limit: float | None = None  # seconds of training
    patience: int = 3  # epochs without a better val accuracy before stopping
    seed: int = 1337
    balance: bool = False  # weight the loss by 1 / label frequency
    val_frac: float = 0.1
    max_length: int = 256  # characters of a text read; longer ones are cut (with a warning)
    device: str = "auto"
    precision: str = "fp32"

    def __post_init__(self):
        checks = {
            "hidden": self.hidden >= 1,
            "layers": self.layers >= 1,
            "batch-size": self.batch_size >= 1,
            "lr": 0 < self.lr <= 10,
            "max-epochs": self.max_epochs >= 1,
            "patience": self.patience >= 1,
            "max-length": self.max_length >= 1,
            "dropout": 0 <= self.dropout < 1,
            "val-frac": 0 < self.val_frac < 1,
            "time-limit": self.time_limit is None or (self.time_limit > 0 and math.isfinite(self.time_limit)),
        }
        for name, ok in checks.items():
            if not ok:
                raise BadValueError(f"--{name}: {getattr(self, name.replace('-', '_'))!r} is out of range")
        if self.model not in MODEL_TYPES:
            raise BadValueError(f"--model must be one of {', '.join(MODEL_TYPES)}, not {self.model!r}")
        if self.precision != "fp32":
            raise BadValueError("--precision: a classifier trains in fp32 (it is small; bf16 buys nothing here)")


# When a run sets no limit at all it trains this many epochs.
DEFAULT_MAX_EPOCHS = 20


def _positive(config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not is_int(value) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")


def _names(cls) -> set[str]:
    return {f.name for f in fields(cls)}


def _from_dict(cls, d: dict[str, Any]):
    # Unknown keys are ignored so that a newer checkpoint's extra fields do not break loading.
    return cls(**{k: v for k, v in d.items() if k in _names(cls)})


# The settings a user chooses: every field but the vocabulary and the labels, which the corpus sets.
MODEL_FIELDS = tuple(sorted(_names(ModelConfig) - {"vocab_size", "labels", "label_counts"}))
SETTINGS = frozenset(MODEL_FIELDS) | _names(TrainConfig)
SAMPLE_FIELDS = frozenset(_names(SampleConfig))


def default(name: str) -> Any:
    """The default of a ModelConfig or TrainConfig field."""
    for cls in (ModelConfig, TrainConfig):
        for f in fields(cls):
            if f.name == name:
                return f.default
    raise KeyError(name)


# Named presets: partial overrides of ModelConfig and TrainConfig fields. Explicit flags win.
# tiny to large were tuned on tiny-shakespeare on a 2-core CPU (benchmarks/README.md has the
# log): for a fixed wall-clock budget, many small steps beat few large ones. xl was tuned on an
# H200, where tiny-shakespeare is an epoch a second: it needs strong regularisers and a horizon
# in epochs (60) rather than the whole time limit, past which the val loss only rises.
# fmt: off
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden=128, layers=2, dropout=0.0, batch_size=32, seq_len=32, lr=5e-3, warmup_steps=50,
                 weight_decay=0.1, tie_embeddings=True, ema=0.999, eval_every=2500),
    "small": dict(hidden=256, layers=2, dropout=0.1, batch_size=16, seq_len=64, lr=5e-3, warmup_steps=50,
                  weight_decay=0.1, tie_embeddings=True, ema=0.999, eval_every=2500),
    "medium": dict(hidden=512, layers=2, dropout=0.25, batch_size=32, seq_len=64, lr=4e-3, warmup_steps=100,
                   min_lr_frac=0.02, weight_decay=0.2, eval_every=2000),
    "large": dict(hidden=512, layers=3, dropout=0.2, batch_size=64, seq_len=128, lr=2e-3, warmup_steps=200,
                  eval_every=1000),
    "xl": dict(hidden=768, layers=3, dropout=0.4, locked_dropout=0.1, weight_dropout=0.2, batch_size=64,
               seq_len=128, lr=2e-3, warmup_steps=200, weight_decay=0.1, max_epochs=60, eval_every=200),
}
# fmt: on


# Fine-tuning (`charrnn train NEW.txt --init-from RUN`): the parent's own recipe, with a peak
# learning rate this fraction of the parent's and a warm-up of this many steps, so the first
# steps do not undo what the model knows; explicit flags win over both.
FINETUNE_LR_FRAC = 0.3
FINETUNE_WARMUP_STEPS = 20
# The parent's settings that a fine-tuning run starts from a clean slate on: its own limits,
# its own horizon, and where it runs.
FINETUNE_FRESH = ("max_steps", "max_epochs", "time_limit", "decay_steps", "device", "precision")
# what a checkpoint fixes (dropout may change)
ARCHITECTURE = ("model", "hidden", "layers", "softmax", "tie_embeddings")


def finetune_config(parent: TrainConfig, settings: dict[str, Any]) -> TrainConfig:
    """The train config of a run that starts from a model trained with `parent`: its recipe at
    a lower rate and a shorter warm-up, then the explicit `settings` over it."""
    recipe = replace(
        parent,
        lr=parent.lr * FINETUNE_LR_FRAC,
        warmup_steps=FINETUNE_WARMUP_STEPS,
        **{name: default(name) for name in FINETUNE_FRESH},
    )
    return recipe.with_overrides(settings)


def preset_settings(name: str) -> dict[str, Any]:
    """Every setting a preset leads to: its own values over the defaults."""
    return {**{n: default(n) for n in SETTINGS}, **PRESETS[name]}


def configs(vocab_size: int, preset: str | None, settings: dict[str, Any]) -> tuple[ModelConfig, TrainConfig]:
    """The configs of a new run: the preset's values, then the explicit `settings` over them
    (`preset` "auto" must already be resolved by `auto_preset`)."""
    merged = {**(PRESETS[preset] if preset else {}), **settings}
    if merged.get("softmax", "auto") == "auto":
        merged["softmax"] = "adaptive" if vocab_size > AUTO_ADAPTIVE_VOCAB else "full"
        if merged["softmax"] == "adaptive" and "tie_embeddings" not in settings:
            merged["tie_embeddings"] = False  # a preset's tied embeddings give way to the faster output layer
    return ModelConfig.from_dict({**merged, "vocab_size": vocab_size}), TrainConfig().with_overrides(merged)


def auto_preset(time_limit: float | None, device_type: str) -> str:
    """The preset by the time limit alone: xl on CUDA (tuned there), large without a limit. With
    a limit on the CPU, `--preset auto` measures instead (`charrnn.training.autopreset`); this rule is
    left for the processes of a data-parallel run started without the launcher's choice."""
    if device_type == "cuda":
        return "xl"
    if time_limit is None:
        return "large"
    if time_limit <= 120:
        return "small"
    if time_limit <= 3600:  # at 1200 s on a 2-core CPU medium led large by 0.07 nats (benchmarks/README.md)
        return "medium"
    return "large"
