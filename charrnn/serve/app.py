"""`charrnn serve`'s ASGI app: trained models over HTTP, many clients sharing one batched
sampling step per model.

    charrnn serve checkpoints/my-run --port 8000
    curl -N localhost:8000/v1/generate -d '{"prime": "ROMEO:", "length": 200, "stream": true}'

- `POST /v1/generate`: JSON with the options of `charrnn sample` (prime, length, temp, top_k,
  top_p, stop, seed, num_samples, unknown, documents, min_length, max_length, label) and
  `model` (default: the first served). Answers `{"text": ...}` (or `{"texts": [...]}` for
  num_samples > 1) and `"stopped"` (length, stop, documents, or cancelled). With `"stream":
  true` the answer is newline-delimited JSON, one object per line as the text is written:
  `{"text": piece}` (with `"sample": i` when num_samples > 1), then `{"done": true, "stopped": ...}`.
- `POST /v1/score`: `{"text": ...}` (and `"label"` for a labelled model) -> nats and bits per
  character, and each character's log-probability (a word model's: nats per token, its
  perplexity and token count, and bits per character of the text).
- `GET /v1/info`: what `charrnn info` shows, as values. `GET /healthz`: streams being written and
  requests waiting. `GET /`: a page to write from in a browser (no network beyond this server).
- OpenAI's `/v1/completions`, `/v1/chat/completions` and `/v1/models`: `charrnn.serve.openai`.

Every bad request is a 4xx with a one-line JSON error; past the limits the answer is 413 (body)
or 429 (too many waiting, with Retry-After), never a crash. What reaches the routes at all is
`charrnn.serve.guard`'s to decide (Host, Origin, API key, body size and time).
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from charrnn import api
from charrnn.config import SampleConfig, ServeLimits
from charrnn.errors import CharRNNError
from charrnn.generation.batching import Batcher, Busy, Closed, Done
from charrnn.pages import page_head
from charrnn.serve import openai
from charrnn.serve.bodies import GenerateBody, ScoreBody
from charrnn.serve.guard import Gate, Guard, error_body
from charrnn.serve.metrics import Counted, Metrics
from charrnn.serve.models import Models, Served, UnknownModel, name_of, shorten

RETRY_AFTER = "1"  # seconds a client told 429 should wait


class HTTPError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None):
        self.status, self.message, self.param = status, message, param


def create_app(
    models: api.Model | dict[str, api.Model],
    limits: ServeLimits = ServeLimits(),
    batcher: Batcher | None = None,
    *,
    gate: Gate | None = None,
    metrics: bool = False,
) -> FastAPI:
    """The HTTP app over one loaded model (or several, by name). Its lifespan starts each
    model's batcher (in a thread of its own, unless one is given for a single model) and
    closes it. `gate` says what requests may reach it; `metrics` serves /metrics."""
    if not isinstance(models, dict):
        models = {name_of(models.path): models}
    served = Models.of(models, {next(iter(models)): batcher} if batcher is not None else None)
    gauges = Metrics(served) if metrics else None
    app = FastAPI(title="charrnn", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lambda app: served.running(limits, gauges.on_step if gauges else None))  # fmt: skip
    gate = gate or Gate(max_body=limits.max_body, timeout=limits.timeout)
    app.add_middleware(Guard, gate=gate)
    if gauges is not None:
        app.add_middleware(Counted, metrics=gauges)
    if gate.origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(gate.origins), allow_methods=["*"], allow_headers=["*"])
    app.state.models, app.state.limits, app.state.metrics, app.state.gate = served, limits, gauges, gate
    _handle_errors(app)
    _route(app, served, limits, gauges)
    openai.route(app, served, limits, gauges)
    return app


def _handle_errors(app: FastAPI) -> None:
    """Every refusal is a one-line JSON error with its status (in OpenAI's shape on its routes)."""

    def answer(request: Request, status: int, message: str, param: str | None = None) -> JSONResponse:
        headers = {"Retry-After": RETRY_AFTER} if status == 429 else None
        body = error_body(request.url.path, status, message.strip().splitlines()[0] if message.strip() else "", param)
        return JSONResponse(json.loads(body), status_code=status, headers=headers)

    @app.exception_handler(ValidationError)
    async def invalid(request: Request, e: ValidationError) -> JSONResponse:
        message, param = first_problem(e)
        return answer(request, 400, message, param)

    @app.exception_handler(HTTPError)
    async def refused(request: Request, e: HTTPError) -> JSONResponse:
        return answer(request, e.status, e.message, e.param)

    @app.exception_handler(CharRNNError)
    async def bad_input(request: Request, e: CharRNNError) -> JSONResponse:
        status = 429 if isinstance(e, Busy) else 503 if isinstance(e, Closed) else 404 if isinstance(
            e, UnknownModel) else 400  # fmt: skip
        return answer(request, status, str(e), "model" if isinstance(e, UnknownModel) else None)

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, e: ClientDisconnect) -> Response:
        return Response(status_code=499)  # the client went away before its body was in: nobody to answer

    @app.exception_handler(StarletteHTTPException)
    async def not_here(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return answer(request, e.status_code, f"{request.method} {shorten(request.url.path)}: {e.detail}")


def _route(app: FastAPI, served: Models, limits: ServeLimits, metrics: Metrics | None) -> None:
    @app.post("/v1/generate")
    async def generate(request: Request) -> Response:
        # the body is JSON whatever its declared type: `curl -d` declares a form
        raw = await request.body()
        one = served.get(model_named(raw))
        body = GenerateBody.model_validate_json(_without_model(raw))
        config = sample_config(one, body, limits)
        queue: asyncio.Queue = asyncio.Queue()
        handle = one.batcher.submit(config, queue.put_nowait, queue.qsize)
        first = _first_symbol(metrics, one.name)
        if body.stream:
            return StreamingResponse(_lines(queue, handle, body.num_samples, first), media_type="application/x-ndjson")
        return await _whole(queue, handle, body.num_samples, request, first)

    @app.post("/v1/score")
    async def score(request: Request) -> dict:
        raw = await request.body()
        one = served.get(model_named(raw))
        body = ScoreBody.model_validate_json(_without_model(raw))
        s = await asyncio.to_thread(one.model.score, body.text, unknown=body.unknown, label=body.label)
        counts = {"tokens": len(s.logprobs) + 1, "perplexity": s.perplexity} if s.units.word else {}
        return {"nats": s.nats, "bits": s.bits, "chars": len(s.text), **counts, "logprobs": s.logprobs}

    @app.get("/v1/info")
    def info(model: str | None = None) -> dict:
        described = served.get(model).described
        return {"path": str(described.path), "bytes": described.size, **described.values}

    @app.get("/healthz")
    def healthz() -> dict:
        loads = [s.batcher.load() for s in served.served.values()]
        return {
            "status": "ok",
            "streams": sum(x["streams"] for x in loads),
            "waiting": sum(x["waiting"] for x in loads),
        }

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return _page(served, app.state.gate)

    if metrics is not None:

        @app.get("/metrics")
        def scrape() -> Response:
            return Response(metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")


def model_named(raw: bytes) -> str | None:
    """The `model` a JSON body names (None where it names none, or is not an object of JSON:
    the body's own check then says so)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    name = body.get("model") if isinstance(body, dict) else None
    if name is not None and not isinstance(name, str):
        raise HTTPError(400, "model: Input should be a valid string", "model")
    return name


def _without_model(raw: bytes) -> bytes:
    """The body without its `model`, which picks the model rather than an option of it."""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw  # not JSON: the body's check says so
    if isinstance(body, dict) and "model" in body:
        body.pop("model")
        return json.dumps(body).encode()
    return raw


def sample_config(one: Served, body, limits: ServeLimits) -> SampleConfig:
    """The sampling a /v1/generate body asks for, refused (a 400) where it is past the limits or
    names what the model cannot read."""
    model = one.model
    if body.documents is None and body.length > limits.max_length:  # documents: see _within_limits
        raise HTTPError(400, f"length {body.length} is more than this server's --max-length {limits.max_length}")
    check_prime(body.prime, limits)
    model.vocab.encode(body.prime, unknown=body.unknown, context="the prime text")  # a 400 before any text
    if body.label is not None:
        model.net.config.label_id(body.label)
    body = _within_limits(body, limits)
    return SampleConfig(**body.model_dump(exclude={"stream"}))


def check_prime(prime: str, limits: ServeLimits, field: str = "prime") -> None:
    if len(prime) > limits.max_length:  # read in pieces between other streams' steps, but read all the same
        too_long = f"the {field} is {len(prime)} characters, more than this server's --max-length"
        raise HTTPError(400, f"{too_long} {limits.max_length}", field)


def _first_symbol(metrics: Metrics | None, name: str):
    """What to call when a request's first symbol is out (the metrics' clock), or None."""
    if metrics is None:
        return None
    since = time.perf_counter()
    return lambda: metrics.first_symbol(name, since)


async def _lines(queue: asyncio.Queue, handle, samples: int, first=None):
    """The streamed answer, a JSON object per line; a client that goes away cancels the run.
    What has piled up since the last line (the model writes faster than the line is sent) goes
    out as one line per sample."""
    try:
        while True:
            items = [await queue.get()]
            if first is not None:
                first, _ = None, first()
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


async def collect(queue: asyncio.Queue, handle, samples: int, request: Request, first=None):
    """Every item a run delivers until its Done (a client that goes away meanwhile, asked 4
    times a second, cancels it): (the items, the Done), or None if the client went away."""
    items: list = []
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
                    return None
                ask_at = clock() + 0.25
            if item is None:
                continue
            if first is not None:
                first, _ = None, first()
            if isinstance(item, Done):
                return items, item
            items.append(item)
    finally:
        handle.cancel()


async def _whole(queue: asyncio.Queue, handle, samples: int, request: Request, first=None) -> Response:
    """The whole answer at once."""
    got = await collect(queue, handle, samples, request, first)
    if got is None:
        return Response(status_code=499)
    items, done = got
    if done.error is not None:
        return JSONResponse({"error": str(done.error).splitlines()[0]}, status_code=400)
    joined = ["".join(item[i] for item in items) for i in range(samples)]
    answer = {"text": joined[0]} if samples == 1 else {"texts": joined}
    return JSONResponse({**answer, "stopped": done.stopped})


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


def first_problem(e: ValidationError) -> tuple[str, str | None]:
    """A validation error's first problem, in one line, and the field it is about."""
    problem = e.errors()[0] if e.errors() else {}
    where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
    what = problem.get("msg", "invalid request")
    if problem.get("type") == "json_invalid":
        return "the body is not valid JSON", None
    if problem.get("type") == "extra_forbidden":
        return f"unknown field {shorten(where)!r}", where or None
    return (f"{where}: {what}" if where else what), where or None


def _page(served: Models, gate: Gate) -> str:
    page = Path(__file__).with_name("serve.html").read_text(encoding="utf-8")
    names = [f"{s.model.path.parent.name}/{s.model.path.name}" for s in served.served.values()]
    options = "".join(f'<option value="{html.escape(n, quote=True)}">{html.escape(n)}</option>' for n in served.names)
    return (
        page.replace("__HEAD__\n", page_head(f"{names[0]} · charrnn serve"))
        .replace("__NAME__", html.escape(", ".join(names)))
        .replace("__MODELS__", options)
        .replace("__KEY__", "" if gate.api_key is not None else "hidden")
    )
