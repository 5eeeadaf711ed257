"""What every exporter starts from: a checkpoint read once, its network built, and its fields
as the string metadata that each exported file carries; and the optional packages that some
formats need, imported only when asked for.

    src = Source.read(Path("checkpoints/my-run/best.pt"))
    src.kind, src.net, src.vocab, src.metadata()
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from charrnn.corpus.vocab import Vocab
from charrnn.errors import CharRNNError, CheckpointError, first_line
from charrnn.training import checkpoint
from charrnn.training.checkpoint import safetensors_file

EXTRA = "pip install 'charrnn[export]'"


@dataclass
class Source:
    """A checkpoint to export: `kind` is "lm" (a text-generating model) or "classifier";
    `net` its network in eval mode on the CPU; `payload` the file's fields as `checkpoint.load`
    returns them (weights under "model")."""

    path: Path
    kind: str
    net: nn.Module
    vocab: Vocab
    payload: dict
    eod_text: str = ""  # how a model of documents writes the end of one

    @classmethod
    def read(cls, path: Path) -> Source:
        if checkpoint.kind_of(path) == "classifier":
            from charrnn.classify.predict import load_classifier

            clf = load_classifier(path)
            return cls(path, "classifier", clf.net.eval(), clf.vocab, clf.ckpt.payload)
        net, vocab, ckpt = checkpoint.load_model(path)
        return cls(path, "lm", net, vocab, ckpt.payload, ckpt.eod_text)

    @property
    def config(self):
        return self.net.config

    def weights(self) -> dict[str, torch.Tensor]:
        """The network's tensors by their state-dict names, float32 (the order buffer int64)."""
        return {k: v.detach() for k, v in self.net.state_dict().items()}

    def metadata(self) -> dict[str, str]:
        """The checkpoint's fields as strings (JSON, but "format" and "kind"): the metadata of
        an exported safetensors file, and the metadata_props of an ONNX one."""
        try:
            return safetensors_file.to_parts({**self.payload, "model": {}})[1]
        except TypeError as e:
            raise CheckpointError(f"{self.path}: a field cannot be exported ({first_line(e)})") from None


def optional(name: str, what: str):
    """Import an optional package, or say in one line which extra brings it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise CharRNNError(f"{what} needs the {name} package: {EXTRA}") from None
