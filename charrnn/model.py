"""`CharRNN`: embedding -> multilayer LSTM/GRU/RNN -> linear over the vocabulary.

Pure `nn.Module` code: no I/O, no printing. Training runs whole sequences through
`nn.LSTM` (cuDNN's fused kernel on CUDA); `step()` is the one-character path used by
sampling, with the same weights.
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
        self.rnn = _RNNS[config.model](
            h, h, num_layers=config.layers, batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(h, v)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        x = self.embed(ids)  # (B, T, H)
        if self.config.model == "lstm":
            out, (h, c) = self.rnn(x, state)
            new_state: State = (h, c)
        else:
            out, h = self.rnn(x, None if state is None else state[0])
            new_state = (h,)
        logits = self.head(self.drop(out))  # (B, T, V)
        return logits, new_state

    def init_state(self, batch_size: int, device=None) -> State:
        shape = (self.config.layers, batch_size, self.config.hidden)
        n = 2 if self.config.model == "lstm" else 1
        return tuple(torch.zeros(shape, device=device) for _ in range(n))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class FastStepper:
    """One character at a time for sampling, without `nn.LSTM`'s per-call overhead.

    The first layer's input projection of every vocabulary entry is precomputed into a
    table, so layer 0 costs one row lookup plus h @ W_hh; deeper layers concatenate
    [x, h] and do one matrix product against [W_ih | W_hh]. The arithmetic is that of
    the fused cell kernels, in float32, so it agrees with `CharRNN.forward` to rounding.
    Works in eval mode only (no dropout)."""

    def __init__(self, model: CharRNN):
        cfg = model.config
        self.kind = cfg.model
        self.layers = cfg.layers
        p = dict(model.rnn.named_parameters())
        with torch.no_grad():
            emb = model.embed.weight  # (V, H)
            self.table = emb @ p["weight_ih_l0"].T + p["bias_ih_l0"]  # (V, G*H)
            self.w_hh = [p[f"weight_hh_l{i}"].detach() for i in range(cfg.layers)]
            self.b_hh = [p[f"bias_hh_l{i}"].detach() for i in range(cfg.layers)]
            self.w_ih = [None] + [p[f"weight_ih_l{i}"].detach() for i in range(1, cfg.layers)]
            self.b_ih = [None] + [p[f"bias_ih_l{i}"].detach() for i in range(1, cfg.layers)]
            self.head_w = model.head.weight.detach()
            self.head_b = model.head.bias.detach()
        self.table = self.table.detach()

    @torch.no_grad()
    def step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """ids (B,) -> logits (B, V) and the next state."""
        hs = list(state[0].unbind(0))  # each (B, H)
        cs = list(state[1].unbind(0)) if self.kind == "lstm" else None
        x = None
        for i in range(self.layers):
            if i == 0:
                gi = self.table[ids]  # (B, G*H): W_ih x + b_ih for layer 0
            else:
                gi = torch.addmm(self.b_ih[i], x, self.w_ih[i].T)
            if self.kind == "lstm":
                gh = torch.addmm(self.b_hh[i], hs[i], self.w_hh[i].T)
                hs[i], cs[i] = _lstm_pointwise(gi, gh, cs[i])
            elif self.kind == "gru":
                gh = torch.addmm(self.b_hh[i], hs[i], self.w_hh[i].T)
                hs[i] = _gru_pointwise(gi, gh, hs[i])
            else:
                hs[i] = torch.tanh(torch.addmm(self.b_hh[i], hs[i], self.w_hh[i].T) + gi)
            x = hs[i]
        logits = torch.addmm(self.head_b, x, self.head_w.T)
        new = (torch.stack(hs),) if cs is None else (torch.stack(hs), torch.stack(cs))
        return logits, new


def _lstm_pointwise(gi: torch.Tensor, gh: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    i, f, g, o = (gi + gh).chunk(4, dim=1)  # PyTorch's gate order
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_pointwise(gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    ir, iz, in_ = gi.chunk(3, dim=1)
    hr, hz, hn = gh.chunk(3, dim=1)
    r = torch.sigmoid(ir + hr)
    z = torch.sigmoid(iz + hz)
    n = torch.tanh(in_ + r * hn)
    return (1 - z) * n + z * h


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Loss in nats per character; targets of -1 are ignored."""
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=-1, reduction=reduction)
