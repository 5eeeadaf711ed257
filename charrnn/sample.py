"""Text generation, piece by piece: prime, temperature, top-k / top-p, stop string, seed.

    for pieces in generate(model, vocab, SampleConfig(prime="ROMEO:", length=200, seed=7)):
        print(pieces[0], end="")

`generate` yields one tuple per step with a piece of text for each of the
`num_samples` streams (the prime first). The same seed gives the same text.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from charrnn.config import SampleConfig
from charrnn.model import CharRNN
from charrnn.runtime import generator
from charrnn.stepper import FastStepper
from charrnn.vocab import Vocab


def pick(
    logits: torch.Tensor, g: torch.Generator, *, temp: float, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
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
    model: CharRNN, vocab: Vocab, config: SampleConfig = SampleConfig(), *, fast: bool = True
) -> Iterator[tuple[str, ...]]:
    """One tuple per step with a piece of text for each of the `config.num_samples` streams:
    the prime first, then up to `config.length` new characters each. `fast=False` steps
    through `nn.LSTM` itself (the reference the fast path is tested against)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    g = generator(config.seed, device)
    try:
        prime_ids, shown_prime = _prime(vocab, config.prime, unknown=config.unknown, g=g)
        yield (shown_prime,) * config.num_samples
        x = torch.tensor(prime_ids, device=device).unsqueeze(0).expand(config.num_samples, -1)  # (B, P)
        logits, state = model(x)
        logits = logits[:, -1]  # (B, V)
        if fast:
            stepper = FastStepper(model, torch.bfloat16 if config.precision == "bf16" else torch.float32)
            step, state = stepper.step, stepper.convert(state)
        else:
            step = _reference_step(model)
        streams = _Streams(config.num_samples, config.stop)
        for i in range(config.length):
            ids = pick(logits, g, temp=config.temp, top_k=config.top_k, top_p=config.top_p)
            yield streams.add([vocab.chars[j] for j in ids.tolist()])
            if streams.all_done:
                return
            if i + 1 < config.length:
                logits, state = step(ids, state)
        if streams.held:
            yield streams.rest()
    finally:
        model.train(was_training)


def _prime(vocab: Vocab, prime: str, *, unknown: str, g: torch.Generator) -> tuple[list[int], str]:
    """The ids the model reads first, and the text they stand for. No prime: start as a
    document starts, after a newline; else from a random character."""
    ids = vocab.encode(prime, unknown=unknown, context="the prime text")
    if ids:
        return ids, vocab.decode(ids)
    if "\n" in vocab:
        return [vocab.index["\n"]], ""
    ids = [int(torch.randint(len(vocab), (1,), generator=g, device=g.device))]
    return ids, vocab.decode(ids)


class _Streams:
    """Each stream's new text, held back while it may be the start of the stop string; a
    stream that meets the stop string ends there, without it."""

    def __init__(self, n: int, stop: str | None):
        self.stop = stop
        self.hold = len(stop) - 1 if stop else 0
        self.pending = [""] * n
        self.done = [False] * n

    @property
    def all_done(self) -> bool:
        return all(self.done)

    @property
    def held(self) -> bool:
        return any(self.pending)

    def add(self, chars: list[str]) -> tuple[str, ...]:
        """The pieces ready to print once each stream has taken its next character."""
        out = []
        for s, ch in enumerate(chars):
            if self.done[s]:
                out.append("")
                continue
            self.pending[s] += ch
            if self.stop and self.pending[s].endswith(self.stop):
                self.done[s] = True
                out.append(self.pending[s][: -len(self.stop)])
                self.pending[s] = ""
            elif len(self.pending[s]) > self.hold:
                cut = len(self.pending[s]) - self.hold
                out.append(self.pending[s][:cut])
                self.pending[s] = self.pending[s][cut:]
            else:
                out.append("")
        return tuple(out)

    def rest(self) -> tuple[str, ...]:
        """What is still held back when the length runs out."""
        return tuple(self.pending)


def _reference_step(model: CharRNN):
    """The plain path: one `nn.LSTM` call per character."""

    def step(ids, state):
        logits, state = model(ids.unsqueeze(1), state)
        return logits[:, -1], state

    return step


def sample_text(model: CharRNN, vocab: Vocab, **settings) -> str:
    """The first stream's whole text (prime included) as one string; `settings` are
    SampleConfig fields."""
    return "".join(pieces[0] for pieces in generate(model, vocab, SampleConfig(**settings)))
