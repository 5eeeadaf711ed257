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
    logits = tempered(logits, temp)
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cum - torch.softmax(sorted_logits, dim=-1) > top_p  # the first token is always kept
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return draw(torch.softmax(logits, dim=-1), g)


def draw(probs: torch.Tensor, g: torch.Generator, noise: torch.Tensor | None = None) -> torch.Tensor:
    """One id per row of `probs` (B, V), drawn with `g`: each probability over exponential
    noise, the largest wins. This is the draw `torch.multinomial(probs, 1)` makes, written out
    so that many runs' rows can share the division and the argmax while each row's noise comes
    from its own generator (`noise`, already filled that way)."""
    if noise is None:
        noise = torch.empty_like(probs).exponential_(generator=g)
    return (probs / noise).argmax(dim=-1)


def tempered(logits: torch.Tensor, temp: float | torch.Tensor) -> torch.Tensor:
    """Logits (B, V) over the temperature (a number, or one per row as (B, 1)), in float64.
    Shifted so the largest is 0 first: a tiny temperature then gives -inf (probability 0) for
    the rest instead of inf - inf = NaN. Each row's result is the same whatever rows are beside it."""
    return (logits - logits.max(dim=-1, keepdim=True).values).double() / temp


def plain(config: SampleConfig) -> bool:
    """Sampled from the tempered distribution itself: no argmax, no top-k or top-p cut."""
    return config.temp > 0 and config.top_k is None and config.top_p is None


@torch.no_grad()
def generate(
    model: CharRNN, vocab: Vocab, config: SampleConfig = SampleConfig(), *, fast: bool = True
) -> Iterator[tuple[str, ...]]:
    """One tuple per step with a piece of text for each of the `config.num_samples` streams:
    the prime first, then up to `config.length` new characters each. `fast=False` steps
    through `nn.LSTM` itself (the reference the fast path is tested against)."""
    was_training = model.training
    model.eval()
    try:
        if fast:
            stepper = FastStepper(model, torch.bfloat16 if config.precision == "bf16" else torch.float32)
            step, convert = stepper.step, stepper.convert
        else:
            step, convert = _reference_step(model), None
        run = SampleRun(vocab, config, next(model.parameters()).device)
        read_primes(model, [run], convert)
        yield run.first
        while not run.finished:
            ids, pieces = run.pick()
            yield pieces
            if not run.finished:
                run.logits, run.state = step(ids, run.state)
        if run.rest is not None:
            yield run.rest
    finally:
        model.train(was_training)


class SampleRun:
    """One sampling run of `config.num_samples` streams, stepped from outside: its random
    generator, its prime, the next-character logits and state, and the text held back for the
    stop string. `generate` steps one run alone; a server steps many in one batch, each with
    its own options and seed.

    `read_primes` reads the prime and sets `logits` and `state`; after `first` (the prime as
    shown), call `pick` (or draw the ids elsewhere and `take` them) until `finished`, stepping
    the model with the ids in between and setting `logits` and `state` from it. `rest` is then
    the text still held back, if any."""

    def __init__(self, vocab: Vocab, config: SampleConfig, device: torch.device):
        self.vocab, self.config = vocab, config
        self.g = generator(config.seed, device)
        self.prime_ids, shown = _prime(vocab, config.prime, unknown=config.unknown, g=self.g)
        self.first = (shown,) * config.num_samples
        self.streams = _Streams(config.num_samples, config.stop)
        self.picked = 0  # characters picked for each stream so far
        self.logits: torch.Tensor | None = None  # (B, V)
        self.state = None  # in the stepper's form
        self.noise: torch.Tensor | None = None  # (B, S, V): noise drawn for the next steps (batching.py)

    @property
    def finished(self) -> bool:
        return self.picked >= self.config.length or self.streams.all_done

    def pick(self) -> tuple[torch.Tensor, tuple[str, ...]]:
        """The next character of each stream: its ids (B,) and the pieces of text ready to print."""
        ids = self.ids(self.logits)
        return ids, self.take(ids.tolist())

    def ids(self, logits: torch.Tensor) -> torch.Tensor:
        """Next ids (B,) drawn from `logits` (B, V) with this run's options and generator."""
        c = self.config
        return pick(logits, self.g, temp=c.temp, top_k=c.top_k, top_p=c.top_p)

    def take(self, ids: list[int]) -> tuple[str, ...]:
        """The pieces ready to print once each stream has taken its next id."""
        self.picked += 1
        return self.streams.add([self.vocab.chars[j] for j in ids])

    @property
    def rest(self) -> tuple[str, ...] | None:
        """Text held back when the length ran out before the stop string was complete."""
        if self.streams.all_done or not self.streams.held:
            return None
        return self.streams.rest()


@torch.no_grad()
def read_primes(model: CharRNN, runs: list[SampleRun], convert=None) -> None:
    """Read the primes of `runs`, which must all be of one length, in one forward pass, and set
    each run's `logits` and `state` (in the stepper's form, through `convert`)."""
    device = next(model.parameters()).device
    x = torch.cat(
        [torch.tensor(r.prime_ids, device=device).unsqueeze(0).expand(r.config.num_samples, -1) for r in runs]
    )  # (B, P)
    logits, state = model(x)
    row = 0
    for r in runs:
        rows = slice(row, row + r.config.num_samples)
        r.logits = logits[rows, -1]  # (B, V)
        own = tuple(s[:, rows] for s in state)
        r.state = convert(own) if convert else own
        row += r.config.num_samples


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
        if not self.stop:
            return tuple(chars)
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
