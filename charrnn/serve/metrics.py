"""`charrnn serve --metrics`: Prometheus text at /metrics (through `prometheus_client`, in a
registry of the app's own): requests by route and status, symbols written, streams running and
waiting, batch rows per step, step time, and time to the first symbol.

    metrics = Metrics(models)
    app.add_middleware(Counted, metrics=metrics)   # requests by route and status
    batcher.on_step = ...metrics.on_step           # rows and time of each step
"""

from __future__ import annotations

import time

from charrnn.serve.models import Models

ROUTES = ("/v1/generate", "/v1/score", "/v1/info", "/v1/completions", "/v1/chat/completions", "/v1/models",
          "/healthz", "/metrics", "/")  # fmt: skip


class Metrics:
    def __init__(self, models: Models):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.models = models
        self.requests = Counter("charrnn_requests", "HTTP requests answered", ["route", "status"], registry=r)
        self.symbols = Counter("charrnn_symbols", "Symbols written (a character or a word a row a step)", ["model"],
                               registry=r)  # fmt: skip
        self.streams = Gauge("charrnn_streams", "Samples being written", ["model"], registry=r)
        self.waiting = Gauge("charrnn_waiting", "Requests waiting for room", ["model"], registry=r)
        rows = (1, 2, 4, 8, 16, 32, 64, 128, 256)
        self.rows = Histogram("charrnn_batch_rows", "Rows of a batched step", ["model"], buckets=rows, registry=r)
        self.step = Histogram(
            "charrnn_step_seconds",
            "Seconds of a batched step (pick and model)",
            ["model"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.first = Histogram("charrnn_first_symbol_seconds", "Seconds from a request to its first symbol",
                               ["model"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                               registry=r)  # fmt: skip

    def on_step(self, model: str, rows: int, seconds: float) -> None:
        """A batcher's step (called in its thread)."""
        self.rows.labels(model).observe(rows)
        self.step.labels(model).observe(seconds)
        self.symbols.labels(model).inc(rows)

    def first_symbol(self, model: str, since: float) -> None:
        self.first.labels(model).observe(time.perf_counter() - since)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        for name, s in self.models.served.items():
            load = s.batcher.load() if s.batcher is not None else {"streams": 0, "waiting": 0}
            self.streams.labels(name).set(load["streams"])
            self.waiting.labels(name).set(load["waiting"])
        return generate_latest(self.registry)


class Counted:
    """An ASGI middleware that counts each answered request by route (a path outside ROUTES as
    "other") and status."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope.get("path", "") if scope.get("path", "") in ROUTES else "other"

        async def sending(message):
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(route, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, sending)
