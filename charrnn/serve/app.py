"""`charrnn serve`: a trained model over HTTP, many clients sharing one batched sampling step.

    charrnn serve checkpoints/my-run --port 8000
    curl -N localhost:8000/v1/generate -d '{"prime": "ROMEO:", "length": 200, "stream": true}'

- `POST /v1/generate`: JSON with the options of `charrnn sample` (prime, length, temp, top_k,
  top_p, stop, seed, num_samples, unknown, documents, min_length, max_length, label). Answers
  `{"text": ...}` (or `{"texts": [...]}` for num_samples > 1) and `"stopped"` (length, stop,
  or documents). With `"stream": true` the answer is
  newline-delimited JSON (application/x-ndjson), one object per line as the text is written:
  `{"text": piece}` (with `"sample": i` when num_samples > 1), then `{"done": true, "stopped": ...}`.
- `POST /v1/score`: `{"text": ...}` (and `"label"` for a labelled model) -> nats and bits per
  character, and each character's log-probability (a word model's: nats per token, its
  perplexity and token count, and bits per character of the text).
- `GET /v1/info`: what `charrnn info` shows, as values (numbers, and objects of them). `GET
  /healthz`: streams being written and requests waiting.
- `GET /`: a page to write from in a browser (no network needed beyond this server).

Every bad request is a 4xx with a one-line JSON `{"error": ...}`; past the limits the answer is
413 (body) or 429 (too many waiting), never a crash. See `charrnn.generation.batching` for how
concurrent requests share a step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from charrnn import api
from charrnn.config import SampleConfig, ServeLimits
from charrnn.errors import CharRNNError
from charrnn.generation.batching import Batcher, Busy, Closed, Done, deliver_each
from charrnn.pages import page_head
from charrnn.serve.bodies import GenerateBody, ScoreBody


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


def create_app(model: api.Model, limits: ServeLimits = ServeLimits(), batcher: Batcher | None = None) -> FastAPI:
    """The HTTP app over one loaded model. The app's lifespan starts its batcher (one in a
    thread of its own, unless one is given) and closes it."""
    served = _Served(model, limits, batcher, api.info(model.path))  # info read once, for /v1/info
    app = FastAPI(title="charrnn", docs_url=None, redoc_url=None, openapi_url=None, lifespan=served.lifespan)
    app.add_middleware(_BodyLimit, max_body=limits.max_body)
    _handle_errors(app)
    _route(app, served)
    return app


class _Served:
    """The model an app serves, its limits and its batcher (started with the app, unless given)."""

    def __init__(self, model: api.Model, limits: ServeLimits, batcher: Batcher | None, described):
        self.model, self.limits, self.batcher, self.given, self.described = model, limits, batcher, batcher, described

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI):
        model, limits = self.model, self.limits
        if self.given is None:
            self.batcher = Batcher(
                model.net,
                model.vocab,
                max_streams=limits.max_streams,
                max_waiting=limits.max_waiting,
                eod_text=model.eod_text,
            )
        # what a step writes reaches the requests' queues in one call to the event loop
        loop = asyncio.get_running_loop()

        def dispatch(outbox):
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is left to tell
                loop.call_soon_threadsafe(deliver_each, outbox)

        self.batcher.dispatch = dispatch
        try:
            yield
        finally:
            self.batcher.close()

    def config(self, body) -> SampleConfig:
        """The sampling a /v1/generate body asks for, refused (a 400) where it is past the limits
        or names what the model cannot read."""
        limits, model = self.limits, self.model
        if body.documents is None and body.length > limits.max_length:  # documents: see _within_limits
            raise HTTPError(400, f"length {body.length} is more than this server's --max-length {limits.max_length}")
        if len(body.prime) > limits.max_length:  # read in one pass that every stream waits for
            too_long = f"the prime is {len(body.prime)} characters, more than this server's --max-length"
            raise HTTPError(400, f"{too_long} {limits.max_length}")
        model.vocab.encode(body.prime, unknown=body.unknown, context="the prime text")  # a 400 before any text
        if body.label is not None:
            model.net.config.label_id(body.label)
        body = _within_limits(body, limits)
        return SampleConfig(**body.model_dump(exclude={"stream"}))


def _handle_errors(app: FastAPI) -> None:
    """Every refusal is a one-line JSON error with its status."""

    @app.exception_handler(ValidationError)
    async def invalid(request: Request, e: ValidationError) -> JSONResponse:
        return _error(400, _first_problem(e))

    @app.exception_handler(HTTPError)
    async def refused(request: Request, e: HTTPError) -> JSONResponse:
        return _error(e.status, e.message)

    @app.exception_handler(CharRNNError)
    async def bad_input(request: Request, e: CharRNNError) -> JSONResponse:
        return _error(429 if isinstance(e, Busy) else 503 if isinstance(e, Closed) else 400, str(e))

    @app.exception_handler(StarletteHTTPException)
    async def not_here(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, f"{request.method} {request.url.path}: {e.detail}")


def _route(app: FastAPI, served: _Served) -> None:
    model = served.model

    @app.post("/v1/generate")
    async def generate(request: Request) -> Response:
        # the body is JSON whatever its declared type: `curl -d` declares a form
        body = GenerateBody.model_validate_json(await request.body())
        config = served.config(body)
        queue: asyncio.Queue = asyncio.Queue()
        handle = served.batcher.submit(config, queue.put_nowait, queue.qsize)
        if body.stream:
            return StreamingResponse(_lines(queue, handle, body.num_samples), media_type="application/x-ndjson")
        return await _whole(queue, handle, body.num_samples, request)

    @app.post("/v1/score")
    async def score(request: Request) -> dict:
        body = ScoreBody.model_validate_json(await request.body())
        s = await asyncio.to_thread(model.score, body.text, unknown=body.unknown, label=body.label)
        counts = {"tokens": len(s.logprobs) + 1, "perplexity": s.perplexity} if s.units.word else {}
        return {"nats": s.nats, "bits": s.bits, "chars": len(s.text), **counts, "logprobs": s.logprobs}

    @app.get("/v1/info")
    def info() -> dict:
        described = served.described
        return {"path": str(described.path), "bytes": described.size, **described.values}

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", **served.batcher.load()}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return _page(model)


async def _lines(queue: asyncio.Queue, handle, samples: int):
    """The streamed answer, a JSON object per line; a client that goes away cancels the run.
    What has piled up since the last line (the model writes faster than the line is sent) goes
    out as one line per sample."""
    try:
        while True:
            items = [await queue.get()]
            while not queue.empty() and not isinstance(items[-1], Done):
                items.append(queue.get_nowait())
            done = items.pop() if isinstance(items[-1], Done) else None
            lines = ""
            for i in range(samples):
                piece = "".join(item[i] for item in items)
                if piece:
                    lines += json.dumps({"text": piece} if samples == 1 else {"sample": i, "text": piece}) + "\n"
            if done is not None:
                end = {"error": str(done.error)} if done.error else {"done": True, "stopped": done.stopped}
                yield lines + json.dumps(end) + "\n"
                return
            yield lines
    finally:
        handle.cancel()


async def _whole(queue: asyncio.Queue, handle, samples: int, request: Request) -> Response:
    """The whole answer at once; a client that goes away meanwhile (asked 4 times a second)
    cancels the run."""
    texts: list[list[str]] = [[] for _ in range(samples)]
    clock = asyncio.get_running_loop().time
    ask_at = clock() + 0.25
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=max(0.0, ask_at - clock()))
            except asyncio.TimeoutError:
                item = None
            if clock() >= ask_at:
                if await request.is_disconnected():
                    return Response(status_code=499)
                ask_at = clock() + 0.25
            if item is None:
                continue
            if isinstance(item, Done):
                break
            for buf, piece in zip(texts, item, strict=True):
                buf.append(piece)
    finally:
        handle.cancel()
    if item.error is not None:
        return _error(400, str(item.error))
    joined = ["".join(t) for t in texts]
    answer = {"text": joined[0]} if samples == 1 else {"texts": joined}
    return JSONResponse({**answer, "stopped": item.stopped})


def _within_limits(body, limits: ServeLimits):
    """Whole documents (a model of documents) are bounded by --max-length too: all of them
    together, so each is at most its share unless the request asks for less."""
    if body.documents is None:
        if body.min_length is not None or body.max_length is not None:
            raise HTTPError(400, "min_length and max_length go with documents")
        return body
    if body.max_length is None:
        return body.model_copy(update={"max_length": max(1, limits.max_length // body.documents)})
    if body.documents * body.max_length > limits.max_length:
        asked = f"{body.documents} documents of max_length {body.max_length}"
        raise HTTPError(400, f"{asked} is more than this server's --max-length {limits.max_length}")
    return body


def _error(status: int, message: str) -> JSONResponse:
    first = message.strip().splitlines()[0] if message.strip() else "bad request"
    return JSONResponse({"error": first}, status_code=status)


def _first_problem(e: ValidationError) -> str:
    problem = e.errors()[0] if e.errors() else {}
    where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
    what = problem.get("msg", "invalid request")
    if problem.get("type") == "json_invalid":
        return "the body is not valid JSON"
    if problem.get("type") == "extra_forbidden":
        return f"unknown field {where!r}"
    return f"{where}: {what}" if where else what


class _TooLarge(Exception):
    pass


class _BodyLimit:
    """413 for a request body over `max_body` bytes, declared or streamed."""

    def __init__(self, app, max_body: int):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        too_large = _error(413, f"the request body is over this server's --max-body {self.max_body} bytes")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return await too_large(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await too_large(scope, receive, send)


def _page(model: api.Model) -> str:
    html = Path(__file__).with_name("serve.html").read_text(encoding="utf-8")
    name = f"{model.path.parent.name}/{model.path.name}"
    return html.replace("__HEAD__\n", page_head(f"{name} · charrnn serve")).replace("__NAME__", name)
