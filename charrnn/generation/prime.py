"""Reading the primes of sampling runs: their characters through the model, so that their
next-character logits and state are ready. A prime is read once for all its samples (they
start from the same state; a labelled model's rows once a label), and a long one in pieces of
PRIME_CHUNK characters, so that no read takes more than a piece's time and memory: the server
reads one piece between two steps of the runs already writing.

    while not run.primed:
        read_primes(model, [run])
"""

from __future__ import annotations

import torch

from charrnn.model.rnn import CharRNN

PRIME_CHUNK = 256  # characters of a prime read in one forward pass


def prime_rows(run) -> int:
    """Rows a run's prime is read in: one, unless a labelled model's streams draw labels of their own."""
    labels = run.labels
    return 1 if labels is None or labels.fixed is not None else run.config.num_samples


@torch.no_grad()
def read_primes(model: CharRNN, runs: list, convert=None) -> list:
    """Read the next piece of each run's prime (runs with pieces of the same length in one
    forward pass), and return the runs whose prime is now read: their `logits` and `state` (in
    the stepper's form, through `convert`) are set, one row per sample."""
    device = next(model.parameters()).device
    groups: dict[tuple[int, bool], list] = {}
    for r in runs:
        n = min(PRIME_CHUNK, len(r.prime_ids) - r.prime_read)
        groups.setdefault((n, r.prime_state is None), []).append(r)
    done = []
    for (n, fresh), group in groups.items():
        rows = [prime_rows(r) for r in group]
        x = torch.cat(
            [
                torch.tensor(r.prime_ids[r.prime_read : r.prime_read + n], device=device).unsqueeze(0).expand(k, -1)
                for r, k in zip(group, rows, strict=True)
            ]
        )  # (B, n)
        labels = None
        if group[0].labels is not None:  # the stream's label at every position of its prime
            labels = torch.cat([r.labels.ids[:k] for r, k in zip(group, rows, strict=True)]).unsqueeze(1)
            labels = labels.expand(-1, n)
        state = None if fresh else tuple(torch.cat([r.prime_state[i] for r in group], dim=1) for i in range(
            len(group[0].prime_state)))  # fmt: skip
        logits, state = model(x, state, labels)
        row = 0
        for r, k in zip(group, rows, strict=True):
            own = tuple(s[:, row : row + k] for s in state)
            r.prime_read += n
            if r.prime_read < len(r.prime_ids):
                r.prime_state = own
            else:
                _ready(r, logits[row : row + k, -1], own, convert)
                done.append(r)
            row += k
    return done


def _ready(run, last: torch.Tensor, state: tuple, convert) -> None:
    """The prime is read: its last logits and its state, one row per sample."""
    n = run.config.num_samples
    if last.size(0) != n:
        last = last.expand(n, -1).contiguous()
        state = tuple(s.expand(-1, n, -1).contiguous() for s in state)
    run.logits, run.prime_state = last, None
    run.state = convert(state) if convert else state
