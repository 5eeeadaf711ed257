"""Text generation, piece by piece: prime, temperature, top-k / top-p, stop string, seed.

    for pieces in generate(model, vocab, prime="ROMEO:", length=200, seed=7):
        print(pieces[0], end="")

`generate` yields one tuple per step with a piece of text for each of the
`num_samples` streams (the prime first). The same seed gives the same text.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from charrnn.model import CharRNN
from charrnn.runtime import generator
from charrnn.stepper import FastStepper
from charrnn.vocab import Vocab


def pick(logits: torch.Tensor, temp: float, top_k: int | None, top_p: float | None, g: torch.Generator) -> torch.Tensor:
    """Next ids (B,) from logits (B, V); temperature 0 is argmax."""
    logits = logits.float()
    if temp == 0:
        return logits.argmax(dim=-1)
    # Shift so the largest logit is 0 and divide in float64: a tiny temperature then gives
    # -inf (probability 0) for the rest instead of inf - inf = NaN.
    logits = (logits - logits.max(dim=-1, keepdim=True).values).double() / temp
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cum - torch.softmax(sorted_logits, dim=-1) > top_p  # the first token is always kept
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=g).squeeze(-1)


@torch.no_grad()
def generate(
    model: CharRNN,
    vocab: Vocab,
    prime: str = "",
    length: int = 1000,
    temp: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    stop: str | None = None,
    seed: int | None = None,
    num_samples: int = 1,
    unknown: str = "error",
    fast: bool = True,
    precision: str = "fp32",
) -> Iterator[tuple[str, ...]]:
    was_training = model.training
    model.eval()
    try:
        yield from _generate(
            model, vocab, prime, length, temp, top_k, top_p, stop, seed, num_samples, unknown, fast, precision
        )
    finally:
        model.train(was_training)


def _generate(model, vocab, prime, length, temp, top_k, top_p, stop, seed, num_samples, unknown, fast, precision):
    device = next(model.parameters()).device
    g = generator(seed, device)
    b = num_samples
    prime_ids = vocab.encode(prime, unknown=unknown, context="the prime text")
    shown_prime = vocab.decode(prime_ids)
    if not prime_ids:
        # No prime: start as a document starts, after a newline; else from a random character.
        if "\n" in vocab:
            prime_ids = [vocab.index["\n"]]
        else:
            prime_ids = [int(torch.randint(len(vocab), (1,), generator=g, device=device))]
            shown_prime = vocab.decode(prime_ids)
    yield (shown_prime,) * b

    x = torch.tensor(prime_ids, device=device).unsqueeze(0).expand(b, -1)  # (B, P)
    logits, state = model(x)
    logits = logits[:, -1]  # (B, V)
    if fast:
        stepper = FastStepper(model, torch.bfloat16 if precision == "bf16" else torch.float32)
        step, state = stepper.step, stepper.convert(state)
    else:
        step = _reference_step(model)

    pending = [""] * b
    done = [False] * b
    hold = len(stop) - 1 if stop else 0
    for i in range(length):
        ids = pick(logits, temp, top_k, top_p, g)
        chars = [vocab.chars[j] for j in ids.tolist()]
        out = []
        for s, ch in enumerate(chars):
            if done[s]:
                out.append("")
                continue
            pending[s] += ch
            if stop and pending[s].endswith(stop):
                done[s] = True
                out.append(pending[s][: -len(stop)])
                pending[s] = ""
            elif len(pending[s]) > hold:
                cut = len(pending[s]) - hold
                out.append(pending[s][:cut])
                pending[s] = pending[s][cut:]
            else:
                out.append("")
        yield tuple(out)
        if all(done):
            return
        if i + 1 < length:
            logits, state = step(ids, state)
    if any(pending):
        yield tuple(pending)


def _reference_step(model: CharRNN):
    """The plain path: one `nn.LSTM` call per character."""

    def step(ids, state):
        logits, state = model(ids.unsqueeze(1), state)
        return logits[:, -1], state

    return step


def sample_text(model: CharRNN, vocab: Vocab, **kwargs) -> str:
    """The first stream's whole text (prime included) as one string."""
    return "".join(pieces[0] for pieces in generate(model, vocab, **kwargs))
