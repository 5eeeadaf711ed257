"""What each stream of a sampling run writes, kept apart from how its characters are drawn:
its label (a labelled model's), its whole documents (a model of documents'), and its text,
held back while it may be the start of a stop string.

    streams = Streams(2, stops=("\\n\\n",))
    streams.add(["a", "b"])                         # the text ready to print, a piece a stream
"""

from __future__ import annotations

import torch

from charrnn.config import MAX_DOCUMENT, ModelConfig, SampleConfig
from charrnn.errors import BadValueError


class Labels:
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
    def of(cls, model_config: ModelConfig, config: SampleConfig, g, device) -> Labels | None:
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


class Documents:
    """Whole documents, `config.documents` of them per stream: a document ends where the model
    writes the end-of-document symbol (not before `min_length` characters; at `max_length`,
    or MAX_DOCUMENT without one, it is ended there), and the next begins with the prime, fed
    to the model a character a step. A stream is done after its last document."""

    def __init__(self, run, config: SampleConfig):  # run: its SampleRun
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


class Streams:
    """Each stream's new text, held back while it may be the start of a stop string; a stream
    that meets one ends there, without it (at the first, where several are given)."""

    def __init__(self, n: int, stops: tuple[str, ...] = ()):
        self.stops = tuple(s for s in stops if s)
        self.hold = max((len(s) for s in self.stops), default=1) - 1
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
        if not self.stops:
            return tuple("" if done else piece for piece, done in zip(pieces, self.done, strict=True))
        return tuple(self._add(s, piece) for s, piece in enumerate(pieces))

    def _add(self, s: int, piece: str) -> str:
        if self.done[s]:
            return ""
        self.pending[s] += piece
        found = [at for at in (self.pending[s].find(stop) for stop in self.stops) if at >= 0]
        if found:
            at = min(found)
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
