"""Text generation, piece by piece: prime, temperature, top-k / top-p, stop string, seed.

    for pieces in generate(model, vocab, SampleConfig(prime="ROMEO:", length=200, seed=7)):
        print(pieces[0], end="")

`generate` yields one tuple per step with a piece of text for each of the
`num_samples` streams (the prime first). The same seed gives the same text.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from charrnn.config import MAX_DOCUMENT, ModelConfig, SampleConfig
from charrnn.corpus.documents import EOD, EOD_TEXT
from charrnn.corpus.vocab import Vocab
from charrnn.errors import BadValueError
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
    """Sampled from the tempered distribution itself: no argmax, no top-k or top-p cut."""
    return config.temp > 0 and config.top_k is None and config.top_p is None and config.documents is None


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

    `read_primes` reads the prime and sets `logits` and `state`; after `first` (the prime as
    shown), call `pick` (or draw the ids elsewhere and `take` them) until `finished`, stepping
    the model with the ids in between and setting `logits` and `state` from it. `rest` is then
    the text still held back, if any.

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
        self.labels = _Labels.of(model_config, config, self.g, device)
        self.first = (shown,) * config.num_samples
        self.streams = _Streams(config.num_samples, config.stop)
        self.picked = 0  # characters picked for each stream so far
        self.logits: torch.Tensor | None = None  # (B, V)
        self.state = None  # in the stepper's form
        # a model of documents: its end-of-document symbol, and how the text shows it
        self.eod = vocab.index.get(EOD)
        self.unk = None if config.allow_unk else vocab.unk  # a symbol never drawn
        self.chars = list(vocab.shown_chars)
        if self.eod is not None:
            self.chars[self.eod] = eod_text if config.doc_separator is None else config.doc_separator
        self.docs = _Documents(self, config) if config.documents is not None else None
        self.noise: torch.Tensor | None = None  # (B, S, V): noise drawn for the next steps (batching.py)

    @property
    def finished(self) -> bool:
        if self.docs is not None:  # whole documents: `length` does not apply
            return self.streams.all_done
        return self.picked >= self.config.length or self.streams.all_done

    def pick(self) -> tuple[torch.Tensor, tuple[str, ...]]:
        """The next character of each stream: its ids (B,) and the pieces of text ready to print."""
        ids = self.ids(self.logits)
        return ids, self.take(ids.tolist())

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

    def take(self, ids: list[int]) -> tuple[str, ...]:
        """The pieces ready to print once each stream has taken its next id."""
        self.picked += 1
        if self.labels is not None:
            self.labels.after(ids, self.eod)
        if self.docs is not None:
            return self.docs.take(ids)
        return self.streams.add([self.chars[j] for j in ids])

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
    labels = None
    if runs[0].labels is not None:  # the stream's label at every position of its prime
        labels = torch.cat([r.labels.ids for r in runs]).unsqueeze(1).expand(-1, x.size(1))
    logits, state = model(x, None, labels)
    row = 0
    for r in runs:
        rows = slice(row, row + r.config.num_samples)
        r.logits = logits[rows, -1]  # (B, V)
        own = tuple(s[:, rows] for s in state)
        r.state = convert(own) if convert else own
        row += r.config.num_samples


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


class _Labels:
    """The label of each stream of a labelled model's run: the one asked for, or for each
    document one drawn by the label counts (from a generator of its own, seeded from the run's,
    so the characters' draws are the same whichever labels are drawn)."""

    def __init__(self, model_config: ModelConfig, config: SampleConfig, g, device):
        self.fixed = None if config.label is None else model_config.label_id(config.label)
        self.weights = torch.tensor(model_config.label_counts, dtype=torch.float64)
        self.g = None
        if self.fixed is None:
            seed = int(torch.randint(2**62, (1,), generator=g, device=g.device))
            self.g = torch.Generator().manual_seed(seed)
        self.ids = torch.tensor([self.draw() for _ in range(config.num_samples)], dtype=torch.long, device=device)

    @classmethod
    def of(cls, model_config: ModelConfig, config: SampleConfig, g, device) -> _Labels | None:
        if not model_config.labels:
            model_config.label_id(config.label)  # refuses a label for a model without labels
            return None
        return cls(model_config, config, g, device)

    def draw(self) -> int:
        if self.fixed is not None:
            return self.fixed
        return int(torch.multinomial(self.weights, 1, generator=self.g))

    def after(self, ids: list[int], eod: int | None) -> None:
        """The streams that took the end of a document write the next one with a new label."""
        if self.fixed is None:
            for s, j in enumerate(ids):
                if j == eod:
                    self.ids[s] = self.draw()


class _Documents:
    """Whole documents, `config.documents` of them per stream: a document ends where the model
    writes the end-of-document symbol (not before `min_length` characters; at `max_length`,
    or MAX_DOCUMENT without one, it is ended there), and the next begins with the prime, fed
    to the model a character a step. A stream is done after its last document."""

    def __init__(self, run: SampleRun, config: SampleConfig):
        if run.eod is None:
            raise BadValueError(
                "--documents needs a model trained on documents (several files, a directory, --doc-sep)"
            )
        n = config.num_samples
        self.run, self.want = run, config.documents
        self.min = config.min_length or 0
        self.max = config.max_length or max(MAX_DOCUMENT, self.min)
        self.prime = run.prime_ids[1:]  # after the end-of-document symbol
        if self.max <= len(self.prime):
            raise BadValueError(f"--max-length {self.max} leaves no room after the {len(self.prime)}-character prime")
        self.length = [len(self.prime)] * n  # characters of each stream's current document
        self.written = [0] * n  # documents each stream has finished
        self.queue: list[list[int]] = [[] for _ in range(n)]  # ids each stream is fed next, instead of a draw

    def masked(self, logits: torch.Tensor) -> torch.Tensor:
        """No end of a document shorter than `min_length`."""
        short = [s for s, length in enumerate(self.length) if length < self.min]
        if not short:
            return logits
        logits = logits.clone()
        logits[short, self.run.eod] = float("-inf")
        return logits

    def forced(self, ids: torch.Tensor) -> torch.Tensor:
        """The drawn ids, with the fed ones in their place."""
        for s, queue in enumerate(self.queue):
            if queue:
                ids[s] = queue[0]
        return ids

    def take(self, ids: list[int]) -> tuple[str, ...]:
        eod, chars, pieces, ending = self.run.eod, self.run.chars, [], []
        for s, j in enumerate(ids):
            fed = bool(self.queue[s]) and self.queue[s][0] == j
            if fed:
                self.queue[s].pop(0)
            if self.written[s] >= self.want:
                pieces.append("")
                continue
            if j == eod:
                self.written[s] += 1
                self.length[s] = len(self.prime)
                if self.written[s] >= self.want:
                    ending.append(s)
                    pieces.append("")
                    continue
                self.queue[s] = list(self.prime)  # the next document begins with it: shown as it is fed
                pieces.append(chars[eod])
                continue
            if not fed:  # the prime is counted in the length already
                self.length[s] += 1
            if self.length[s] >= self.max and not self.queue[s]:
                self.queue[s] = [eod]
            pieces.append(chars[j])
        out = list(self.run.streams.add(pieces))
        for s in ending:
            out[s] += self.run.streams.end(s)
        return tuple(out)


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

    def add(self, pieces: list[str]) -> tuple[str, ...]:
        """The text ready to print once each stream has taken its next piece (a character; for
        documents, also a separator and the prime)."""
        if not self.stop:
            return tuple("" if done else piece for piece, done in zip(pieces, self.done, strict=True))
        return tuple(self._add(s, piece) for s, piece in enumerate(pieces))

    def _add(self, s: int, piece: str) -> str:
        if self.done[s]:
            return ""
        self.pending[s] += piece
        at = self.pending[s].find(self.stop)
        if at >= 0:
            self.done[s] = True
            out, self.pending[s] = self.pending[s][:at], ""
            return out
        cut = len(self.pending[s]) - self.hold
        if cut <= 0:
            return ""
        out, self.pending[s] = self.pending[s][:cut], self.pending[s][cut:]
        return out

    def end(self, s: int) -> str:
        """Stream `s` is done (its last document is written): what it held back."""
        self.done[s] = True
        out, self.pending[s] = self.pending[s], ""
        return out

    def rest(self) -> tuple[str, ...]:
        """What is still held back when the length runs out."""
        return tuple(self.pending)


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
