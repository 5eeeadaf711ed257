"""The fast one-character inference step that sampling and `charrnn visualize` use.

    stepper = FastStepper(model)
    state = stepper.convert(model.init_state(1))
    logits, state = stepper.step(torch.tensor([vocab.index["T"]]), state)

A second implementation of the cell arithmetic of `nn.LSTM` / `nn.GRU` / `nn.RNN`, laid out
for the fewest calls per character; tests check it against the `CharRNN` forward pass.
"""

from __future__ import annotations

import torch

from charrnn.model.rnn import CharRNN, State


class FastStepper:
    """One character at a time for sampling, without `nn.LSTM`'s per-call overhead.

    Weights are laid out once for a step of the fewest calls: the first layer's input
    projection of every vocabulary entry (plus both biases) is a precomputed table, so
    layer 0 costs one row lookup and one product with W_hh; deeper layers multiply
    [x, h] by the stacked [W_ih; W_hh] in one product; LSTM gate rows are reordered to
    (i, f, o, g) so one sigmoid and one tanh cover them. Arithmetic stays float32, so
    logits agree with `CharRNN.forward` to rounding. Eval mode only (no dropout).

    `dtype=torch.bfloat16` runs the matrix products in bfloat16 (the state and the gate
    arithmetic stay float32): several times faster for many streams on hardware with fast
    bf16, at the price of text that differs from the float32 path's.

    The state is the stepper's own: `convert()` turns a `CharRNN` state into it."""

    def __init__(self, model: CharRNN, dtype: torch.dtype = torch.float32):
        cfg = model.config
        self.dtype = dtype
        self.kind = cfg.model
        self.layers = cfg.layers
        h = cfg.hidden
        p = {k: v.detach() for k, v in model.rnn.named_parameters()}
        if self.kind == "lstm":  # (i, f, g, o) -> (i, f, o, g)
            order = torch.cat([torch.arange(0, 2 * h), torch.arange(3 * h, 4 * h), torch.arange(2 * h, 3 * h)])
        else:
            order = torch.arange(p["weight_hh_l0"].shape[0])
        with torch.no_grad():
            self.w = []  # per layer: the matrix a step multiplies by, transposed and contiguous
            self.b = []
            for i in range(cfg.layers):
                w_ih, w_hh = p[f"weight_ih_l{i}"][order], p[f"weight_hh_l{i}"][order]
                b_ih, b_hh = p[f"bias_ih_l{i}"][order], p[f"bias_hh_l{i}"][order]
                if self.kind == "gru":
                    # GRU's candidate gate needs W_hh h apart from W_ih x: keep the two products separate
                    self.w.append((w_ih.T.contiguous(), w_hh.T.contiguous()))
                    self.b.append((b_ih, b_hh))
                elif i == 0:
                    self.w.append(w_hh.T.contiguous())
                    self.b.append(None)
                else:
                    self.w.append(torch.cat([w_ih, w_hh], dim=1).T.contiguous())  # (2H, G*H)
                    self.b.append(b_ih + b_hh)
            emb_in = model.embed.weight.detach() @ p["weight_ih_l0"][order].T + p["bias_ih_l0"][order]
            self.table = emb_in if self.kind == "gru" else emb_in + p["bias_hh_l0"][order]  # (V, G*H)
            # a labelled model's input is the sum of two embeddings: its projection is the sum of theirs
            self.label_table = None  # (L, G*H)
            if model.label_embed is not None:
                self.label_table = model.label_embed.weight.detach() @ p["weight_ih_l0"][order].T
            # the output layer: a product here, or an adaptive softmax's own (its log-probabilities)
            self.head_w = self.head_b = None
            self.adaptive = model.logits if model.config.softmax == "adaptive" else None
            if self.adaptive is None:
                self.head_w = model.head.weight.detach().T.contiguous()  # (H, V)
                self.head_b = model.head.bias.detach()
            if dtype != torch.float32:
                self.w = [tuple(m.to(dtype) for m in w) if isinstance(w, tuple) else w.to(dtype) for w in self.w]
                self.head_w = None if self.head_w is None else self.head_w.to(dtype)
        self.hidden = h

    def _mm(self, bias: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """bias + x @ w, in float32 whatever the dtype of the product."""
        if self.dtype == torch.float32:
            return torch.addmm(bias, x, w)
        return torch.mm(x.to(self.dtype), w).float().add_(bias)

    def convert(self, state: State) -> list[list[torch.Tensor]]:
        """A `CharRNN` state ((layers, B, H) tensors) -> per-layer [h] or [h, c] lists."""
        return [[s[i].contiguous() for s in state] for i in range(self.layers)]

    @torch.no_grad()
    def step(
        self, ids: torch.Tensor, state: list[list[torch.Tensor]], labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list]:
        """ids (B,) -> logits (B, V); `state` is updated in place and returned. A labelled
        model takes each row's label id too (`labels`, (B,))."""
        sigmoid_rows = 3 * self.hidden  # the LSTM's i, f and o gates; g follows
        x = None
        first = self.table[ids]  # (B, G*H): layer 0's input projection
        if self.label_table is not None:
            if labels is None:
                raise ValueError("a model trained with labels needs a label for every row")
            first = first + self.label_table[labels]
        for i, layer in enumerate(state):
            h = layer[0]
            if self.kind == "gru":
                w_ih, w_hh = self.w[i]
                b_ih, b_hh = self.b[i]
                gi = first if i == 0 else self._mm(b_ih, x, w_ih)
                gh = self._mm(b_hh, h, w_hh)
                layer[0] = x = _gru_pointwise(gi, gh, h)
                continue
            if i == 0:
                gates = self._mm(first, h, self.w[0])  # (B, G*H)
            else:
                gates = self._mm(self.b[i], torch.cat([x, h], dim=1), self.w[i])
            if self.kind == "lstm":
                ifo = torch.sigmoid(gates[:, :sigmoid_rows])
                g = torch.tanh(gates[:, sigmoid_rows:])
                i_, f, o = ifo.chunk(3, dim=1)
                c = torch.addcmul(f * layer[1], i_, g)
                layer[0] = x = o * torch.tanh(c)
                layer[1] = c
            else:
                layer[0] = x = torch.tanh(gates)
        if self.adaptive is not None:
            return self.adaptive(x), state
        return self._mm(self.head_b, x, self.head_w), state


def _gru_pointwise(gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    ir, iz, in_ = gi.chunk(3, dim=1)
    hr, hz, hn = gh.chunk(3, dim=1)
    r = torch.sigmoid(ir + hr)
    z = torch.sigmoid(iz + hz)
    n = torch.tanh(in_ + r * hn)
    return (1 - z) * n + z * h
