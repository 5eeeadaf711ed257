"""The models a server serves, by name, each with its own batcher: a request's `model` picks
one (the first where it names none); a name the server does not know is a 404.

    models = Models.of({"shakespeare": charrnn.load("checkpoints/shakespeare")})
    served = models.get("shakespeare")             # .model, .batcher, .described
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field

from charrnn import api
from charrnn.config import ServeLimits
from charrnn.errors import CharRNNError
from charrnn.generation.batching import Batcher, deliver_each


class UnknownModel(CharRNNError):
    """A request named a model the server does not serve (a 404)."""


@dataclass
class Served:
    """One model as the server serves it: its batcher (started with the app, unless given), and
    what /v1/info says of it (read once)."""

    name: str
    model: api.Model
    described: api.Info
    batcher: Batcher | None = None
    given: bool = False  # the batcher was the caller's, stepped by the caller

    def start(self, limits: ServeLimits, dispatch, on_step=None) -> None:
        if self.batcher is None:
            self.batcher = Batcher(
                self.model.net,
                self.model.vocab,
                max_streams=limits.max_streams,
                max_waiting=limits.max_waiting,
                eod_text=self.model.eod_text,
            )
        self.batcher.dispatch = dispatch
        self.batcher.on_step = on_step


@dataclass
class Models:
    served: dict[str, Served] = field(default_factory=dict)

    @classmethod
    def of(cls, models: dict[str, api.Model], batchers: dict[str, Batcher] | None = None) -> Models:
        batchers = batchers or {}
        return cls({
            name: Served(name, m, api.info(m.path), batchers.get(name), name in batchers) for name, m in models.items()
        })  # fmt: skip

    @property
    def names(self) -> list[str]:
        return list(self.served)

    def get(self, name: str | None) -> Served:
        if name is None:
            return next(iter(self.served.values()))
        if name not in self.served:
            raise UnknownModel(f"no model {shorten(name)!r} here; this server serves {', '.join(self.names)}")
        return self.served[name]

    @contextlib.asynccontextmanager
    async def running(self, limits: ServeLimits, on_step=None):
        """Every model's batcher, handing what its steps write to this event loop in one call."""
        loop = asyncio.get_running_loop()

        def dispatch(outbox):
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is left to tell
                loop.call_soon_threadsafe(deliver_each, outbox)

        for name, s in self.served.items():
            s.start(limits, dispatch, None if on_step is None else _named(on_step, name))
        try:
            yield
        finally:
            for s in self.served.values():
                s.batcher.close()

    def close(self) -> None:
        for s in self.served.values():
            if s.batcher is not None:
                s.batcher.close()


def _named(on_step, name: str):
    return lambda rows, seconds: on_step(name, rows, seconds)


def name_of(path) -> str:
    """A model's default name: its run directory's (or its file's, without .pt)."""
    from pathlib import Path

    path = Path(path)
    return path.parent.name if path.name in ("best.pt", "last.pt") else path.stem


def shorten(text: str, most: int = 80) -> str:
    """Text a client sent, as an answer may echo it: at most `most` characters, one line."""
    text = re.sub(r"\s+", " ", str(text))
    return text if len(text) <= most else text[: most - 1] + "…"
