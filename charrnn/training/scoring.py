"""The loss of a model over a text: the deterministic pass behind training's validation and
`charrnn eval`.

    loss = mean_loss(model, corpus.split("val"), batch_size=32, seq_len=128)   # nats/char
"""

from __future__ import annotations

import numpy as np
import torch

from charrnn.model.rnn import CharRNN
from charrnn.runtime import autocast
from charrnn.training import distributed
from charrnn.training.batches import eval_batches
from charrnn.training.distributed import Ranks


@torch.no_grad()
def mean_loss(
    model: CharRNN,
    ids: np.ndarray,
    *,
    batch_size: int,
    seq_len: int,
    device: torch.device = torch.device("cpu"),
    precision: str = "fp32",
    ranks: Ranks = Ranks(),
    labels: np.ndarray | None = None,
) -> float:
    """Mean loss in nats per character over every prediction of `ids`, deterministic; a
    labelled model reads each symbol's label id beside it (`labels`, as long as `ids`).
    Under torchrun each rank takes every world-th stream and the sums are reduced."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    state = None
    # a position's label is its target's: the same windows over the labels, their targets
    windows = eval_batches(labels, batch_size, seq_len) if labels is not None else None
    for x, y in eval_batches(ids, batch_size, seq_len):
        lab = None if windows is None else next(windows)[1][ranks.rank :: ranks.world]
        x, y = x[ranks.rank :: ranks.world], y[ranks.rank :: ranks.world]
        if len(x) == 0:
            continue
        x = torch.from_numpy(x).to(device)
        y = torch.from_numpy(y).to(device)
        if lab is not None:
            lab = torch.from_numpy(np.maximum(lab, 0)).to(device)  # -1 pads rows whose targets are ignored
        with autocast(device, precision):
            losses, state = model(x, state, lab, targets=y)
        total += float(losses.sum())
        count += int((y >= 0).sum())
    model.train(was_training)
    total, count = distributed.all_sum([total, count], ranks, device)
    return total / count if count else float("nan")


@torch.no_grad()
def char_logprobs(model: CharRNN, ids: torch.Tensor, *, window: int = 1024, label: int | None = None) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t >= 1, in float32: the text read as one stream from a zero
    state, in windows with the state carried, so any length fits in memory. A labelled model
    reads it as text of the label id `label`."""
    was_training = model.training
    model.eval()
    out, state = [], None
    for a in range(0, len(ids) - 1, window):
        x = ids[a : a + window].unsqueeze(0)  # (1, T)
        y = ids[a + 1 : a + window + 1]  # (T',) T' = T, or T - 1 at the end
        lab = None if label is None else torch.full_like(x, label)
        logits, state = model(x, state, lab)
        logp = torch.log_softmax(logits[0, : len(y)].float(), dim=-1)  # (T', V)
        out.append(logp.gather(1, y[:, None])[:, 0])
    model.train(was_training)
    return torch.cat(out).cpu()
