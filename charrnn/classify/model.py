"""The classifier network: each character embedded, a (bi)directional recurrent stack run over
the text, and the label read from the last hidden state of each direction, plus, where the
config has `ngrams`, a bag of the text's character n-grams: each n-gram hashed into one of
`buckets` rows of label scores, their sum over the square root of their count added to the
recurrent model's (a long text's n-grams count for more than a short one's, but not in
proportion to its length). And how texts become
its batches (ids shifted by one, 0 is padding; batches of similar length).

    net = CharClassifier(ClassifierConfig(vocab_size=60, labels=3, ngrams=4, buckets=1024))
    texts = ["abc", "de"]
    ids, lengths = batch(encode(vocab, texts, "auto", "text {}".format), torch.device("cpu"))
    logits = net(ids, lengths, pad(hashed(texts, 4, 1024), torch.device("cpu")))   # (B, labels)

An n-gram's bucket is the CRC-32 of its UTF-8 bytes modulo `buckets`, and its id that plus one
(0 pads); the n-grams of a text are those of the text with a space added at each end, shortest
first, each length left to right (`hashed`).
"""

from __future__ import annotations

import random
import zlib
from collections import Counter

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from charrnn.classify.config import ClassifierConfig
from charrnn.corpus.tokens import UNK
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
        if config.ngrams:
            # sparse: a step's gradient and update touch only the rows of its texts' n-grams
            self.grams = nn.Embedding(config.buckets + 1, config.labels, padding_idx=0, sparse=True)
            nn.init.zeros_(self.grams.weight)  # the bag says nothing until it has learned

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, grams: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, T), 0-padded on the right; lengths (B,); the n-gram ids (B, G), 0-padded, where
        the config has n-grams -> logits (B, labels)."""
        logits = self._recurrent(ids, lengths)
        if not self.config.ngrams:
            return logits
        if grams is None:
            raise ValueError("this classifier reads n-grams: pass their ids")
        counts = (grams > 0).sum(dim=1, keepdim=True).clamp(min=1)
        return logits + self.grams(grams).sum(dim=1) / counts.sqrt()

    def _recurrent(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)
        if isinstance(h, tuple):  # LSTM: (h, c)
            h = h[0]
        last = torch.cat([h[-2], h[-1]], dim=-1) if self.config.bidirectional else h[-1]  # the top layer
        return self.head(self.drop(last))


def vocabulary(texts: list[str], min_count: int) -> Vocab:
    """The characters seen at least `min_count` times in `texts`, and UNK, which stands for the
    rest: read as it in training, the rare ones teach the model what to make of characters it
    never saw."""
    counts = Counter(c for t in texts for c in t)
    return Vocab(sorted({c for c, n in counts.items() if n >= min_count and c != UNK} | {UNK}))


def unknown_rule(vocab: Vocab, unknown: str) -> str:
    """What `unknown` (auto | unk | skip | error) does with this vocabulary: auto is unk, or skip
    for a classifier's vocabulary from before it held UNK."""
    if unknown == "auto":
        return "unk" if vocab.unk is not None else "skip"
    return vocab.unknown_rule(unknown)


def unseen(vocab: Vocab, texts: list[str]) -> tuple[Counter, int]:
    """The characters of `texts` outside the vocabulary, counted, and how many texts hold one."""
    counts: Counter = Counter()
    holding = 0
    for t in texts:
        missing = [c for c in t if c not in vocab.index]
        counts.update(missing)
        holding += bool(missing)
    return counts, holding


def encode(vocab: Vocab, texts: list[str], unknown: str, where) -> list[list[int]]:
    """Each text's ids, shifted by one (0 is padding); `where(i)` names text i in an error."""
    rule = unknown_rule(vocab, unknown)
    out = []
    for i, t in enumerate(texts):
        ids = vocab.encode(t, unknown=rule, context=where(i))
        out.append([j + 1 for j in ids] or [0])  # an empty text reads as one padding character
    return out


def hashed(texts: list[str], n: int, buckets: int) -> list[torch.Tensor]:
    """The ids of each text's character 1..n-grams (see the module's docstring), int64."""
    out = []
    for text in texts:
        t = f" {text} "
        b = t.encode("utf-8", "surrogatepass")
        if len(b) == len(t):  # ASCII: a character is a byte, so slice the bytes
            ids = [zlib.crc32(b[i : i + k]) for k in range(1, n + 1) for i in range(len(b) - k + 1)]
        else:
            ids = [zlib.crc32(t[i : i + k].encode("utf-8", "surrogatepass")) for k in range(1, n + 1)
                   for i in range(len(t) - k + 1)]  # fmt: skip
        out.append(torch.tensor(ids, dtype=torch.long) % buckets + 1)
    return out


def pad(rows: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Rows of ids as one (B, longest) tensor, 0-padded on the right."""
    out = torch.zeros(len(rows), max(1, max((len(r) for r in rows), default=1)), dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out.to(device)


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
