"""A classifier's checkpoint, typed: its network's shape, label set, vocabulary, weights and
scores, in a file written and read as the language models' are (`charrnn.training.checkpoint`:
atomic, loaded only as data) and marked `kind: classifier`, so that neither kind of command
can take the other's checkpoint by mistake. Nothing outside this module reads its payload.

    ckpt = read(run_dir / "best.pt")
    ckpt.labels, ckpt.val_accuracy
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from charrnn.classify.config import ClassifierConfig
from charrnn.corpus.tokens import Tokenizer
from charrnn.corpus.vocab import Vocab
from charrnn.errors import CheckpointError, first_line
from charrnn.training import checkpoint
from charrnn.values import as_dict, number

KIND = "classifier"
MARK = "classifier.json"  # in a classifier's run directory: its labels and scores (`charrnn sample` skips such runs)


@dataclass
class ClassifierCheckpoint:
    model_config: ClassifierConfig
    labels: list[str]
    vocab: Vocab
    weights: dict[str, torch.Tensor]  # "model" in the file
    train_config: dict = field(default_factory=dict)  # the ClassifierSettings it was trained with
    data: dict = field(default_factory=dict)  # source, examples, train, val, counts, truncated
    epoch: int = 0
    val_accuracy: float = 0.0
    val_macro_f1: float = 0.0
    elapsed_s: float = 0.0
    device: str = "?"
    payload: dict = field(default_factory=dict, repr=False)  # the file as read, for what `info` shows

    @property
    def max_length(self) -> int | None:
        """The characters of a text it read in training (longer ones were cut)."""
        return self.train_config.get("max_length")

    def to_payload(self) -> dict:
        return {
            "kind": KIND,
            "labels": self.labels,
            "vocab": self.vocab.chars,
            "model_config": asdict(self.model_config),
            "train_config": self.train_config,
            "data": self.data,
            "model": {k: v.detach().cpu() for k, v in self.weights.items()},
            "epoch": self.epoch,
            "val_accuracy": self.val_accuracy,
            "val_macro_f1": self.val_macro_f1,
            "elapsed_s": self.elapsed_s,
            "device": self.device,
            **checkpoint.provenance(),
            "python_version": platform.python_version(),
        }

    @classmethod
    def from_payload(cls, d: dict, path: Path) -> ClassifierCheckpoint:
        try:
            cfg = ClassifierConfig.from_dict(d["model_config"])
            labels = d["labels"]
            if not isinstance(labels, list) or len(labels) != cfg.labels or not all(isinstance(x, str) for x in labels):
                raise ValueError("its label set does not match the model")
            vocab = Vocab(d["vocab"], Tokenizer.from_dict(d.get("tokens")))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{path}: a damaged classifier checkpoint ({first_line(e)})") from None
        if len(vocab) != cfg.vocab_size:
            raise CheckpointError(f"{path}: vocabulary of {len(vocab)} characters does not match the model's")
        record = {k: d.get(k) for k in ("epoch", "val_accuracy", "val_macro_f1", "elapsed_s", "device")}
        return cls(cfg, labels, vocab, d["model"], as_dict(d.get("train_config")), as_dict(d.get("data")),
                   **{k: v for k, v in record.items() if v is not None}, payload=d)  # fmt: skip


def read(path: Path) -> ClassifierCheckpoint:
    return ClassifierCheckpoint.from_payload(checkpoint.load(path, kind=KIND), Path(path))


def write(ckpt: ClassifierCheckpoint, path: Path) -> None:
    checkpoint.save(ckpt.to_payload(), path)


def describe(c: ClassifierCheckpoint) -> list[tuple[str, str]]:
    """(label, text) rows for `charrnn info` on a classifier checkpoint."""
    ckpt = c.payload or c.to_payload()
    mc, data = as_dict(ckpt.get("model_config")), as_dict(ckpt.get("data"))
    labels = ckpt.get("labels") if isinstance(ckpt.get("labels"), list) else []
    weights = ckpt.get("model")
    params = sum(t.numel() for t in weights.values()) if isinstance(weights, dict) else 0

    shown = ", ".join(map(str, labels[:12])) + (f", ... ({len(labels)} in all)" if len(labels) > 12 else "")
    direction = "bidirectional " if mc.get("bidirectional") else ""
    return [
        ("kind", "classifier (charrnn classify)"),
        ("model", f"{direction}{mc.get('model', '?')} {mc.get('layers', '?')} x {mc.get('hidden', '?')}"),
        ("parameters", number(params, ",")),
        ("labels", f"{len(labels)}: {shown}"),
        ("vocabulary", f"{number(len(ckpt['vocab']) if isinstance(ckpt.get('vocab'), list) else None)} characters"),
        (
            "val accuracy",
            f"{number(ckpt.get('val_accuracy'), '.4f')} (macro-F1 {number(ckpt.get('val_macro_f1'), '.4f')})",
        ),
        ("epoch", f"{number(ckpt.get('epoch'))}, {number(ckpt.get('elapsed_s'), '.1f')} s"),
        ("data", f"{data.get('source', '?')} ({number(data.get('examples'), ',')} examples)"),
        *checkpoint.provenance_rows(ckpt),
    ]
