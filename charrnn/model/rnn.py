"""`CharRNN`: embedding -> multilayer LSTM/GRU/RNN -> linear over the vocabulary.

With `softmax="adaptive"` (a large vocabulary: words, or CJK characters) the output layer is
an adaptive softmax (Grave et al. 2017, `nn.AdaptiveLogSoftmaxWithLoss`): the likeliest
symbols in a head, the rarer ones in clusters reached through smaller products, so training
does not pay a full product over the vocabulary at every position. It needs the symbols
ranked by frequency: `order` holds each id's rank (set from the training text's counts).

A model trained with labels adds a learned embedding of the document's label to the
character's at every step, so `forward` then takes a label id for every position.

Pure `nn.Module` code: no I/O, no printing. Training runs whole sequences through
`nn.LSTM` (cuDNN's fused kernel on CUDA); sampling steps one character at a time with
`charrnn.model.stepper.FastStepper`, over the same weights.

Regularisers beside `dropout` (all identity in eval mode, so sampling needs nothing of them):
`locked_dropout` drops the same units of the input embedding and of the last layer's output
at every step of a window (variational dropout); `weight_dropout` drops entries of the
recurrent hidden-to-hidden matrices once per window (DropConnect, as in AWD-LSTM).
`tie_embeddings` makes the output layer's weight the input embedding itself.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from charrnn.config import ModelConfig

State = tuple[torch.Tensor, ...]  # (h,) for GRU/RNN, (h, c) for LSTM; each (layers, B, H)

_RNNS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class CharRNN(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        v, h = config.vocab_size, config.hidden
        self.embed = nn.Embedding(v, h)
        self.label_embed = nn.Embedding(len(config.labels), h) if config.labels else None
        self.rnn = _RNNS[config.model](
            h,
            h,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        if config.softmax == "adaptive":
            self.head = nn.AdaptiveLogSoftmaxWithLoss(h, v, adaptive_cutoffs(v), div_value=ADAPTIVE_DIV)
            self.register_buffer("order", torch.arange(v))  # each id's rank by frequency: its place in the head
        else:
            self.head = nn.Linear(h, v)
            if config.tie_embeddings:
                self.head.weight = self.embed.weight  # (V, H): the same tensor, in the state dict under both names

    def set_order(self, counts) -> None:
        """An adaptive softmax's ranking of the symbols, likeliest first, from their counts."""
        ranked = torch.argsort(-torch.as_tensor(counts, dtype=torch.float64), stable=True)
        self.order[ranked] = torch.arange(len(ranked), device=self.order.device)

    def forward(
        self,
        ids: torch.Tensor,
        state: State | None = None,
        labels: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, State]:
        """ids (B, T) -> logits (B, T, V), or with `targets` (B, T) each position's loss in nats
        (B, T), 0 where the target is -1 (ignored). `labels` (B, T) are a labelled model's
        label ids, the label of the document each position's next character belongs to."""
        x = self.embed(ids)  # (B, T, H)
        if self.label_embed is not None:
            if labels is None:
                raise ValueError("a model trained with labels needs a label for every position")
            x = x + self.label_embed(labels)
        x = _locked_dropout(x, self.config.locked_dropout, self.training)
        rnn_state = state if self.config.model == "lstm" or state is None else state[0]
        if self.training and self.config.weight_dropout > 0:
            # DropConnect: the RNN runs on copies of its weights with W_hh entries dropped
            p = self.config.weight_dropout
            weights = {
                name: F.dropout(w, p, True) if name.startswith("weight_hh") else w
                for name, w in self.rnn.named_parameters()
            }
            out, new = torch.func.functional_call(self.rnn, weights, (x, rnn_state))
        else:
            out, new = self.rnn(x, rnn_state)  # (B, T, H)
        new_state: State = tuple(new) if self.config.model == "lstm" else (new,)
        out = _locked_dropout(out, self.config.locked_dropout, self.training)
        out = self.drop(out)  # (B, T, H)
        if targets is not None:
            return self.losses(out, targets), new_state
        return self.logits(out), new_state

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        """(..., H) -> (..., V): an adaptive softmax gives its log-probabilities, which are
        logits too (their softmax is the distribution)."""
        if self.config.softmax == "full":
            return self.head(out)
        flat = self.head.log_prob(out.reshape(-1, out.size(-1)))  # (N, V) by rank
        return flat[:, self.order].reshape(*out.shape[:-1], -1)

    def losses(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B, T, H), targets (B, T) -> the loss at each position (B, T), float32; 0 where ignored."""
        if self.config.softmax == "full":
            logits = self.head(out)
            nll = F.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1, reduction="none"
            )
            return nll.view(targets.shape)
        keep = targets.reshape(-1) >= 0
        nll = torch.zeros(targets.numel(), dtype=torch.float32, device=out.device)
        if keep.any():  # only the positions scored; a cluster's product only for its own targets
            picked = self.head(out.reshape(-1, out.size(-1))[keep], self.order[targets.reshape(-1)[keep]])
            nll[keep] = -picked.output.float()
        return nll.view(targets.shape)

    def init_state(self, batch_size: int, device=None) -> State:
        shape = (self.config.layers, batch_size, self.config.hidden)
        n = 2 if self.config.model == "lstm" else 1
        return tuple(torch.zeros(shape, device=device) for _ in range(n))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


ADAPTIVE_DIV = 4.0  # each cluster's width is the last one's over this


def adaptive_cutoffs(vocab_size: int) -> list[int]:
    """Where the adaptive softmax's head ends and its clusters begin: the 256 likeliest symbols
    in the head, then clusters to 2,048 and 16,384 and the rest, as far as the vocabulary goes."""
    return [c for c in (256, 2048, 16384) if c < vocab_size]


def _locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout with one mask per sequence, the same at every time step of x (B, T, H)."""
    if not training or p == 0:
        return x
    mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p) / (1 - p)  # (B, 1, H)
    return x * mask
