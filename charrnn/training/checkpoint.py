"""The one owner of the checkpoint file: its schema, atomic writes, safe loads, what `info`
and `report` show of it, and the rules of resuming from it.

    save(state.to_payload(model_config=..., train_config=..., ...), run_dir / "last.pt")
    ckpt = load(run_dir / "last.pt")               # a validated dict
    state = TrainState.from_payload(ckpt, seq_len=128)

A checkpoint holds the format version, model and train configs, the vocabulary,
float32 CPU weights, optimizer state, step, epoch, data position, carried hidden
state, RNG states and the best validation loss, so it needs nothing beside it.
Loading uses `torch.load(weights_only=True)`: a checkpoint is data, never code.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from charrnn import __version__
from charrnn.config import MODEL_FIELDS, ModelConfig, TrainConfig
from charrnn.corpus.documents import EOD_TEXT
from charrnn.corpus.tokens import Tokenizer, VocabCap, cap_flags
from charrnn.corpus.vocab import Vocab, shown
from charrnn.errors import BadValueError, CheckpointError, TrainingError, first_line, os_reason
from charrnn.values import Units, as_dict, is_number, number

FORMAT = "charrnn-checkpoint"
VERSION = 1
HISTORY_KEPT = 2000  # the newest loss records a checkpoint keeps, for `info`'s sparkline

# --------------------------------------------------------------------------- the schema


@dataclass
class TrainState:
    """The training loop's counters and records: the part of a checkpoint, beside weights,
    optimizer and RNG, that a resumed run goes on from."""

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

    def to_payload(
        self,
        *,
        model_config: ModelConfig,
        train_config: TrainConfig,
        vocab: Vocab,
        weights: dict,
        optimizer: dict,
        scaler: dict | None,
        hidden: list | None,
        rng: dict,
        precision: str,
        device: str,
        corpus: dict,
        parent: dict | None = None,
        auto: dict | None = None,
        ema: dict | None = None,
    ) -> dict:
        """The whole checkpoint: this state with the parts it is saved with (on the CPU).
        `parent` is the model a fine-tuning run started from (see `finetune.Parent.record`)."""
        return {
            "model_config": model_config.to_dict(),
            "train_config": train_config.to_dict(),
            "vocab": vocab.chars,
            "tokens": None if vocab.tokenizer.plain else vocab.tokenizer.to_dict(),
            "model": _to_cpu({name: w.float() for name, w in weights.items()}),
            # --ema's shadow weights, which a resumed run goes on averaging (in last.pt; best.pt's
            # "model" is the shadow itself, which a run resumed from it starts averaging from)
            "ema": None if ema is None else _to_cpu({name: w.float() for name, w in ema.items()}),
            "optimizer": _to_cpu(optimizer),
            "scaler": scaler,
            "step": self.step,
            "epoch": self.epoch,
            "data": {
                "offset": self.offset,
                "batch": self.offset // train_config.seq_len,
                "batch_size": train_config.batch_size,
                "seq_len": train_config.seq_len,
            },
            "hidden": None if hidden is None else _to_cpu(hidden),
            "rng": _to_cpu(rng),
            "best_val_loss": self.best_val_loss,
            "best_step": self.best_step,
            "val_loss": self.val_loss,
            "stale_evals": self.stale_evals,
            "elapsed_s": self.elapsed_s,
            "lr_scale": self.lr_scale,
            "precision": precision,
            "device": device,
            "corpus": corpus,
            "parent": parent,
            "auto": auto,
            "history": self.history[-HISTORY_KEPT:],
            **provenance(),
        }

    @classmethod
    def from_payload(cls, ckpt: dict, seq_len: int) -> TrainState:
        """The state of a checkpoint being resumed with windows of `seq_len`; a damaged one is
        a CheckpointError. The history is only a record: entries that are not records are dropped."""
        offset = _data_offset(ckpt.get("data"), seq_len)
        history = ckpt.get("history")
        try:
            return cls(
                step=int(ckpt["step"]),
                epoch=int(ckpt["epoch"]),
                offset=offset,
                best_val_loss=float(ckpt.get("best_val_loss", math.inf)),
                best_step=int(ckpt.get("best_step", 0)),
                val_loss=float(ckpt.get("val_loss", math.nan)),
                stale_evals=int(ckpt.get("stale_evals", 0)),
                elapsed_s=float(ckpt.get("elapsed_s", 0.0)),
                lr_scale=float(ckpt.get("lr_scale", 1.0)),
                history=[h for h in history if isinstance(h, dict)] if isinstance(history, list) else [],
            )
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


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


# --------------------------------------------------------------------------- files


def save(payload: dict, path: Path) -> None:
    """Write `path` atomically (see `write_atomic`): a crash or a full disk mid-write leaves
    the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    # Serialise in memory first: torch.save reports a failed write (a full disk) as a vague
    # RuntimeError, while a plain write raises the OSError that says what happened.
    buf = io.BytesIO()
    torch.save(payload, buf)
    try:
        write_atomic(path, buf.getbuffer())
    except OSError as e:
        raise TrainingError(
            f"could not write checkpoint {path}: {os_reason(e)}; the previous checkpoint is intact"
        ) from None


_TMP = ".tmp-"  # write_atomic's temporary files are .NAME.tmp-PID


def remove_leftovers(d: Path, names: tuple[str, ...]) -> None:
    """Remove the temporary files that `write_atomic` left for these names in `d`, from a
    process killed mid-write (it removes its own on any error it lives through)."""
    for name in names:
        for leftover in d.glob(f".{name}{_TMP}*"):
            leftover.unlink(missing_ok=True)


def write_atomic(path: Path, data) -> None:
    """Write to a temporary file beside `path` (`.NAME.tmp-PID`), fsync, then rename over it.
    Raises the OSError of a failed write, with the temporary file removed and `path` as it was."""
    tmp = path.with_name(f".{path.name}{_TMP}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: Path, kind: str | None = "lm") -> dict:
    """Load and validate a checkpoint on the CPU; every failure is a one-line CheckpointError.
    `kind` is what the caller can use: "lm" (a text-generating model), "classifier" (see
    `charrnn.classify.classifier`), or None for either."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path}: empty file, not a checkpoint")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        detail = _unpickler_detail(e)
        if any(w in detail.lower() for w in ("global", "reduce", "build", "class")):
            raise CheckpointError(
                f"{path}: refused: the file asks to run code or build objects a checkpoint never holds "
                "(it is not a charrnn checkpoint, or it was tampered with)"
            ) from None
        # an unknown opcode and the like: bytes that are not a pickle at all
        raise CheckpointError(f"{path}: corrupt checkpoint ({detail})") from None
    except (zipfile.BadZipFile, EOFError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first_line(e)})") from None
    except (PermissionError, IsADirectoryError, FileNotFoundError) as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({e.strerror or e})") from None
    except OSError as e:  # torch seeking past the end of a cut-off file, among others
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({e.strerror or e})") from None
    except Exception as e:  # anything else torch.load can raise on garbage
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint ({type(e).__name__}: {first_line(e)})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a charrnn checkpoint")
    version = ckpt.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is newer than this charrnn reads ({VERSION}); upgrade charrnn"
        )
    found = ckpt.get("kind", "lm")
    if kind is not None and found != kind:
        if found == "classifier":
            raise CheckpointError(
                f"{path}: is a classifier (charrnn classify predict or eval take it), not a text-generating model"
            )
        if kind == "classifier":
            raise CheckpointError(f"{path}: is a text-generating model (charrnn sample takes it), not a classifier")
        raise CheckpointError(f"{path}: is a checkpoint of an unknown kind {found!r}")
    for key in ("model_config", "train_config", "vocab", "model"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint is missing {key!r}")
    weights = ckpt["model"]
    if not isinstance(weights, dict) or not all(torch.is_tensor(t) for t in weights.values()):
        raise CheckpointError(f"{path}: checkpoint has malformed weights")
    if not all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point()):
        raise CheckpointError(f"{path}: checkpoint holds non-finite (NaN or infinite) weights")
    vocab(ckpt)  # a malformed vocabulary is refused here, not halfway through a command
    return ckpt


def _unpickler_detail(e: BaseException) -> str:
    """The restricted unpickler's own reason, without torch's advice around it."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    return first_line(ValueError(text.strip()))


def model_config(ckpt: dict) -> ModelConfig:
    return _parse(ModelConfig.from_dict, ckpt, "model_config")


def train_config(ckpt: dict) -> TrainConfig:
    return _parse(TrainConfig.from_dict, ckpt, "train_config")


def vocab_cap(ckpt: dict) -> VocabCap:
    """The cap the checkpoint's corpus was preprocessed with (none where it had none)."""
    tokens = as_dict(as_dict(ckpt.get("corpus")).get("tokens"))
    try:
        return VocabCap(tokens.get("max_vocab"), tokens.get("min_count", 1))
    except BadValueError:
        return VocabCap()


def vocab(ckpt: dict) -> Vocab:
    """The checkpoint's vocabulary, with how text is cut into its symbols (characters in a
    checkpoint written before word tokens)."""
    return _parse(lambda chars: Vocab(chars, Tokenizer.from_dict(ckpt.get("tokens"))), ckpt, "vocab")


def _parse(build, ckpt: dict, key: str):
    try:
        return build(ckpt[key])
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise CheckpointError(f"checkpoint has a malformed {key!r} ({first_line(e)})") from None


def eod_text(ckpt: dict) -> str:
    """How a model of documents writes the end of one: as its corpus separated them
    (`--doc-sep`), else, a file a document, as a blank line."""
    corpus = ckpt.get("corpus")
    sep = corpus.get("doc_sep") if isinstance(corpus, dict) else None
    return sep if isinstance(sep, str) and sep else EOD_TEXT


def kept(run_dir: Path) -> str:
    """Which checkpoints of a run hold its last good weights, for an error that stops it."""
    saved = [n for n in ("last.pt", "best.pt") if (Path(run_dir) / n).exists()]
    if not saved:
        return "no checkpoint was written"
    return f"{' and '.join(saved)} {'hold' if len(saved) > 1 else 'holds'} the last good weights"


def load_model(path: Path, device: torch.device = torch.device("cpu")):
    """(model in eval mode on `device`, vocab, checkpoint dict)."""
    from charrnn.model.rnn import CharRNN

    ckpt = load(path)
    cfg = model_config(ckpt)
    try:
        model = CharRNN(cfg)
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: weights do not match the model config ({first_line(e)})") from None
    v = vocab(ckpt)
    if len(v) != model.config.vocab_size:
        raise CheckpointError(
            f"{path}: vocabulary of {len(v)} characters does not match the model's {model.config.vocab_size}"
        )
    return model.to(device).eval(), v, ckpt


# --------------------------------------------------------------------------- resuming

RESUME_KEYS = ("optimizer", "step", "epoch", "data", "rng")


def resume_config(ckpt: dict, path: Path, *, settings: dict[str, Any], preset: str | None) -> TrainConfig:
    """The train config of a run resumed from `ckpt`: the checkpoint's, with the explicit
    `settings` over it. The architecture comes from the checkpoint and cannot change."""
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint cannot be resumed: it is missing {', '.join(map(repr, missing))}")
    fixed = model_config(ckpt)
    for name in MODEL_FIELDS:
        if name in settings and settings[name] != getattr(fixed, name):
            raise BadValueError(
                f"--{name.replace('_', '-')} cannot change on resume: the architecture comes from the checkpoint"
            )
    if preset is not None:
        raise BadValueError("--preset cannot be used with --resume: the run's configuration comes from the checkpoint")
    return train_config(ckpt).with_overrides(settings)


def check_resumes_on(
    ckpt: dict, *, corpus_vocab: Vocab, corpus_name: str, cfg: TrainConfig, corpus_labels: list[str] = ()
) -> None:
    """Refuse to resume on a corpus of another vocabulary or other labels, or with another
    batch size. A fine-tuned run's vocabulary is its parent's characters, then its corpus's new ones."""
    own = vocab(ckpt)
    parent = ckpt.get("parent")
    known = parent.get("chars") if isinstance(parent, dict) else None
    try:
        expected = (
            Vocab(own.chars[:known], own.tokenizer).extended(corpus_vocab)[0]
            if isinstance(known, int)
            else corpus_vocab
        )
    except ValueError as e:
        raise CheckpointError(f"the checkpoint cannot be resumed on corpus {corpus_name}: {e}") from None
    if own != expected:
        raise CheckpointError(
            f"the checkpoint was made for a different vocabulary ({len(own)} characters) "
            f"than corpus {corpus_name} ({len(corpus_vocab)} characters); it cannot be resumed on this corpus. "
            "To train the model on another text, start a new run from it: charrnn train FILE --init-from RUN"
        )
    labels = model_config(ckpt).labels
    if labels != tuple(corpus_labels):
        raise CheckpointError(
            f"the checkpoint was trained with {_label_list(labels)} and corpus {corpus_name} has "
            f"{_label_list(corpus_labels)}; it cannot be resumed on this corpus"
        )
    old = train_config(ckpt)
    if old.batch_size != cfg.batch_size:
        raise CheckpointError(
            f"--batch-size cannot change on resume ({old.batch_size} -> {cfg.batch_size}): "
            "the data position is defined by it"
        )


def _label_list(labels) -> str:
    return f"{len(labels)} labels ({shown(list(labels), 5, quote=False)})" if labels else "no labels"


def carried_state(ckpt: dict, cfg: ModelConfig, *, batch_size: int, rows: slice) -> tuple[torch.Tensor, ...] | None:
    """This process's rows of the hidden state carried between batches, in float32 (it is
    stored for the whole batch, so any number of processes can take their share; checkpoints
    from bf16 runs of earlier versions hold it in bf16)."""
    if ckpt.get("hidden") is None:
        return None
    try:
        state = tuple(h[:, rows].to(torch.float32) for h in ckpt["hidden"])
    except (TypeError, IndexError, AttributeError, RuntimeError) as e:
        raise damaged_state(e) from None
    want = (cfg.layers, len(range(batch_size)[rows]), cfg.hidden)
    if len(state) != (2 if cfg.model == "lstm" else 1) or any(h.shape != want for h in state):
        raise damaged_state(ValueError("the carried hidden state does not fit the model and batch"))
    return state


def check_not_behind(run_dir: Path, ckpt_path: Path, ckpt: dict) -> None:
    """Refuse to resume in place from a checkpoint older than the run's last.pt (best.pt, say):
    its saves would overwrite the newer one."""
    last = Path(run_dir) / "last.pt"
    if not last.exists() or last.resolve() == ckpt_path.resolve():
        return
    try:
        newer = load(last)["step"] > ckpt["step"]
    except (CheckpointError, KeyError, TypeError):
        return  # a damaged last.pt is what resuming from best.pt is for
    if newer:
        raise BadValueError(
            f"{last} is ahead of {ckpt_path.name} (step {ckpt['step']}) and resuming here would "
            f"overwrite it; add --out DIR to go on from {ckpt_path.name} in a new run directory"
        )


# --------------------------------------------------------------------------- what it shows


def config_fields(ckpt: dict, key: str) -> dict:
    """A checkpoint's model_config or train_config as the run uses it (a field an older
    checkpoint lacks takes its default), or as stored where it does not parse."""
    try:
        return (model_config if key == "model_config" else train_config)(ckpt).to_dict()
    except CheckpointError:
        return as_dict(ckpt.get(key))


def _vocab_row(size, tokenizer, chosen) -> str:
    """The vocabulary row of `describe`: its size, its kind of symbols and their cap."""
    tokenizer, chosen = as_dict(tokenizer), as_dict(chosen)
    kind = "tokens (words)" if tokenizer.get("kind") == "word" else "characters"
    notes = ["lowercased"] if tokenizer.get("lowercase") is True else []
    notes += cap_flags(chosen)
    if is_number(chosen.get("coverage")):
        notes.append(f"coverage {chosen['coverage']:.2%}")
    return f"{number(size, ',')} {kind}" + (f" ({', '.join(notes)})" if notes else "")


def describe(ckpt: dict) -> list[tuple[str, str]]:
    """(label, text) rows of what a checkpoint holds, for `charrnn info` and the report. Only
    what commands use is validated on load: a damaged descriptive field shows as "?"."""
    mc, tc, corpus = (
        config_fields(ckpt, "model_config"),
        config_fields(ckpt, "train_config"),
        as_dict(ckpt.get("corpus")),
    )
    best = ckpt.get("best_val_loss")
    weights = ckpt.get("model")
    params = sum(t.numel() for t in weights.values()) if isinstance(weights, dict) else None
    vocab_size = len(ckpt["vocab"]) if isinstance(ckpt.get("vocab"), list) else None
    units = Units.of(corpus)

    def get(d: dict, key: str) -> str:
        return str(d.get(key, "?"))

    return [
        (
            "model",
            f"{get(mc, 'model')} {get(mc, 'layers')} x {get(mc, 'hidden')}, dropout {get(mc, 'dropout')}"
            + (", adaptive softmax" if mc.get("softmax") == "adaptive" else ""),
        ),
        ("parameters", number(params, ",")),
        ("vocabulary", _vocab_row(vocab_size, ckpt.get("tokens"), corpus.get("tokens"))),
        ("step", f"{number(ckpt.get('step'), ',')} (epoch {number(ckpt.get('epoch'))})"),
        (
            "best val loss",
            f"{units.describe(best)} (step {number(ckpt.get('best_step'))})",
        ),
        (
            "training",
            f"batch {get(tc, 'batch_size')} x seq {get(tc, 'seq_len')}, lr {get(tc, 'lr')}, "
            f"seed {get(tc, 'seed')}, {number(ckpt.get('elapsed_s'), '.1f')} s",
        ),
        ("precision", f"{ckpt.get('precision', '?')} on {ckpt.get('device', '?')}"),
        ("corpus", f"{corpus.get('name', '?')} ({number(corpus.get('chars'), ',')} characters{_documents(corpus)})"),
        ("corpus sha256", str(corpus.get("sha256"))),
        *_label_rows(mc),
        *_auto_rows(ckpt.get("auto")),
        *_parent_rows(ckpt.get("parent")),
        *provenance_rows(ckpt),
    ]


INFO_LABELS = 30  # labels `info` lists


def _label_rows(mc: dict) -> list[tuple[str, str]]:
    """A labelled model's labels with the documents of each it was trained on."""
    names, counts = mc.get("labels"), mc.get("label_counts")
    if not isinstance(names, (list, tuple)) or not names:
        return []
    counts = counts if isinstance(counts, (list, tuple)) and len(counts) == len(names) else ["?"] * len(names)
    listed = shown(
        [f"{name} {number(c, ',')}" for name, c in zip(names, counts, strict=True)], INFO_LABELS, quote=False
    )
    return [("labels", f"{len(names)} (documents each: {listed})")]


def _documents(corpus: dict) -> str:
    """ ", N documents split at SEP" for a corpus of documents, else ""."""
    if not is_number(corpus.get("documents")):
        return ""
    sep = corpus.get("doc_sep")
    return f", {number(corpus['documents'], ',')} documents" + (f" split at {sep!r}" if isinstance(sep, str) else "")


def _auto_rows(auto) -> list[tuple[str, str]]:
    """How --preset auto chose the preset, by the speed it measured here."""
    if not isinstance(auto, dict):
        return []
    speeds = auto.get("chars_per_sec") if isinstance(auto.get("chars_per_sec"), dict) else {}
    measured = ", ".join(f"{k} {number(v / 1e3 if is_number(v) else None, '.1f')}k" for k, v in speeds.items())
    return [("preset", f"auto: {auto.get('preset', '?')} ({auto.get('reason', '?')}; chars/s measured: {measured})")]


def _parent_rows(parent) -> list[tuple[str, str]]:
    """Where a fine-tuned model started: the parent checkpoint, and the characters it lacked."""
    if not isinstance(parent, dict):
        return []
    new = parent.get("new") if isinstance(parent.get("new"), list) else []
    listed = ", ".join(repr(c) for c in new if isinstance(c, str))
    more = parent.get("new_chars", len(new))
    added = f"{number(more)} new character(s)" + (f": {listed}" if listed else "")
    if is_number(more) and more > len(new):
        added += ", …"
    return [
        ("fine-tuned from", f"{parent.get('path', '?')} (step {number(parent.get('step'), ',')}, "
         f"corpus {parent.get('corpus', '?')})"),
        ("parent sha256", str(parent.get("sha256", "?"))),
        ("vocabulary added", f"{number(parent.get('chars'))} characters kept, {added}"),
    ]  # fmt: skip


def provenance() -> dict:
    """When, and by which versions, a checkpoint is written: fields of every kind of checkpoint."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "charrnn_version": __version__,
        "torch_version": str(torch.__version__),
    }


def provenance_rows(ckpt: dict) -> list[tuple[str, str]]:
    """The last rows of `describe` for every kind of checkpoint: its provenance and format."""
    return [
        (
            "created",
            f"{ckpt.get('created', '?')} by charrnn {ckpt.get('charrnn_version', '?')}, "
            f"torch {ckpt.get('torch_version', '?')}",
        ),
        ("format", f"{ckpt.get('format', '?')} v{ckpt.get('version', '?')}"),
    ]
