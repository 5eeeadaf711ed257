"""The option groups, each declared once: every default, bound and help text of the model, of
training, of a corpus, of sampling and of the server lives in its dataclass here.

The command line (`charrnn.cli.options`), the server's request bodies (`charrnn.serve.bodies`)
and Python keyword arguments all derive from these fields, and each dataclass checks its own
values with the same bounds (`check`), so a value is refused the same way wherever it comes from:

    SampleConfig(prime="ROMEO:", length=300, seed=7)
    CorpusOptions(doc_sep="\\n", val_frac=0.05)

Presets, the recipes over these fields, are in `charrnn.training.presets`.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from charrnn.errors import BadValueError
from charrnn.values import is_int, is_number

MAX_SEED = 2**63 - 1  # torch seeds are signed 64-bit
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
LABEL_SOURCES = ("from-dir", "from-file")  # --labels, besides the path of a text<TAB>label file
UNKNOWN_RULES = ("auto", "error", "skip", "unk")  # what --unknown takes (see Vocab.encode)
MAX_DOCUMENT = 10_000  # characters a sampled document is ended at when no max_length is given
WORD_MAX_VOCAB = 10_000  # --max-vocab's default for word tokens
DEFAULT_MAX_EPOCHS = 20  # when a run sets no limit at all it trains this many epochs
DEVICES = ("auto", "cpu", "cuda", "mps")
MAX_LOGPROBS = 20  # the likeliest symbols whose log-probabilities a step can report


# --------------------------------------------------------------------------- how a field is given

SAME = object()  # Opt.shown's default: the command's default is the field's


@dataclass(frozen=True)
class Opt:
    """How a config field is given and checked: its command-line flag and help, and the values
    it takes. Plain data: the CLI and the server build their options and bodies from it."""

    help: str = ""
    flag: str | None = None  # default: --name-with-dashes; "" for a field that is no option
    short: str | None = None
    lo: float | None = None  # bounds; open where lo_open / hi_open
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] = ()
    nonempty: bool = False  # a string that may not be ""
    off: str | None = None  # a flag pair's other half: --tie-embeddings/--untied
    shown: Any = SAME  # the command's own default, where it differs from the field's
    show_default: bool = True
    metavar: str | None = None
    parse: Any = None  # a function of the text given (an escape, a check) -> the field's value

    def name(self, field_name: str) -> str:
        return self.flag if self.flag else f"--{field_name.replace('_', '-')}"


def opt(default: Any, help: str, **kw) -> Any:
    """A config field with its option (`Opt`)."""
    return field(default=default, metadata={"opt": Opt(help, **kw)})


def bound(default: Any, **kw) -> Any:
    """A config field that is checked but is no option of any command."""
    return field(default=default, metadata={"opt": Opt(flag="", **kw)})


def fraction(default: float, help: str, **kw) -> Any:
    """A field that takes a fraction in [0, 1)."""
    return opt(default, help, lo=0, hi=1, hi_open=True, **kw)


def options(cls) -> list[tuple[Any, Opt]]:
    """(field, Opt) of every field of a config dataclass that has one."""
    return [(f, f.metadata["opt"]) for f in fields(cls) if "opt" in f.metadata]


def kind(f) -> tuple[str, bool]:
    """A field's value type (int, float, str, bool, or other) and whether None is allowed,
    from its annotation."""
    parts = [p.strip() for p in str(f.type).split("|")]
    optional = "None" in parts
    base = next((p for p in parts if p != "None"), "None")
    return (base if base in ("int", "float", "str", "bool") else "other"), optional


def describe_bounds(o: Opt, base: str) -> str:
    """The values a field takes, in words: "an integer >= 1", "a number in [0, 1)"."""
    if o.choices:
        return "one of " + ", ".join(o.choices)
    what = {"int": "an integer", "float": "a number", "str": "a non-empty string" if o.nonempty else "text"}
    noun = what.get(base, "a value")
    if o.lo is not None and o.hi is not None:
        return f"{noun} in {'(' if o.lo_open else '['}{o.lo:g}, {o.hi:g}{')' if o.hi_open else ']'}"
    if o.lo is not None:
        return f"{noun} {'>' if o.lo_open else '>='} {o.lo:g}"
    if o.hi is not None:
        return f"{noun} {'<' if o.hi_open else '<='} {o.hi:g}"
    return noun


def ok(value: Any, base: str, optional: bool, o: Opt) -> bool:
    """Whether `value` is one a field of this type and these bounds takes."""
    if value is None:
        return optional
    if base == "bool":
        return isinstance(value, bool)
    if base == "str":
        return isinstance(value, str) and (value in o.choices if o.choices else not (o.nonempty and value == ""))
    if base == "int" and not is_int(value):
        return False
    if base == "float" and not (is_number(value) and math.isfinite(value)):
        return False
    if base not in ("int", "float"):
        return True
    lo_ok = o.lo is None or (value > o.lo if o.lo_open else value >= o.lo)
    hi_ok = o.hi is None or (value < o.hi if o.hi_open else value <= o.hi)
    return lo_ok and hi_ok


def check(config) -> None:
    """Refuse the first field of `config` whose value its Opt does not take: one line that
    names the option, what it takes and what it got."""
    for f, o in options(type(config)):
        base, optional = kind(f)
        value = getattr(config, f.name)
        if not ok(value, base, optional, o):
            raise BadValueError(f"{o.name(f.name) if o.flag != '' else f.name} must be "
                                f"{describe_bounds(o, base)}, not {value!r}")  # fmt: skip


def _names(cls) -> set[str]:
    return {f.name for f in fields(cls)}


def _from_dict(cls, d: dict[str, Any]):
    # Unknown keys are ignored so that a newer checkpoint's extra fields do not break loading.
    return cls(**{k: v for k, v in d.items() if k in _names(cls)})


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = bound(MISSING, lo=1)
    model: str = opt("lstm", "Recurrent cell.", choices=MODEL_TYPES)
    hidden: int = opt(512, "Hidden units per layer.", lo=1)
    layers: int = opt(3, "Recurrent layers.", lo=1)
    dropout: float = fraction(0.0, "Dropout between layers.")  # and before the output layer
    # the output layer: full (one product over the whole vocabulary), or adaptive (the likeliest
    # symbols in a head, the rarer ones in clusters of smaller products: for large vocabularies)
    softmax: str = opt(
        "full",
        "The output layer: full, or adaptive (the 256 likeliest symbols in a head, the rest in smaller clusters: "
        f"faster steps for thousands of symbols); auto is adaptive above {AUTO_ADAPTIVE_VOCAB:,} symbols.",
        choices=("auto", *SOFTMAX_KINDS),
        shown="auto",
    )
    locked_dropout: float = fraction(
        0.0, "Dropout of the input embedding and the last layer's output, one mask per window."
    )
    weight_dropout: float = fraction(0.0, "DropConnect on the recurrent hidden-to-hidden matrices.")
    tie_embeddings: bool = opt(
        False,
        "The output layer's weight is the input embedding (or its own; default: the preset's, else untied).",
        off="--untied",
        show_default=False,
    )
    # A model trained with labels (`charrnn train DIR --labels from-dir`): their names, in id
    # order, and how many documents of each it was trained on (sampling without a label draws
    # one by these counts). The corpus sets both; they are not settings.
    labels: tuple[str, ...] = ()
    label_counts: tuple[int, ...] = ()

    def __post_init__(self):  # a checkpoint's config is checked here too, not only the CLI's options
        check(self)
        if self.softmax not in SOFTMAX_KINDS:
            raise BadValueError(f"--softmax must be one of {', '.join(SOFTMAX_KINDS)}, not {self.softmax!r}")
        if self.softmax == "adaptive" and self.vocab_size <= ADAPTIVE_MIN_VOCAB:
            raise BadValueError(
                f"--softmax adaptive is for vocabularies of more than {ADAPTIVE_MIN_VOCAB} symbols, "
                f"not {self.vocab_size}: a full softmax is as fast there"
            )
        if self.tie_embeddings and self.softmax == "adaptive":
            raise BadValueError(
                "--tie-embeddings needs a full softmax (--softmax full): an adaptive one has no single output matrix"
            )
        # stored as lists in a checkpoint: kept as tuples, so the config stays hashable
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "label_counts", tuple(self.label_counts))
        if not all(isinstance(n, str) and n for n in self.labels) or len(set(self.labels)) != len(self.labels):
            raise BadValueError("labels must be distinct names")
        if len(self.label_counts) != len(self.labels) or not all(is_int(c) and c >= 1 for c in self.label_counts):
            raise BadValueError("label_counts must be a count >= 1 for each label")

    def label_id(self, label: str | None) -> int | None:
        """The id of `label` in a labelled model (which needs one to read text), None for a model
        without labels (which takes none)."""
        from charrnn.corpus.vocab import shown

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


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = opt(64, "Contiguous streams per batch.", lo=1)
    seq_len: int = opt(128, "Characters per truncated-BPTT window.", lo=1)
    lr: float = opt(2e-3, "Peak learning rate.", lo=0, lo_open=True)  # AdamW
    min_lr_frac: float = bound(0.1, lo=0, hi=1)  # the schedule decays to lr * min_lr_frac
    warmup_steps: int = opt(100, "Linear warm-up steps.", lo=0)
    schedule: str = bound("cosine", choices=("cosine", "constant"))
    decay_steps: int | None = opt(
        None,
        "Cosine schedule horizon in steps (default: the run's --max-steps or --time-limit).",
        lo=1,
        show_default=False,
    )
    weight_decay: float = opt(0.0, "AdamW weight decay on matrices.", lo=0.0)  # decoupled
    ema: float = fraction(
        0.0, "Decay of a moving average of the weights that is evaluated and saved as best.pt, 0 = off."
    )
    grad_clip: float = opt(1.0, "Max global gradient norm, 0 = off.", lo=0.0)
    time_limit: float | None = opt(
        None,
        "Stop after this many seconds of training (counted across resumes), then evaluate and save.",
        lo=0,
        lo_open=True,
        metavar="SECONDS",
    )
    max_steps: int | None = opt(None, "Total optimizer steps (counted across resumes).", lo=1)
    max_epochs: float | None = opt(
        None,
        f"Total passes over the training split ({DEFAULT_MAX_EPOCHS} when no limit is set).",
        lo=0,
        lo_open=True,
        show_default=False,
    )
    eval_every: int = opt(500, "Steps between full validation passes, 0 = only at the end.", lo=0)
    checkpoint_every: int = opt(500, "Steps between writes of last.pt, 0 = only at the end.", lo=0)
    sample_every: int | None = opt(
        None,
        "Steps between progress samples, 0 = never (default: a sample at every evaluation).",
        lo=0,
        show_default=False,
    )
    sample_length: int = opt(200, "Characters per progress sample.", lo=1)
    sample_temp: float = opt(0.8, "Temperature of progress samples.", lo=0.0)
    patience: int = opt(0, "Stop after this many evals without a better val loss, 0 = never.", lo=0)
    log_every: int = opt(10, "Steps between metrics.jsonl lines.", lo=1)
    eval_batch_size: int = bound(32, lo=1)  # streams used to evaluate a split
    seed: int = opt(1337, "Seed for weights, dropout and samples.", lo=0, hi=MAX_SEED)
    device: str = opt("auto", "auto picks cuda, then mps, then cpu.", choices=DEVICES)
    precision: str = opt(
        "auto", "auto: bf16 where the hardware is fast at it, else fp32.", choices=("auto", "fp32", "bf16", "fp16")
    )

    def __post_init__(self):
        check(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, d)

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        return replace(self, **{k: v for k, v in overrides.items() if k in _names(TrainConfig)})


# The settings a user chooses: every field but the vocabulary and the labels, which the corpus sets.
MODEL_FIELDS = tuple(sorted(_names(ModelConfig) - {"vocab_size", "labels", "label_counts"}))
SETTINGS = frozenset(MODEL_FIELDS) | _names(TrainConfig)


def default(name: str) -> Any:
    """The default of a ModelConfig or TrainConfig field."""
    for cls in (ModelConfig, TrainConfig):
        for f in fields(cls):
            if f.name == name:
                return f.default
    raise KeyError(name)


# --------------------------------------------------------------------------- the corpus


def _unescape(value: str | None) -> str | None:
    from charrnn.corpus.documents import unescape

    return None if value is None else unescape(value)


def _label_source(value: str | None) -> str | None:
    from pathlib import Path

    if value is not None and value not in LABEL_SOURCES and not Path(value).suffix:
        raise BadValueError(f"must be from-dir, from-file, or the path of a .tsv file, not {value!r}")
    return value


@dataclass(frozen=True)
class CorpusOptions:
    """How input text becomes a corpus: the options of `charrnn preprocess`, which `train`
    takes too for the text it preprocesses on the fly."""

    doc_sep: str | None = opt(
        None,
        "Split each file into documents at this string ('\\n': one a line; '\\n%\\n': fortune files). "
        "\\n, \\t, \\r and \\\\ are read as escapes.",
        show_default=False,
        parse=_unescape,
    )
    labels: str | None = opt(
        None,
        "Label each document: from-dir (its folder), from-file (its file's stem, as in names/French.txt), or "
        "FILE.tsv (text<TAB>label lines, a document each; INPUT may be left out). Samples then take --label.",
        show_default=False,
        metavar="from-dir|from-file|FILE.tsv",
        parse=_label_source,
    )
    tokens: str | None = opt(
        None,
        "The model's symbols: char (code points; the default) or word (words, numbers, punctuation and "
        "whitespace runs; CJK and Thai a character each).",
        choices=("char", "word"),
        show_default=False,
    )
    lowercase: bool = opt(False, "Lowercase the text first (a run from a lowercased model does it anyway).")
    max_vocab: int | None = opt(
        None,
        f"Keep at most this many symbols, the likeliest (default: {WORD_MAX_VOCAB:,} for words, every "
        "character); the rest are read as <unk>.",
        lo=3,
        show_default=False,
    )
    min_count: int | None = opt(
        None,
        "Keep only symbols seen this many times; the rest are read as <unk> (--min-count 3 on CJK text; default 1).",
        lo=1,
        show_default=False,
    )
    val_frac: float = fraction(VAL_FRAC, "Fraction of the text, at its end, held out for validation.")
    test_frac: float = fraction(TEST_FRAC, "Fraction held out for testing, just before the validation split.")
    encoding_errors: str = opt(
        "strict",
        "What to do with bytes that are not UTF-8: strict (refuse), replace (U+FFFD), ignore.",
        choices=("strict", "replace", "ignore"),
    )
    newline: str = opt("keep", "keep line endings as they are, or lf to turn CRLF into LF.", choices=("keep", "lf"))
    force: bool = opt(False, "Accept a file that looks binary.")

    def __post_init__(self):
        check(self)
        if self.val_frac + self.test_frac >= 1:
            raise BadValueError(f"--test-frac must be in [0, 1) and leave some text for training, not {self.test_frac}")

    @property
    def given_tokens(self) -> bool:
        """Whether the options choose the symbols (else a run going on from a model reads text as it did)."""
        return self.tokens is not None or self.lowercase or self.max_vocab is not None or self.min_count is not None


# --------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class SampleConfig:
    """What `charrnn sample` writes: each field is the option of the same name (the command's
    --separator and --device are about where the text goes and what runs it, not the text)."""

    prime: str = opt(
        "", "Text to start from (default: stdin when it is not a terminal).", short="-p", shown=None, show_default=False
    )  # "": as a document starts
    length: int = opt(1000, "New characters (a word model's tokens) per sample.", short="-n", lo=0)
    temp: float = opt(0.8, "Temperature; 0 = always the likeliest character.", short="-t", lo=0.0)
    top_k: int | None = opt(None, "Sample only among the K likeliest characters.", lo=1)
    top_p: float | None = opt(
        None, "Sample from the smallest set of characters whose probability reaches P.", lo=0, hi=1, lo_open=True
    )
    stop: str | None = opt(None, "End a sample when this string appears (it is not printed).", nonempty=True)
    seed: int | None = opt(
        None, "Same seed, same text (default: random).", lo=0, hi=MAX_SEED, show_default=False
    )  # None: a random one
    num_samples: int = opt(1, "Independent samples, generated together.", lo=1)
    # A model trained on documents: write this many whole ones per sample (then `length` does
    # not apply), each starting with the prime, between these lengths in characters, joined by
    # `doc_separator` (None: as the corpus separated them).
    documents: int | None = opt(
        None,
        "A model trained on documents: write N whole ones, each from a document's start (and beginning with "
        "--prime) to its end; --length does not apply.",
        lo=1,
        show_default=False,
    )
    min_length: int | None = opt(None, "With --documents: no document shorter.", lo=0, show_default=False)
    max_length: int | None = opt(
        None, f"With --documents: a document is ended at this length (default {MAX_DOCUMENT:,}).", lo=1,
        show_default=False,
    )  # fmt: skip
    # A model trained with labels: write documents of this label (None: each document's label
    # is drawn by how many documents of each the model was trained on).
    label: str | None = opt(
        None,
        "A model trained with --labels: write text of this label (default: each document's label is drawn by "
        "how many documents of each the model learnt from).",
        nonempty=True,
        show_default=False,
    )
    # prime symbols outside the vocabulary: error | skip | unk (read as <unk>, where the
    # vocabulary is capped) | auto (unk where it is capped, else error)
    unknown: str = opt(
        "auto",
        "Symbols outside the model's vocabulary: error, skip them, or read them as <unk> (a model with "
        "--max-vocab or --min-count); auto is unk with a warning for such a model, else error.",
        choices=UNKNOWN_RULES,
    )
    allow_unk: bool = opt(False, "A model with a capped vocabulary may write <unk> (it never does without).")
    precision: str = opt(
        "fp32",
        "fp32: exact, the same text on every machine; bf16: matrix products in bfloat16, much faster for many "
        "--num-samples on CPUs with AVX512-BF16/AMX and on GPUs, but different text.",
        choices=("fp32", "bf16"),
    )
    doc_separator: str | None = None  # given by the command's --separator
    # For the server's OpenAI routes: more stop strings (a sample ends at the first of any),
    # and the N likeliest symbols' log-probabilities at each step (see `generation.sample.Pieces`)
    stops: tuple[str, ...] = bound(())
    logprobs: int | None = bound(None, lo=0, hi=MAX_LOGPROBS)

    def __post_init__(self):  # the CLI and the server check their options with the same bounds first
        check(self)
        if self.max_length is not None and self.max_length < (self.min_length or 0):
            raise BadValueError(f"--max-length must be >= --min-length, not {self.max_length!r}")
        object.__setattr__(self, "stops", tuple(self.stops) if isinstance(self.stops, (list, tuple)) else self.stops)
        if not (isinstance(self.stops, tuple) and all(isinstance(x, str) and x for x in self.stops)):
            raise BadValueError(f"stop strings must be non-empty text, not {self.stops!r}")


SAMPLE_FIELDS = frozenset(_names(SampleConfig))


# --------------------------------------------------------------------------- serving


@dataclass(frozen=True)
class ServeLimits:
    """What `charrnn serve` accepts before it answers 4xx instead."""

    max_length: int = opt(10_000, "Most characters one request may ask for.", lo=1)
    max_streams: int = opt(64, "Samples written at once (one batched step); more wait.", lo=1)
    max_waiting: int = opt(256, "Requests that may wait for room; more are answered 429.", lo=0, flag="--max-queue")
    max_body: int = opt(64 * 1024, "Largest request body in bytes; larger is answered 413.", lo=64)
    timeout: float = opt(
        10.0,
        "Seconds a client may take to send a request's headers, or its body; a slower one is closed (408).",
        lo=0,
        lo_open=True,
        metavar="SECONDS",
    )
    max_connections: int = opt(1024, "Open connections at most; a request past them is answered 503.", lo=1)

    def __post_init__(self):
        check(self)
