"""A language model's checkpoint, typed: every field of the file in one dataclass, with the
defaults an older file takes for what it lacks, and the training state a resumed run goes on
from. Nothing outside this package reads the file's payload by its keys.

    ckpt = read(run_dir / "last.pt")               # a Checkpoint
    ckpt.model_config, ckpt.vocab, ckpt.state.step
    write(Checkpoint(model_config=..., train_config=..., vocab=..., weights=..., state=...), path)

A checkpoint holds the format version, model and train configs, the vocabulary, float32 CPU
weights, optimizer state, step, epoch, data position, carried hidden state, RNG states and
the best validation loss, so it needs nothing beside it.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

import torch

from charrnn.config import ModelConfig, TrainConfig
from charrnn.corpus.documents import eod_text
from charrnn.corpus.tokens import Tokenizer, VocabCap
from charrnn.corpus.vocab import Vocab
from charrnn.errors import BadValueError, CheckpointError, first_line
from charrnn.training.checkpoint import files
from charrnn.values import as_dict

HISTORY_KEPT = 2000  # the newest loss records a checkpoint keeps, for `info`'s sparkline


@dataclass
class TrainState:
    """The training loop's counters and records: the part of a checkpoint, beside weights,
    optimizer and RNG, that a resumed run goes on from (each a top-level field of the file,
    but `offset`, which is in its "data")."""

    step: int = 0
    epoch: int = 0
    offset: int = 0  # characters into every stream where the next window starts
    best_val_loss: float = math.inf
    best_step: int = 0
    val_loss: float = math.nan  # of the latest evaluation
    stale_evals: int = 0  # evaluations since the best one
    elapsed_s: float = 0.0  # seconds of training, counted across resumes
    lr_scale: float = 1.0  # lowered after non-finite steps
    history: list[dict] = field(default_factory=list)  # {"step", "train_loss" or "val_loss"}

    def to_payload(self, cfg: TrainConfig) -> dict:
        counters = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("offset", "history")}
        data = {"offset": self.offset, "batch": self.offset // cfg.seq_len, "batch_size": cfg.batch_size,
                "seq_len": cfg.seq_len}  # fmt: skip
        return {**counters, "data": data, "history": self.history[-HISTORY_KEPT:]}

    @classmethod
    def from_payload(cls, d: dict, seq_len: int) -> TrainState:
        """The state of a checkpoint resumed with windows of `seq_len`; a damaged one is a
        CheckpointError. The history is only a record: entries that are not records are dropped."""
        offset = _data_offset(d.get("data"), seq_len)
        history = d.get("history")
        try:
            counters = {}
            for f in fields(cls):
                if f.name in ("offset", "history"):
                    continue
                cast = int if f.type == "int" else float
                counters[f.name] = cast(d[f.name] if f.name in ("step", "epoch") else d.get(f.name, f.default))
            history = [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []
            return cls(offset=offset, history=history, **counters)
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise damaged_state(e) from None


def damaged_state(e: BaseException) -> CheckpointError:
    return CheckpointError(f"the checkpoint's training state is damaged ({first_line(e)}); it cannot be resumed")


def _data_offset(data, seq_len: int) -> int:
    """Characters into every stream where a resumed run goes on. The offset, not the batch
    index, is what stays true when --seq-len changes between runs; checkpoints that predate
    "offset" held only the batch index, in windows of their own --seq-len."""
    try:
        pos = data["offset"] if "offset" in data else data["batch"] * data.get("seq_len", seq_len)
    except (TypeError, KeyError, AttributeError):
        pos = None
    if not isinstance(pos, int) or pos < 0:
        raise CheckpointError("checkpoint has a malformed 'data' position; it cannot be resumed")
    return pos


# the fields read and written in their own way; every other field of Checkpoint is a top-level
# field of the file under its own name, which a file that lacks it reads as the default
OWN_WAY = ("model_config", "train_config", "vocab", "weights", "state", "payload", "path", "problem")


@dataclass
class Checkpoint:
    """A text-generating model's checkpoint. `state` is None where the training state of the
    file is damaged (the model still samples; resuming says why it cannot)."""

    model_config: ModelConfig  # None only in a checkpoint read to be shown (`read(strict=False)`)
    train_config: TrainConfig  # so too
    vocab: Vocab  # with how text is cut into its symbols ("tokens" in the file); so too
    weights: dict[str, torch.Tensor]  # "model" in the file
    state: TrainState | None = field(default_factory=TrainState)
    optimizer: dict | None = None
    ema: dict | None = None  # --ema's shadow weights, in last.pt (best.pt's weights are the shadow)
    scaler: dict | None = None
    hidden: list | None = None  # the state carried between batches, for the whole batch
    rng: dict | None = None
    precision: str = "?"
    device: str = "?"
    corpus: dict = field(default_factory=dict)  # name, sha256, path, chars, split_sizes, documents, doc_sep, tokens
    parent: dict | None = None  # the model a fine-tuning run started from (finetune.Parent.record)
    auto: dict | None = None  # how --preset auto chose the preset (autopreset.Choice.record)
    path: Path | None = None  # where it was read from
    payload: dict = field(default_factory=dict, repr=False)  # the file as read, for what `info` shows
    problem: CheckpointError | None = field(default=None, repr=False)  # why `state` is None

    @classmethod
    def from_payload(cls, d: dict, path: Path | None = None, *, strict: bool = True) -> Checkpoint:
        """A checkpoint from a file's payload (`files.load`'s): the configs, vocabulary and
        weights must parse (else a CheckpointError; not `strict`, configs that do not are None);
        the training state may be damaged (then None)."""
        mc = _parse(ModelConfig.from_dict, d, "model_config", strict)
        tc = _parse(TrainConfig.from_dict, d, "train_config", strict)
        vocab = _parse(lambda chars: Vocab(chars, Tokenizer.from_dict(d.get("tokens"))), d, "vocab", strict)
        try:
            state, problem = TrainState.from_payload(d, tc.seq_len if tc else 1), None
        except CheckpointError as e:
            state, problem = None, e
        own = {}
        for f in fields(cls):
            if f.name not in OWN_WAY:
                value = d.get(f.name, _default(f))
                own[f.name] = as_dict(value) if f.type == "dict" else value
        return cls(mc, tc, vocab, d["model"], state, path=path, payload=d, problem=problem, **own)

    def to_payload(self) -> dict:
        """The file's payload, every tensor on the CPU, the weights in float32."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in OWN_WAY}
        own["ema"] = None if self.ema is None else {k: w.float() for k, w in self.ema.items()}
        return {
            "model_config": self.model_config.to_dict(),
            "train_config": self.train_config.to_dict(),
            "vocab": self.vocab.chars,
            "tokens": None if self.vocab.tokenizer.plain else self.vocab.tokenizer.to_dict(),
            "model": _to_cpu({name: w.float() for name, w in self.weights.items()}),
            **_to_cpu(own),
            **(self.state or TrainState()).to_payload(self.train_config),
            **files.provenance(),
        }

    def resumable_state(self, seq_len: int) -> TrainState:
        """The training state to go on from with windows of `seq_len` (which places the data of
        a file that predates "offset"), or the CheckpointError that says why there is none."""
        if self.payload:
            return TrainState.from_payload(self.payload, seq_len)
        if self.state is None:
            raise self.problem
        return self.state

    def lightened(self) -> Checkpoint:
        """The checkpoint without what only resuming needs (optimizer, RNG, carried state,
        loss scaler, the weight average), for holding while a page is made of it."""
        heavy = ("optimizer", "rng", "hidden", "scaler", "ema")
        payload = {k: v for k, v in self.payload.items() if k not in heavy}
        return replace(self, optimizer=None, rng=None, hidden=None, scaler=None, ema=None, payload=payload)

    @property
    def step(self):
        """The step it was saved at (as stored, where the training state is damaged)."""
        return self.state.step if self.state is not None else self.payload.get("step")

    @property
    def eod_text(self) -> str:
        return eod_text(self.corpus)

    @property
    def vocab_cap(self) -> VocabCap:
        """The cap the checkpoint's corpus was preprocessed with (none where it had none)."""
        tokens = as_dict(self.corpus.get("tokens"))
        try:
            return VocabCap(tokens.get("max_vocab"), tokens.get("min_count", 1))
        except BadValueError:
            return VocabCap()

    @property
    def history(self) -> list:
        """The loss records, as stored (possibly damaged: `info` skips what is not a record)."""
        return self.payload.get("history") if self.payload else (self.state.history if self.state else [])

    @property
    def corpus_path(self) -> str | None:
        return self.corpus.get("path")


def _default(f):
    return f.default if f.default_factory is MISSING else f.default_factory()


def _parse(build, d: dict, key: str, strict: bool = True):
    try:
        return build(d[key])
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        if not strict:
            return None
        raise CheckpointError(f"checkpoint has a malformed {key!r} ({first_line(e)})") from None


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def read(path: Path, *, strict: bool = True) -> Checkpoint:
    """A text-generating model's checkpoint file, loaded safely and checked (`files.load`).
    Not `strict` (for showing a checkpoint, not using it), configs that do not parse are None."""
    return Checkpoint.from_payload(files.load(path), Path(path), strict=strict)


def write(ckpt: Checkpoint, path: Path) -> None:
    """Write `path` atomically (`files.save`)."""
    files.save(ckpt.to_payload(), path)


def load_model(path: Path, device: torch.device = torch.device("cpu")):
    """(model in eval mode on `device`, vocab, Checkpoint)."""
    from charrnn.model.rnn import CharRNN

    ckpt = read(path)
    try:
        model = CharRNN(ckpt.model_config)
        model.load_state_dict(ckpt.weights)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: weights do not match the model config ({first_line(e)})") from None
    if len(ckpt.vocab) != model.config.vocab_size:
        raise CheckpointError(
            f"{path}: vocabulary of {len(ckpt.vocab)} characters does not match the model's {model.config.vocab_size}"
        )
    return model.to(device).eval(), ckpt.vocab, ckpt
