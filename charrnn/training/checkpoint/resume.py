"""The rules of resuming from a checkpoint: the run's configs come from it (the architecture
cannot change), it goes on only on its own corpus and batch size, its carried state is taken
in any number of processes' shares, and it never overwrites a newer checkpoint of its run.

    cfg = resume_config(ckpt, path, settings={"max_steps": 5000}, preset=None)
    check_resumes_on(ckpt, corpus_vocab=corpus.vocab, corpus_name=corpus.name, cfg=cfg)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from charrnn.config import MODEL_FIELDS, ModelConfig, TrainConfig
from charrnn.corpus.vocab import Vocab, shown
from charrnn.errors import BadValueError, CheckpointError
from charrnn.training.checkpoint.files import load
from charrnn.training.checkpoint.schema import Checkpoint, damaged_state

RESUME_KEYS = ("optimizer", "step", "epoch", "data", "rng")  # what a file needs to be resumed


def resume_config(ckpt: Checkpoint, path: Path, *, settings: dict[str, Any], preset: str | None) -> TrainConfig:
    """The train config of a run resumed from `ckpt`: the checkpoint's, with the explicit
    `settings` over it. The architecture comes from the checkpoint and cannot change."""
    missing = [k for k in RESUME_KEYS if k not in ckpt.payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint cannot be resumed: it is missing {', '.join(map(repr, missing))}")
    fixed = ckpt.model_config
    for name in MODEL_FIELDS:
        if name in settings and settings[name] != getattr(fixed, name):
            raise BadValueError(
                f"--{name.replace('_', '-')} cannot change on resume: the architecture comes from the checkpoint"
            )
    if preset is not None:
        raise BadValueError("--preset cannot be used with --resume: the run's configuration comes from the checkpoint")
    return ckpt.train_config.with_overrides(settings)


def check_resumes_on(
    ckpt: Checkpoint, *, corpus_vocab: Vocab, corpus_name: str, cfg: TrainConfig, corpus_labels: list[str] = ()
) -> None:
    """Refuse to resume on a corpus of another vocabulary or other labels, or with another
    batch size. A fine-tuned run's vocabulary is its parent's characters, then its corpus's new ones."""
    own = ckpt.vocab
    known = ckpt.parent.get("chars") if isinstance(ckpt.parent, dict) else None
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
    labels = ckpt.model_config.labels
    if labels != tuple(corpus_labels):
        raise CheckpointError(
            f"the checkpoint was trained with {_label_list(labels)} and corpus {corpus_name} has "
            f"{_label_list(corpus_labels)}; it cannot be resumed on this corpus"
        )
    if ckpt.train_config.batch_size != cfg.batch_size:
        raise CheckpointError(
            f"--batch-size cannot change on resume ({ckpt.train_config.batch_size} -> {cfg.batch_size}): "
            "the data position is defined by it"
        )


def _label_list(labels) -> str:
    return f"{len(labels)} labels ({shown(list(labels), 5, quote=False)})" if labels else "no labels"


def carried_state(
    ckpt: Checkpoint, cfg: ModelConfig, *, batch_size: int, rows: slice
) -> tuple[torch.Tensor, ...] | None:
    """This process's rows of the hidden state carried between batches, in float32 (it is
    stored for the whole batch, so any number of processes can take their share; checkpoints
    from bf16 runs of earlier versions hold it in bf16)."""
    if ckpt.hidden is None:
        return None
    try:
        state = tuple(h[:, rows].to(torch.float32) for h in ckpt.hidden)
    except (TypeError, IndexError, AttributeError, RuntimeError) as e:
        raise damaged_state(e) from None
    want = (cfg.layers, len(range(batch_size)[rows]), cfg.hidden)
    if len(state) != (2 if cfg.model == "lstm" else 1) or any(h.shape != want for h in state):
        raise damaged_state(ValueError("the carried hidden state does not fit the model and batch"))
    return state


def check_not_behind(run_dir: Path, ckpt_path: Path, ckpt: Checkpoint) -> None:
    """Refuse to resume in place from a checkpoint older than the run's last.pt (best.pt, say):
    its saves would overwrite the newer one."""
    last = Path(run_dir) / "last.pt"
    if not last.exists() or last.resolve() == ckpt_path.resolve():
        return
    try:
        newer = load(last)["step"] > ckpt.step
    except (CheckpointError, KeyError, TypeError):
        return  # a damaged last.pt is what resuming from best.pt is for
    if newer:
        raise BadValueError(
            f"{last} is ahead of {ckpt_path.name} (step {ckpt.step}) and resuming here would "
            f"overwrite it; add --out DIR to go on from {ckpt_path.name} in a new run directory"
        )
