"""One self-describing checkpoint file: save atomically, load safely.

A checkpoint holds the format version, model and train configs, the vocabulary,
float32 CPU weights, optimizer state, step, epoch, data position, carried hidden
state, RNG states and the best validation loss, so it needs nothing beside it.
Loading uses `torch.load(weights_only=True)`: a checkpoint is data, never code.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import torch

from charrnn.config import ModelConfig, TrainConfig
from charrnn.errors import CheckpointError, TrainingError, first_line, os_reason
from charrnn.vocab import Vocab

FORMAT = "charrnn-checkpoint"
VERSION = 1


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
            f"could not write checkpoint {path}: {os_reason(e)}; the previous checkpoint is intact") from None


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


def resolve(path: Path, prefer: str = "best.pt") -> Path:
    """A checkpoint file, or a run directory (its `prefer` file, else the other one)."""
    path = Path(path)
    if path.is_dir():
        for name in (prefer, "last.pt", "best.pt"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: run directory holds no best.pt or last.pt")
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    return path


def latest_run(root: Path) -> Path:
    """The run directory in `root` whose checkpoint was written most recently."""
    root = Path(root)
    found = [p for p in root.glob("*/*.pt") if p.name in ("best.pt", "last.pt")] if root.is_dir() else []
    if not found:
        raise CheckpointError(
            f"no trained model found in {root}/; train one with `charrnn train FILE` or name a checkpoint"
        )
    return max(found, key=lambda p: p.stat().st_mtime).parent


def load(path: Path) -> dict:
    """Load and validate a checkpoint on the CPU; every failure is a one-line CheckpointError."""
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
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(e).__name__}: {first_line(e)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a charrnn checkpoint")
    version = ckpt.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is newer than this charrnn reads ({VERSION}); upgrade charrnn"
        )
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


def vocab(ckpt: dict) -> Vocab:
    return _parse(Vocab, ckpt, "vocab")


def _parse(build, ckpt: dict, key: str):
    try:
        return build(ckpt[key])
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise CheckpointError(f"checkpoint has a malformed {key!r} ({first_line(e)})") from None


RESUME_KEYS = ("optimizer", "step", "epoch", "data", "rng")


def check_resumable(ckpt: dict, path: Path) -> None:
    """Training state beyond the weights, which `train --resume` needs."""
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint cannot be resumed: it is missing {', '.join(map(repr, missing))}")


def load_model(path: Path, device: torch.device = torch.device("cpu")):
    """(model in eval mode on `device`, vocab, checkpoint dict)."""
    from charrnn.model import CharRNN

    ckpt = load(path)
    cfg = model_config(ckpt)
    try:
        model = CharRNN(cfg)
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: weights do not match the model config ({first_line(e)})") from None
    v = vocab(ckpt)
    if len(v) != model.config.vocab_size:
        raise CheckpointError(f"{path}: vocabulary of {len(v)} characters does not match the model's {model.config.vocab_size}")
    return model.to(device).eval(), v, ckpt
