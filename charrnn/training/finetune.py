"""Starting a new run from a trained model: `charrnn train NEW.txt --init-from RUN`.

    parent = Parent.open("checkpoints/shakespeare", corpus.vocab)
    model_cfg = parent.model_config(settings)      # the architecture is the checkpoint's
    cfg = finetune_config(parent.train_config, settings)
    ...
    parent.load_into(model, counts)                # weights, and rows for the new characters

The model keeps its vocabulary: every character it knows keeps its id, and the characters of
the new text that it never saw are appended, each with a fresh embedding row and a fresh
output row. A new character's output bias starts from its frequency in the new text, on the
scale of the biases of the characters the model knows, so the model neither ignores it nor
predicts it everywhere at the first step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charrnn.config import ModelConfig, TrainConfig
from charrnn.corpus.store import Corpus
from charrnn.corpus.text import file_sha256
from charrnn.corpus.vocab import Vocab, shown
from charrnn.errors import BadValueError, CheckpointError, first_line
from charrnn.model.rnn import CharRNN
from charrnn.training import checkpoint, runs
from charrnn.training.presets import ARCHITECTURE

# the weights whose rows are the vocabulary's characters
ROWS_ARE_CHARS = ("embed.weight", "head.weight", "head.bias")
NEW_SHOWN = 20  # new characters a checkpoint names


@dataclass(frozen=True)
class Parent:
    """The checkpoint a run starts from, and the vocabulary the new run's model has."""

    path: Path
    ckpt: checkpoint.Checkpoint
    vocab: Vocab  # the parent's characters (same ids), then the new text's new ones
    new: list[str]  # characters of the new text that the parent never saw

    @classmethod
    def open(cls, path: Path, text_vocab: Vocab, ckpt: checkpoint.Checkpoint | None = None) -> Parent:
        """The model at `path` (a run directory: its best.pt) for a run on a text whose
        characters are `text_vocab`; `ckpt` is that checkpoint, where the caller has read it."""
        path = runs.resolve_checkpoint(path, prefer="best.pt")
        ckpt = checkpoint.read(path) if ckpt is None else ckpt
        try:
            vocab, new = ckpt.vocab.extended(text_vocab)
        except ValueError as e:
            raise BadValueError(
                f"--init-from {path}: {e}; read the text as the model does (--tokens, --lowercase on the text file)"
            ) from None
        return cls(path, ckpt, vocab, new)

    @property
    def known(self) -> int:
        """How many characters the parent knows (the first ids of the new vocabulary)."""
        return len(self.vocab) - len(self.new)

    @property
    def train_config(self) -> TrainConfig:
        return self.ckpt.train_config

    def model_config(self, settings: dict[str, Any]) -> ModelConfig:
        """The parent's architecture over the new vocabulary; a size flag that contradicts it
        is refused (dropout may change)."""
        parent = self.ckpt.model_config
        for name in ARCHITECTURE:
            if name in settings and settings[name] != getattr(parent, name):
                raise BadValueError(
                    f"--{name.replace('_', '-')} {settings[name]} contradicts the model of --init-from "
                    f"({getattr(parent, name)}): the architecture comes from the checkpoint; "
                    "leave --model, --hidden, --layers and --tie-embeddings out"
                )
        if parent.softmax == "adaptive" and self.new:
            raise BadValueError(
                f"the model of --init-from has an adaptive softmax, whose clusters cannot take the new text's "
                f"{len(self.new)} new symbol(s) ({shown(self.new)}); fine-tune it on text of its own vocabulary"
            )
        return replace(parent, vocab_size=len(self.vocab), dropout=settings.get("dropout", parent.dropout))

    def record(self) -> dict:
        """What the new run's checkpoints say of where they started."""
        return {
            "path": str(self.path.resolve()),
            "sha256": file_sha256(self.path),
            "step": self.ckpt.step,
            "corpus": self.ckpt.corpus.get("name"),
            "chars": self.known,
            "new_chars": len(self.new),
            "new": self.new[:NEW_SHOWN],
        }

    @torch.no_grad()
    def load_into(self, model: CharRNN, corpus: Corpus) -> None:
        """Put the parent's weights into `model` (built for the new vocabulary), for training on
        `corpus`: the new characters' output biases come from their counts in its training split."""
        counts = np.zeros(len(self.vocab), dtype=np.int64)
        counts[corpus.vocab.ids_in(self.vocab)] = corpus.counts("train")
        weights = self.ckpt.weights
        own = model.state_dict()
        k = self.known
        try:
            for name, w in weights.items():
                if name in ROWS_ARE_CHARS:
                    own[name][:k] = w  # the new characters' rows keep their fresh initialisation
                else:
                    own[name].copy_(w)
            missing = own.keys() - weights.keys()
            if missing:
                raise KeyError(f"the checkpoint lacks {', '.join(sorted(missing))}")
        except (KeyError, RuntimeError, TypeError) as e:
            raise CheckpointError(f"{self.path}: weights do not match the model config ({first_line(e)})") from None
        if self.new:
            own["head.bias"][k:] = torch.from_numpy(new_char_bias(own["head.bias"][:k].numpy(), counts, k))
        model.load_state_dict(own)


def new_char_bias(known_bias: np.ndarray, counts: np.ndarray, known: int) -> np.ndarray:
    """Output biases for the characters after the first `known`: log of their frequency in
    the new text, shifted by the median of (bias - log frequency) over the known characters
    that occur in it. A character seen as often as a known one then starts with about the
    same bias. Characters absent from the training split count as half an occurrence."""
    freq = np.maximum(counts.astype(np.float64), 0.5) / max(int(counts.sum()), 1)
    seen = counts[:known] > 0
    shift = float(np.median(known_bias[seen] - np.log(freq[:known][seen]))) if seen.any() else float(known_bias.mean())
    return (np.log(freq[known:]) + shift).astype(np.float32)
