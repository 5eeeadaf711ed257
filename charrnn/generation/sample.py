"""Text generation, piece by piece: prime, temperature, top-k / top-p, stop strings, seed.

    for pieces in generate(model, vocab, SampleConfig(prime="ROMEO:", length=200, seed=7)):
        print(pieces[0], end="")

`generate` yields one tuple per step with a piece of text for each of the
`num_samples` streams (the prime first). The same seed gives the same text. With
`logprobs=N`, each tuple also carries (as `Pieces.tokens`) each stream's log-probability of
what it picked and of the N likeliest symbols.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from charrnn.config import ModelConfig, SampleConfig
from charrnn.corpus.documents import EOD, EOD_TEXT
from charrnn.corpus.vocab import Vocab
from charrnn.errors import BadValueError
from charrnn.generation.prime import read_primes
from charrnn.generation.streams import Documents, Labels, Streams
from charrnn.model.rnn import CharRNN
from charrnn.model.stepper import FastStepper
from charrnn.runtime import generator


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
    """Sampled from the tempered distribution itself: no argmax, no top-k or top-p cut, and
    nothing to report of it (log-probabilities)."""
    return (
        config.temp > 0
        and config.top_k is None
        and config.top_p is None
        and config.documents is None
        and config.logprobs is None
    )


class Pieces(tuple):
    """A piece of text for each stream; where log-probabilities were asked for, `tokens` holds
    each stream's symbols picked since the last pieces: (text, logprob, {text: logprob} of the
    likeliest), in natural logs of the model's own distribution (before temperature)."""

    tokens: tuple[list, ...] | None = None

    def __new__(cls, pieces, tokens=None):
        self = super().__new__(cls, pieces)
        self.tokens = tokens
        return self


def joined(a: tuple, b: tuple) -> tuple:
    """Two steps' pieces as one (their tokens, if any, too)."""
    text = tuple(x + y for x, y in zip(a, b, strict=True))
    ta, tb = getattr(a, "tokens", None), getattr(b, "tokens", None)
    if ta is None and tb is None:
        return text
    return Pieces(text, tuple(x + y for x, y in zip(ta or ([],) * len(a), tb or ([],) * len(b), strict=True)))


@torch.no_grad()
def generate(
    model: CharRNN, vocab: Vocab, config: SampleConfig = SampleConfig(), *, fast: bool = True, eod_text: str = EOD_TEXT
) -> Iterator[tuple[str, ...]]:
    """One tuple per step with a piece of text for each of the `config.num_samples` streams:
    the prime first, then up to `config.length` new characters each (or `config.documents`
    whole documents). `fast=False` steps through `nn.LSTM` itself (the reference the fast
    path is tested against). A model of documents writes the end of one as `eod_text`."""
    was_training = model.training
    model.eval()
    try:
        if fast:
            stepper = FastStepper(model, torch.bfloat16 if config.precision == "bf16" else torch.float32)
            step, convert = stepper.step, stepper.convert
        else:
            step, convert = _reference_step(model), None
        run = SampleRun(vocab, config, next(model.parameters()).device, eod_text, model.config)
        while not run.primed:
            read_primes(model, [run], convert)
        yield run.first
        while not run.finished:
            ids, pieces = run.pick()
            yield pieces
            if not run.finished:
                run.logits, run.state = step(ids, run.state, run.label_ids)
        if run.rest is not None:
            yield run.rest
    finally:
        model.train(was_training)


class SampleRun:
    """One sampling run of `config.num_samples` streams, stepped from outside: its random
    generator, its prime, the next-character logits and state, and the text held back for the
    stop string. `generate` steps one run alone; a server steps many in one batch, each with
    its own options and seed.

    `read_primes` reads the prime (until `primed`) and sets `logits` and `state`; after `first`
    (the prime as shown), call `pick` (or draw the ids elsewhere and `take` them) until
    `finished`, stepping the model with the ids in between and setting `logits` and `state`
    from it. `rest` is then the text still held back, if any.

    A labelled model (`model_config.labels`) is stepped with `label_ids` beside the ids."""

    def __init__(
        self,
        vocab: Vocab,
        config: SampleConfig,
        device: torch.device,
        eod_text: str,
        model_config: ModelConfig,
    ):
        self.vocab, self.config = vocab, config
        self.g = generator(config.seed, device)
        self.prime_ids, shown = _prime(vocab, config.prime, unknown=config.unknown, g=self.g)
        self.labels = Labels.of(model_config, config, self.g, device)
        self.first = (shown,) * config.num_samples
        self.streams = Streams(config.num_samples, (config.stop or "", *config.stops))
        self.prime_read = 0  # ids of the prime read so far (see `read_primes`)
        self.prime_state = None  # the model's state after them, while the prime is read in pieces
        self.picked = 0  # characters picked for each stream so far
        self.logits: torch.Tensor | None = None  # (B, V)
        self.state = None  # in the stepper's form
        # a model of documents: its end-of-document symbol, and how the text shows it
        self.eod = vocab.index.get(EOD)
        self.unk = None if config.allow_unk else vocab.unk  # a symbol never drawn
        self.chars = list(vocab.shown_chars)
        if self.eod is not None:
            self.chars[self.eod] = eod_text if config.doc_separator is None else config.doc_separator
        self.docs = Documents(self, config) if config.documents is not None else None
        if self.docs is not None and config.logprobs is not None:
            raise BadValueError("logprobs are for text, not for whole documents")
        self.noise: torch.Tensor | None = None  # (B, S, V): noise drawn for the next steps (batching.py)

    @property
    def primed(self) -> bool:
        return self.prime_read >= len(self.prime_ids)

    @property
    def finished(self) -> bool:
        if self.docs is not None:  # whole documents: `length` does not apply
            return self.streams.all_done
        return self.picked >= self.config.length or self.streams.all_done

    def pick(self) -> tuple[torch.Tensor, tuple[str, ...]]:
        """The next character of each stream: its ids (B,) and the pieces of text ready to print."""
        ids = self.ids(self.logits)
        return ids, self.take(ids.tolist(), self.logits)

    def ids(self, logits: torch.Tensor) -> torch.Tensor:
        """Next ids (B,) drawn from `logits` (B, V) with this run's options and generator."""
        c = self.config
        if self.unk is not None:
            logits = logits.clone()
            logits[:, self.unk] = float("-inf")
        if self.docs is not None:
            logits = self.docs.masked(logits)
        ids = pick(logits, self.g, temp=c.temp, top_k=c.top_k, top_p=c.top_p)
        return ids if self.docs is None else self.docs.forced(ids)

    @property
    def label_ids(self) -> torch.Tensor | None:
        """(B,): each stream's label id, for a labelled model's next step; else None."""
        return None if self.labels is None else self.labels.ids

    def take(self, ids: list[int], logits: torch.Tensor | None = None) -> tuple[str, ...]:
        """The pieces ready to print once each stream has taken its next id (drawn from
        `logits`, which give their log-probabilities where they are asked for)."""
        self.picked += 1
        if self.labels is not None:
            self.labels.after(ids, self.eod)
        if self.docs is not None:
            return self.docs.take(ids)
        was_done = list(self.streams.done)
        pieces = self.streams.add([self.chars[j] for j in ids])
        if self.config.logprobs is None:
            return pieces
        return Pieces(pieces, self._tokens(ids, logits, was_done))

    def _tokens(self, ids: list[int], logits: torch.Tensor, was_done: list[bool]) -> tuple[list, ...]:
        """Each stream's pick with its log-probability and the likeliest symbols' (none for a
        stream that was done already)."""
        lp = torch.log_softmax(logits.double(), dim=-1)
        k = min(self.config.logprobs, lp.size(-1))
        top = lp.topk(k, dim=-1) if k else None
        out = []
        for s, j in enumerate(ids):
            if was_done[s]:
                out.append([])
                continue
            alts = (
                {}
                if top is None
                else {self.chars[int(i)]: float(v) for v, i in zip(top.values[s], top.indices[s], strict=True)}
            )
            out.append([(self.chars[j], float(lp[s, j]), alts)])
        return tuple(out)

    @property
    def rest(self) -> tuple[str, ...] | None:
        """Text held back when the length ran out before the stop string was complete."""
        if self.streams.all_done or not self.streams.held:
            return None
        return self.streams.rest()


def _prime(vocab: Vocab, prime: str, *, unknown: str, g: torch.Generator) -> tuple[list[int], str]:
    """The ids the model reads first, and the text they stand for. A model of documents
    starts as a document starts, after the end of one. Otherwise, no prime: start after a
    newline; else from a random symbol (not <unk>)."""
    ids = vocab.encode(prime, unknown=unknown, context="the prime text")
    # the prime as written: a word read as <unk> shows as itself, a skipped character not at all
    shown = vocab.tokenizer.normalized(prime) if vocab.unknown_rule(unknown) == "unk" else vocab.decode(ids)
    if EOD in vocab:
        if EOD in prime:
            raise BadValueError("the prime text holds U+FDD0, which charrnn keeps for the end of a document")
        return [vocab.index[EOD], *ids], shown
    if ids:
        return ids, shown
    if "\n" in vocab:
        return [vocab.index["\n"]], ""
    ids = [int(torch.randint(len(vocab), (1,), generator=g, device=g.device))]
    if ids[0] == vocab.unk:  # UNK is the last of a capped vocabulary of words; one of characters sorts it in
        ids = [ids[0] - 1 if ids[0] else 1]
    return ids, vocab.decode(ids)


def _reference_step(model: CharRNN):
    """The plain path: one `nn.LSTM` call per character."""

    def step(ids, state, labels=None):
        logits, state = model(ids.unsqueeze(1), state, None if labels is None else labels.unsqueeze(1))
        return logits[:, -1], state

    return step


def sample_text(model: CharRNN, vocab: Vocab, eod_text: str = EOD_TEXT, **settings) -> str:
    """The first stream's whole text (prime included) as one string; `settings` are
    SampleConfig fields."""
    return "".join(pieces[0] for pieces in generate(model, vocab, SampleConfig(**settings), eod_text=eod_text))
