"""Checkpoint files on disk: written atomically (a crash or a full disk mid-write leaves the
previous one intact), read only as data (`torch.load(weights_only=True)`, so a checkpoint
from a stranger cannot run code; an exported safetensors file is read with no pickle at all,
see `safetensors_file`), and checked to be charrnn's, of a format this version reads,
and of the kind the caller can use.

    save(payload, run_dir / "last.pt")
    payload = load(run_dir / "last.pt")            # a validated dict
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import torch

from charrnn import __version__
from charrnn.errors import CheckpointError, TrainingError, first_line, os_reason
from charrnn.training.checkpoint import safetensors_file

FORMAT = "charrnn-checkpoint"
VERSION = 1
REQUIRED = ("model_config", "train_config", "vocab", "model")  # what every command reads


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
    `charrnn.classify.checkpoint`), or None for either."""
    path = Path(path)
    ckpt = safetensors_file.read(path) if safetensors_file.is_safetensors(path) else _torch_load(path)
    _check(path, ckpt, kind)
    return ckpt


def _torch_load(path: Path) -> dict:
    """A torch checkpoint's payload, unchecked; a file torch cannot read is a CheckpointError."""
    try:
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path}: empty file, not a checkpoint")
        return torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        detail = _unpickler_detail(e)
        # torch's restricted unpickler refused what the file asks for (its words differ by version)
        if any(w in detail.lower() for w in ("global", "reduce", "build", "class", "blocked")):
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


def _check(path: Path, ckpt, kind: str | None) -> None:
    """Refuse a payload that is not charrnn's, of a newer format, of another kind than `kind`,
    or whose weights are missing, malformed or not finite."""
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
    for key in REQUIRED:
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint is missing {key!r}")
    weights = ckpt["model"]
    if not isinstance(weights, dict) or not all(torch.is_tensor(t) for t in weights.values()):
        raise CheckpointError(f"{path}: checkpoint has malformed weights")
    if not all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point()):
        raise CheckpointError(f"{path}: checkpoint holds non-finite (NaN or infinite) weights")


def _unpickler_detail(e: BaseException) -> str:
    """The restricted unpickler's own reason, without torch's advice around it (which, by
    version, includes loading the file with the protection off: never passed on)."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    advice = ("weights only load failed", "weights_only", "please file an issue", "check the documentation")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    own = [line for line in lines if not any(a in line.lower() for a in advice)]
    return first_line(ValueError(own[0] if own else "not a pickle torch can read"))


def kept(run_dir: Path) -> str:
    """Which checkpoints of a run hold its last good weights, for an error that stops it."""
    saved = [n for n in ("last.pt", "best.pt") if (Path(run_dir) / n).exists()]
    if not saved:
        return "no checkpoint was written"
    return f"{' and '.join(saved)} {'hold' if len(saved) > 1 else 'holds'} the last good weights"


def provenance() -> dict:
    """When, and by which versions, a checkpoint is written: fields of every kind of checkpoint."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "charrnn_version": __version__,
        "torch_version": str(torch.__version__),
    }


def kind_of(path: Path) -> str:
    """What a checkpoint file is for: "lm" (a text-generating model) or "classifier"."""
    return load(path, kind=None).get("kind", "lm")
