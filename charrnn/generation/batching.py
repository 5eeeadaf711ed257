"""Continuous batching: the sampling runs of many requests share one batched step of the
model. A run joins between two steps and leaves when it is done or cancelled; each keeps its
own options, random generator, stop string and state, so a request served alone writes the
same text as `charrnn sample` with the same options and seed.

    batcher = Batcher(model, vocab, max_streams=64, max_waiting=256)
    request = batcher.submit(SampleConfig(prime="ROMEO:", length=200, seed=7), deliver)
    ...                                    # deliver(pieces), then deliver(Done(...))
    request.cancel()                       # a client that went away frees its rows at once
    batcher.close()

One thread runs the loop, so the model is never stepped from two places at once. Under load
a stream's characters come from a batched matrix product whose rounding can differ from the
one-stream product's in the last bits, so a seeded text can part from the one served alone
where two characters are almost equally likely; it is still determined by its own seed and by
what ran beside it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from charrnn.config import SampleConfig
from charrnn.corpus.documents import EOD_TEXT
from charrnn.corpus.vocab import Vocab
from charrnn.errors import BadValueError, CharRNNError
from charrnn.generation.prime import read_primes
from charrnn.generation.sample import SampleRun, draw, joined, plain, tempered
from charrnn.model.rnn import CharRNN
from charrnn.model.stepper import FastStepper

# What deliver() is given: a tuple of pieces (one per sample), or at the end a Done.
Deliver = Callable[[object], None]
MAX_BACKLOG = 1024  # pieces a client may leave unread before its run pauses
# Seconds between hand-overs of what the steps wrote: 20 a second reads as smooth streaming,
# and under load it means fewer wake-ups for the server and fewer, longer lines for clients.
SEND_EVERY = 0.05
NOISE_STEPS = 16  # steps of noise a plain run draws at once
NOISE_SIZE = 1 << 20  # numbers in the batch's noise at most


class Busy(CharRNNError):
    """Too many requests are waiting already."""

    exit_code = 2


class Closed(CharRNNError):
    """The batcher has stopped (the server is shutting down)."""


@dataclass(frozen=True)
class Done:
    """The last thing delivered for a request: why it ended; `error` is set when the run could
    not start (a prime outside the vocabulary, say)."""

    stopped: str  # length | stop | documents | cancelled | error
    error: CharRNNError | None = None


@dataclass(eq=False)
class Request:
    config: SampleConfig
    deliver: Deliver
    backlog: Callable[[], int] = lambda: 0  # pieces delivered that the client has not taken yet
    cancelled: bool = False
    run: SampleRun | None = field(default=None, repr=False)

    def cancel(self) -> None:
        """Stop generating for this request; its rows leave the batch before the next step."""
        self.cancelled = True


class Batcher:
    """Runs every submitted request in one loop, `max_streams` rows at a time at most; the
    others wait, `max_waiting` at most, in the order they came.

    What the steps write is handed over as a list of (request, item) to `dispatch` (default:
    each request's `deliver`, in the batcher's thread); a server passes one that moves the
    list to its event loop in one call.

    The loop runs in a thread of its own, or with `thread=False` in whichever thread calls
    `run()` (until `close()`): the main thread steps the model faster than others do, the
    way torch's CPU thread pool works here (see benchmarks/serve_load.py)."""

    def __init__(
        self,
        model: CharRNN,
        vocab: Vocab,
        *,
        max_streams: int,
        max_waiting: int,
        dispatch: Callable[[list[tuple[Request, object]]], None] | None = None,
        thread: bool = True,
        eod_text: str = EOD_TEXT,
    ):
        self.model, self.vocab, self.eod_text = model, vocab, eod_text
        self.max_streams, self.max_waiting = max_streams, max_waiting
        self.dispatch = dispatch or deliver_each
        self.on_step: Callable[[int, float], None] | None = None  # told each step's rows and seconds (metrics)
        self.stepper = FastStepper(model)
        self.waiting: deque[Request] = deque()
        self.priming: list[Request] = []  # admitted, their primes being read a piece a step
        self.active: list[Request] = []
        self.outbox: dict[Request, list[object]] = {}  # what is to be sent, per request, in order
        self.urgent, self.sent = False, 0.0  # something to send at once; when it was last sent
        self.device = next(model.parameters()).device
        # the requests being stepped, their rows of the batched tensors, and those tensors
        self.batch: list[Request] = []
        self.rows: list[slice] = []
        self.others: list[tuple[Request, slice]] = []  # the requests that are not plain, and their rows
        self.banned: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None  # (B, V)
        self.state: list[list[torch.Tensor]] | None = None  # per layer [h] or [h, c], each (B, H)
        self.temps: torch.Tensor | None = None  # (B, 1): each plain row's temperature
        # (B, S, V): the noise of each plain row's next steps, from its own generator, step k
        # next (drawn S steps at a time: one call per run instead of one per run and step)
        self.noise: torch.Tensor | None = None
        self.k = 0
        self.wake = threading.Condition()
        self.closed = False
        self.thread = None
        if thread:
            self.thread = threading.Thread(target=self.run, name="charrnn-batcher", daemon=True)
            self.thread.start()

    # ------------------------------------------------------------------ called from other threads

    def submit(self, config: SampleConfig, deliver: Deliver, backlog: Callable[[], int] = lambda: 0) -> Request:
        """Queue a run; `deliver` gets its pieces, then a Done. While `backlog()` is over
        MAX_BACKLOG (a client that reads slower than the model writes), the run pauses instead
        of piling up text in memory."""
        if config.precision != "fp32":
            raise BadValueError("the server samples in fp32 (one batched step for every request)")
        if config.num_samples > self.max_streams:
            raise BadValueError(f"num_samples {config.num_samples} is more than --max-streams {self.max_streams}")
        request = Request(config, deliver, backlog)
        with self.wake:
            if self.closed:
                raise Closed("the server is shutting down")
            queued = self._queued()
            if self._queued([*self.waiting, request]) > queued and queued >= self.max_waiting:
                raise Busy(f"{queued} requests are waiting already; try again shortly")
            self.waiting.append(request)
            self.wake.notify()
        return request

    def load(self) -> dict[str, int]:
        """Rows being generated, and requests waiting for room."""
        with self.wake:
            rows = sum(r.config.num_samples for r in [*self.active, *self.priming])
            return {"streams": rows, "waiting": self._queued()}

    def _queued(self, waiting=None) -> int:
        """How many of the waiting requests the free rows cannot take at the next step (called
        holding the lock): those wait for room; the others are only about to start."""
        room = self.max_streams - sum(r.config.num_samples for r in [*self.active, *self.priming])
        queued = 0
        for r in self.waiting if waiting is None else waiting:
            if queued or r.config.num_samples > room:
                queued += 1
            else:
                room -= r.config.num_samples
        return queued

    def close(self) -> None:
        """Cancel everything and stop the loop."""
        with self.wake:
            self.closed = True
            for r in [*self.waiting, *self.priming, *self.active]:
                r.cancel()
            self.wake.notify()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=10)

    # ------------------------------------------------------------------ the loop

    @torch.no_grad()
    def run(self) -> None:
        """The loop: admit, pick, step, hand over, until `close()`."""
        while True:
            with self.wake:
                while not self.closed and not self.active and not self.waiting and not self.priming:
                    self.wake.wait()
                if self.closed:
                    break
                joining = self._admit()
            self._start(joining)
            if self.priming:
                self._prime()  # a piece of each new prime between two steps of the runs writing
            going = [r for r in self.active if r.cancelled or r.backlog() <= MAX_BACKLOG]  # others are paused
            for request in [r for r in going if r.cancelled]:
                self._finish(request, "cancelled")
            self._gather([r for r in going if not r.cancelled])
            if self.batch:
                started, rows = time.perf_counter(), sum(r.config.num_samples for r in self.batch)
                self._step(self._pick())
                if self.on_step is not None:
                    self.on_step(rows, time.perf_counter() - started)
                self._send()
            elif not self.priming:  # every run is paused: wait for a client, or a newcomer
                self._send(now=True)
                if self.active:
                    with self.wake:
                        self.wake.wait(timeout=0.01)
        for request in [*self.active, *self.priming]:
            self._finish(request, "cancelled")
        with self.wake:
            waiting, self.waiting = list(self.waiting), deque()
        for request in waiting:
            self._outbox(request, Done("cancelled"))
        self._send(now=True)

    def _admit(self) -> list[Request]:
        """Waiting requests that fit beside the active ones (called holding the lock)."""
        rows = sum(r.config.num_samples for r in [*self.active, *self.priming])
        joining = []
        while self.waiting and (
            self.waiting[0].cancelled or rows + self.waiting[0].config.num_samples <= self.max_streams
        ):
            request = self.waiting.popleft()
            if request.cancelled:
                self._outbox(request, Done("cancelled"))
                continue
            rows += request.config.num_samples
            joining.append(request)
        return joining

    def _start(self, joining: list[Request]) -> None:
        """The newcomers' runs, their primes to be read."""
        for request in joining:
            try:
                request.run = SampleRun(self.vocab, request.config, self.device, self.eod_text, self.model.config)
            except CharRNNError as e:  # a prime outside the vocabulary
                self._outbox(request, Done("error", error=e))
                continue
            with self.wake:
                self.priming.append(request)

    def _prime(self) -> None:
        """Read the next piece of every new prime (`read_primes`: those of one length in one
        pass); the runs whose prime is read join the ones writing."""
        for request in [r for r in self.priming if r.cancelled]:
            self._finish(request, "cancelled")
        ready = read_primes(self.model, [r.run for r in self.priming], self.stepper.convert)
        for request in [r for r in self.priming if r.run in ready]:
            self._outbox(request, request.run.first)
            with self.wake:
                self.priming.remove(request)
                self.active.append(request)
            if request.run.finished:  # length 0
                self._finish(request, "length")

    def _gather(self, requests: list[Request]) -> None:
        """Make the batched logits and state hold these requests' rows, in this order (they
        stay there from step to step until the requests change)."""
        if requests == self.batch:
            return
        for request, rows in zip(self.batch, self.rows, strict=True):  # back to each run its own rows
            run = request.run
            run.logits = self.logits[rows]
            run.state = [[t[rows] for t in layer] for layer in self.state]
            run.noise = self.noise[rows, self.k :]
        self.batch, self.rows = list(requests), []
        if not requests:
            self.logits = self.state = self.noise = None
            return
        row = 0
        for request in requests:
            self.rows.append(slice(row, row + request.config.num_samples))
            row += request.config.num_samples
        runs = [r.run for r in requests]
        if len(runs) == 1:  # alone: its own tensors, stepped as `generate` steps them
            self.logits, self.state = runs[0].logits, runs[0].state
        else:
            self.logits = torch.cat([run.logits for run in runs])
            self.state = [
                [torch.cat([run.state[layer][k] for run in runs]) for k in range(len(runs[0].state[layer]))]
                for layer in range(len(runs[0].state))
            ]  # per layer [h] or [h, c], each (B, H)
        self.others = [(r, rows) for r, rows in zip(requests, self.rows, strict=True) if not plain(r.config)]
        self.banned = None  # (B, V): True where a plain row may not draw (a capped vocabulary's <unk>)
        if self.vocab.unk is not None:
            self.banned = torch.zeros(row, len(self.vocab), dtype=torch.bool, device=self.device)
            for r, rows in zip(requests, self.rows, strict=True):
                self.banned[rows, self.vocab.unk] = r.run.unk is not None
        temps = [float(r.config.temp) if plain(r.config) else 1.0 for r in requests]
        self.temps = torch.tensor(temps, dtype=torch.float64, device=self.device).repeat_interleave(
            torch.tensor([r.config.num_samples for r in requests], device=self.device)
        )[:, None]  # (B, 1)
        # each run's noise drawn and not used yet, topped up to as many steps as the most any has
        kept = [r.run.noise for r in requests]
        steps = max((n.size(1) for n in kept if n is not None), default=0)
        self.noise = torch.cat([self._topped_up(r, n, steps) for r, n in zip(requests, kept, strict=True)])
        self.k = 0
        for request in requests:
            request.run.noise = None

    def _topped_up(self, request: Request, kept: torch.Tensor | None, steps: int) -> torch.Tensor:
        if kept is None:
            return self._noise(request, steps)
        if kept.size(1) == steps:
            return kept
        return torch.cat([kept, self._noise(request, steps - kept.size(1))], dim=1)

    def _noise(self, request: Request, steps: int) -> torch.Tensor:
        """(rows, steps, V): a request's noise for its next steps; a plain run's drawn from its
        own generator in the order its steps would draw it one at a time (`draw`), the others'
        unused."""
        n, vocab = request.config.num_samples, len(self.vocab)
        if not plain(request.config):
            return torch.ones(n, steps, vocab, dtype=torch.float64, device=self.device)
        fresh = torch.empty(steps, n, vocab, dtype=torch.float64, device=self.device)
        return fresh.exponential_(generator=request.run.g).transpose(0, 1)

    def _next_noise(self) -> torch.Tensor:
        """(B, V): every row's noise for this step, drawing the next steps' when it runs out.
        On the CPU a generator draws the same numbers for S steps at once as for one step at a
        time; on CUDA it need not, so there each step draws its own."""
        if self.k == self.noise.size(1):
            rows = sum(r.config.num_samples for r in self.batch)
            steps = 1 if self.device.type != "cpu" else max(1, min(NOISE_STEPS, NOISE_SIZE // (rows * len(self.vocab))))
            self.noise, self.k = torch.cat([self._noise(r, steps) for r in self.batch]), 0
        self.k += 1
        return self.noise[:, self.k - 1]

    def _pick(self) -> torch.Tensor:
        """Every batched request's next characters, into the outbox; those that are done leave
        the batch. Returns the ids of the rows that go on.

        The plain runs (see `plain`) share one softmax, division and argmax; each run's rows of
        the noise come from its own generator, so its draw is the one `pick` would make. The
        others pick from their own rows."""
        logits = self.logits if self.banned is None else self.logits.masked_fill(self.banned, float("-inf"))
        probs = torch.softmax(tempered(logits, self.temps), dim=-1)
        ids = draw(probs, None, self._next_noise())
        for request, rows in self.others:
            ids[rows] = request.run.ids(self.logits[rows])
        listed = ids.tolist()
        going_on, kept = [], []
        for request, rows in zip(self.batch, self.rows, strict=True):
            run = request.run
            self._outbox(
                request, run.take(listed[rows], self.logits[rows] if run.config.logprobs is not None else None)
            )
            if run.picked == 1:
                self.urgent = True  # the first character goes out at once
            if not run.finished:
                going_on.append(request)
                kept.extend(range(rows.start, rows.stop))
                continue
            if run.rest is not None:
                self._outbox(request, run.rest)
            self._finish(request, "length" if not run.streams.all_done else "documents" if run.docs else "stop")
        if len(going_on) < len(self.batch):
            ids = ids[kept]
            self._gather(going_on)
        return ids

    def _step(self, ids: torch.Tensor) -> None:
        """One step of the model for every row of the batch."""
        if self.batch:
            labels = None
            if self.model.config.labels:  # a labelled model: each row's label, which changes between documents
                labels = torch.cat([r.run.label_ids for r in self.batch])
            self.logits, self.state = self.stepper.step(ids, self.state, labels)

    def _finish(self, request: Request, stopped: str) -> None:
        with self.wake:
            for rows in (self.active, self.priming):
                if request in rows:
                    rows.remove(request)
        self._outbox(request, Done(stopped))

    def _outbox(self, request: Request, item: object) -> None:
        """Queue an item for a request; pieces written since the last hand-over are joined into
        one (one item for the server to pass on, not one per step)."""
        items = self.outbox.setdefault(request, [])
        if items and isinstance(item, tuple) and isinstance(items[-1], tuple):
            items[-1] = joined(items[-1], item)
        else:
            items.append(item)
        if isinstance(item, Done):
            self.urgent = True

    def _send(self, now: bool = False) -> None:
        """Hand the outbox over: at once for a first character or an end, else at most every
        SEND_EVERY seconds (fewer wake-ups for the server, fewer and longer lines for clients)."""
        if not self.outbox:
            return
        clock = time.perf_counter()
        if now or self.urgent or clock - self.sent >= SEND_EVERY:
            outbox, self.outbox = self.outbox, {}
            self.urgent, self.sent = False, clock
            self.dispatch([(request, item) for request, items in outbox.items() for item in items])


def deliver_each(outbox: list[tuple[Request, object]]) -> None:
    for request, item in outbox:
        request.deliver(item)
