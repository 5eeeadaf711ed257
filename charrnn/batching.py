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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from charrnn.config import SampleConfig
from charrnn.errors import BadValueError, CharRNNError
from charrnn.model import CharRNN
from charrnn.sample import SampleRun, plain, tempered
from charrnn.stepper import FastStepper
from charrnn.vocab import Vocab

# What deliver() is given: a tuple of pieces (one per sample), or at the end a Done.
Deliver = Callable[[object], None]
MAX_BACKLOG = 1024  # pieces a client may leave unread before its run pauses


class Busy(CharRNNError):
    """Too many requests are waiting already."""

    exit_code = 2


@dataclass(frozen=True)
class Done:
    """The last thing delivered for a request: why it ended; `error` is set when the run could
    not start (a prime outside the vocabulary, say)."""

    stopped: str  # length | stop | cancelled | error
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

    What a step writes is handed over once per step, as a list of (request, item), to
    `dispatch` (default: each request's `deliver`, in the batcher's thread); a server passes one
    that moves the list to its event loop in one call."""

    def __init__(
        self,
        model: CharRNN,
        vocab: Vocab,
        *,
        max_streams: int,
        max_waiting: int,
        dispatch: Callable[[list[tuple[Request, object]]], None] | None = None,
    ):
        self.model, self.vocab = model, vocab
        self.max_streams, self.max_waiting = max_streams, max_waiting
        self.dispatch = dispatch or deliver_each
        self.stepper = FastStepper(model)
        self.waiting: deque[Request] = deque()
        self.active: list[Request] = []
        self.outbox: list[tuple[Request, object]] = []
        self.wake = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._loop, name="charrnn-batcher", daemon=True)
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
            if len(self.waiting) >= self.max_waiting:
                raise Busy(f"{len(self.waiting)} requests are waiting already; try again shortly")
            self.waiting.append(request)
            self.wake.notify()
        return request

    def load(self) -> dict[str, int]:
        """Rows being generated, and requests waiting for room."""
        with self.wake:
            return {"streams": sum(r.config.num_samples for r in self.active), "waiting": len(self.waiting)}

    def close(self) -> None:
        """Cancel everything and stop the loop."""
        with self.wake:
            self.closed = True
            for r in [*self.waiting, *self.active]:
                r.cancel()
            self.wake.notify()
        self.thread.join(timeout=10)

    # ------------------------------------------------------------------ the loop's thread

    @torch.no_grad()
    def _loop(self) -> None:
        while True:
            with self.wake:
                while not self.closed and not self.active and not self.waiting:
                    self.wake.wait()
                if self.closed:
                    break
                joining = self._admit()
            for request in joining:
                self._start(request)
            going = [r for r in self.active if r.cancelled or r.backlog() <= MAX_BACKLOG]  # others are paused
            ready = self._pick(going)
            if ready:
                self._step(ready)
            self._send()
            if not ready and not joining and self.active:  # every run is paused: wait for a client, or a newcomer
                with self.wake:
                    self.wake.wait(timeout=0.01)
        for request in list(self.active):
            self._finish(request, "cancelled")
        self._send()

    def _admit(self) -> list[Request]:
        """Waiting requests that fit beside the active ones (called holding the lock)."""
        rows = sum(r.config.num_samples for r in self.active)
        joining = []
        while self.waiting and (
            self.waiting[0].cancelled or rows + self.waiting[0].config.num_samples <= self.max_streams
        ):
            request = self.waiting.popleft()
            if request.cancelled:
                self.outbox.append((request, Done("cancelled")))
                continue
            rows += request.config.num_samples
            joining.append(request)
        return joining

    def _start(self, request: Request) -> None:
        try:
            request.run = SampleRun(self.model, self.vocab, request.config, convert=self.stepper.convert)
        except CharRNNError as e:  # a prime outside the vocabulary
            self.outbox.append((request, Done("error", error=e)))
            return
        self.outbox.append((request, request.run.first))
        with self.wake:
            self.active.append(request)
        if request.run.finished:  # length 0
            self._finish(request, "length")

    def _pick(self, going: list[Request]) -> list[tuple[Request, torch.Tensor]]:
        """Every going request's next characters, put in the outbox; the ones that go on after
        them, with their ids. The plain runs' probabilities come from one batched softmax."""
        for request in [r for r in going if r.cancelled]:
            self._finish(request, "cancelled")
        going = [r for r in going if not r.cancelled]
        plain_runs = [r for r in going if plain(r.config)]
        probs = {}
        if plain_runs:
            logits = torch.cat([r.run.logits.float() for r in plain_runs])  # (B, V)
            temps = torch.cat([torch.full((r.config.num_samples, 1), float(r.config.temp)) for r in plain_runs])
            p = torch.softmax(tempered(logits, temps.double()), dim=-1)
            row = 0
            for r in plain_runs:
                probs[id(r)] = p[row : row + r.config.num_samples]
                row += r.config.num_samples
        ready = []
        for request in going:
            run = request.run
            ids, pieces = run.pick(probs.get(id(request)))
            self.outbox.append((request, pieces))
            if run.finished:
                if run.rest is not None:
                    self.outbox.append((request, run.rest))
                self._finish(request, "stop" if run.streams.all_done else "length")
            else:
                ready.append((request, ids))
        return ready

    def _step(self, ready: list[tuple[Request, torch.Tensor]]) -> None:
        """One step of the model for every row of every request that goes on."""
        if len(ready) == 1:  # alone: its own state, as `generate` steps it
            request, ids = ready[0]
            request.run.logits, request.run.state = self.stepper.step(ids, request.run.state)
            return
        ids = torch.cat([i for _, i in ready])  # (B,)
        layers = len(ready[0][0].run.state)
        state = [
            [torch.cat([r.run.state[layer][k] for r, _ in ready]) for k in range(len(ready[0][0].run.state[layer]))]
            for layer in range(layers)
        ]  # per layer [h] or [h, c], each (B, H)
        logits, state = self.stepper.step(ids, state)
        row = 0
        for request, i in ready:
            rows = slice(row, row + len(i))
            request.run.logits = logits[rows]
            request.run.state = [[t[rows] for t in layer] for layer in state]
            row += len(i)

    def _finish(self, request: Request, stopped: str) -> None:
        with self.wake:
            if request in self.active:
                self.active.remove(request)
        self.outbox.append((request, Done(stopped)))

    def _send(self) -> None:
        if self.outbox:
            outbox, self.outbox = self.outbox, []
            self.dispatch(outbox)


def deliver_each(outbox: list[tuple[Request, object]]) -> None:
    for request, item in outbox:
        request.deliver(item)
