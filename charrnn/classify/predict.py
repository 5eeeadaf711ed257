"""A trained classifier, loaded to label texts.

clf = load_classifier(Path("checkpoints/names"))
clf.predict(["Dostoevsky", "Nakamura"], top=3)      # [[("Russian", 0.97), ...], ...]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from charrnn.classify import checkpoint
from charrnn.classify.model import CharClassifier, batch, encode
from charrnn.corpus.vocab import Vocab
from charrnn.errors import CheckpointError, first_line
from charrnn.runtime import pick_device
from charrnn.training import runs


@dataclass
class Classifier:
    path: Path
    net: CharClassifier
    vocab: Vocab
    labels: list[str]
    ckpt: checkpoint.ClassifierCheckpoint = field(repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def probabilities(self, texts: list[str], *, unknown: str = "error", batch_size: int = 256) -> torch.Tensor:
        """(N, labels) probabilities. Characters outside the vocabulary raise
        UnknownCharacterError (exit 7) unless `unknown="skip"`."""
        encoded = encode(self.vocab, texts, unknown, "the text")
        out = []
        for start in range(0, len(encoded), batch_size):
            ids, lengths = batch(encoded[start : start + batch_size], self.device)
            out.append(torch.softmax(self.net(ids, lengths).float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.labels))

    def predict(self, texts: list[str], *, top: int = 1, unknown: str = "error") -> list[list[tuple[str, float]]]:
        """For each text, its `top` likeliest labels with their probabilities, likeliest first."""
        probs = self.probabilities(texts, unknown=unknown)
        k = min(top, len(self.labels))
        values, idx = probs.topk(k, dim=-1) if len(texts) else (probs, probs.long())
        return [
            [(self.labels[j], float(v)) for v, j in zip(vs, js, strict=True)]
            for vs, js in zip(values, idx, strict=True)
        ]


def load_classifier(path: Path, device: str = "cpu") -> Classifier:
    """A classifier checkpoint (or a run directory: its best.pt), on `device`."""
    path = runs.resolve_checkpoint(path)
    dev = pick_device(device)
    ckpt = checkpoint.read(path)
    try:
        net = CharClassifier(ckpt.model_config)
        net.load_state_dict(ckpt.weights)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"{path}: a damaged classifier checkpoint ({first_line(e)})") from None
    return Classifier(path, net.to(dev).eval(), ckpt.vocab, ckpt.labels, ckpt)
