"""The classifier network: each character embedded, a (bi)directional recurrent stack run over
the text, and the label read from the last hidden state of each direction; and how texts
become its batches (ids shifted by one, 0 is padding; batches of similar length).

    net = CharClassifier(ClassifierConfig(vocab_size=60, labels=3))
    ids, lengths = batch(encode(vocab, ["abc", "de"], "error", "the text"), torch.device("cpu"))
    logits = net(ids, lengths)                     # (B, labels)
"""

from __future__ import annotations

import random

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from charrnn.classify.config import ClassifierConfig
from charrnn.corpus.vocab import Vocab

BUCKET = 32  # batches of similar length are cut from this many batches' worth of shuffled texts


class CharClassifier(nn.Module):
    """Embedding, a (bi)directional recurrent stack, and a linear layer on the last states."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[config.model]
        # id 0 is padding: character i of the vocabulary is id i + 1
        self.embed = nn.Embedding(config.vocab_size + 1, config.hidden, padding_idx=0)
        self.rnn = rnn(
            config.hidden,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden * (2 if config.bidirectional else 1), config.labels)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, T), 0-padded on the right; lengths (B,) -> logits (B, labels)."""
        packed = pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)
        if isinstance(h, tuple):  # LSTM: (h, c)
            h = h[0]
        last = torch.cat([h[-2], h[-1]], dim=-1) if self.config.bidirectional else h[-1]  # the top layer
        return self.head(self.drop(last))


def encode(vocab: Vocab, texts: list[str], unknown: str, context: str) -> list[list[int]]:
    out = []
    for i, t in enumerate(texts):
        ids = vocab.encode(t, unknown=unknown, context=context if len(texts) == 1 else f"{context} (text {i + 1})")
        out.append([j + 1 for j in ids] or [0])  # an empty text reads as one padding character
    return out


def batch(encoded: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(e) for e in encoded])
    ids = torch.zeros(len(encoded), int(lengths.max()), dtype=torch.long)
    for row, e in enumerate(encoded):
        ids[row, : len(e)] = torch.tensor(e)
    return ids.to(device), lengths


def batches(order: list[int], encoded: list[list[int]], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of texts of similar length: little padding, and still a random order."""
    order = order[:]
    rng.shuffle(order)
    batches = []
    span = batch_size * BUCKET
    for start in range(0, len(order), span):
        bucket = sorted(order[start : start + span], key=lambda i: len(encoded[i]))
        batches += [bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size)]
    rng.shuffle(batches)
    return batches
