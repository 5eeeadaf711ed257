"""OpenAI's HTTP API, which every OpenAI client speaks: `POST /v1/completions`, `POST
/v1/chat/completions` and `GET /v1/models`, whole or streamed as server-sent events, with
errors in OpenAI's shape.

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="...")
    client.completions.create(model="my-run", prompt="ROMEO:", max_tokens=200, seed=7).choices[0].text

A token is a model's symbol: a character (a word model's: a word). The text returned is what
the model wrote after the prompt (with `echo`, the prompt first), without the stop sequence;
seeded, it is what `charrnn sample --prime PROMPT` writes after the prime. A field charrnn
cannot honour (`suffix`, `best_of` other than 1, penalties other than 0, `logit_bias`, tools)
is refused with a 400 that names it. A chat is rendered as text (`chat_prompt`) and the model
writes the assistant's turn, which ends at the next role marker.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from charrnn.config import MAX_SEED, SampleConfig, ServeLimits
from charrnn.generation.batching import Done
from charrnn.serve.bodies import renamed

ROLES = ("system", "user", "assistant")
ROLE_MARK = {role: f"{role.upper()}:\n" for role in ROLES}  # a turn: its marker line, then its text
TURN_ENDS = tuple(f"\n{role.upper()}:" for role in ROLES)  # where the model's turn ends
MAX_STOPS = 4


def _common(**fields) -> dict:
    """The options both routes take, with the bounds of the SampleConfig fields they set."""
    return {
        "model": (str | None, None),
        "temperature": renamed("temp", 1.0),
        "top_p": renamed("top_p", 1.0),
        "n": renamed("num_samples", 1),
        "stop": (str | list[str] | None, None),
        "seed": (int | None, Field(None, ge=0, le=MAX_SEED)),
        "stream": (bool | None, False),
        "stream_options": (dict | None, None),
        "user": (str | None, None),
        "presence_penalty": (float | None, None),
        "frequency_penalty": (float | None, None),
        "logit_bias": (dict | None, None),
        **fields,
    }


_STRICT = ConfigDict(extra="forbid", strict=True)
CompletionBody = create_model(
    "CompletionBody",
    __config__=_STRICT,
    **_common(
        prompt=(str | list[str], ""),
        max_tokens=renamed("length", 16),
        echo=(bool | None, False),
        logprobs=renamed("logprobs", None),
        suffix=(str | None, None),
        best_of=(int | None, None),
    ),
)


class Message(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: str
    content: str | list[dict] | None = None


ChatBody = create_model(
    "ChatBody",
    __config__=_STRICT,
    **_common(
        messages=(list[Message], ...),
        max_tokens=renamed("length", None),
        max_completion_tokens=renamed("length", None),
        logprobs=(bool | None, False),
        top_logprobs=renamed("logprobs", None),
        tools=(list | None, None),
        tool_choice=(Any, None),
        functions=(list | None, None),
        response_format=(dict | None, None),
    ),
)
CHAT_MAX_TOKENS = 200  # a chat turn's length where the request gives none


def route(app: FastAPI, served, limits: ServeLimits, metrics) -> None:
    from charrnn.serve.app import HTTPError, check_prime

    @app.get("/v1/models")
    def models() -> dict:
        data = [{"id": name, "object": "model", "created": int(s.model.path.stat().st_mtime), "owned_by": "charrnn"}
                for name, s in served.served.items()]  # fmt: skip
        return {"object": "list", "data": data}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = CompletionBody.model_validate_json(await request.body())
        one = served.get(body.model)
        prompts = body.prompt if isinstance(body.prompt, list) else [body.prompt]
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise HTTPError(400, "prompt: a string, or a list of strings", "prompt")
        for p in prompts:
            check_prime(p, limits, "prompt")
        _refuse_what_cannot_be_honoured(body, HTTPError)
        logprobs = body.logprobs
        configs = [_config(one, body, p, body.max_tokens if body.max_tokens is not None else 16, logprobs, limits,
                           HTTPError) for p in prompts]  # fmt: skip
        run = _Run(one, configs, body, request, metrics, chat=False)
        return await run.answer()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = ChatBody.model_validate_json(await request.body())
        one = served.get(body.model)
        _refuse_what_cannot_be_honoured(body, HTTPError)
        prompt = chat_prompt(body.messages, HTTPError)
        check_prime(prompt, limits, "messages")
        length = next((x for x in (body.max_completion_tokens, body.max_tokens) if x is not None), CHAT_MAX_TOKENS)
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        config = _config(one, body, prompt, length, logprobs, limits, HTTPError, chat=True)
        return await _Run(one, [config], body, request, metrics, chat=True).answer()


def _refuse_what_cannot_be_honoured(body, HTTPError) -> None:
    fields = body.model_fields_set
    checks = [
        ("suffix", getattr(body, "suffix", None) not in (None, ""), "charrnn writes after the prompt only"),
        ("best_of", getattr(body, "best_of", None) not in (None, 1), "each sample is returned; use n"),
        ("presence_penalty", body.presence_penalty not in (None, 0), "no penalties are applied"),
        ("frequency_penalty", body.frequency_penalty not in (None, 0), "no penalties are applied"),
        ("logit_bias", bool(body.logit_bias), "no logit bias is applied"),
    ]
    for name in ("tools", "tool_choice", "functions", "response_format"):
        if name in fields and getattr(body, name) is not None:
            checks.append((name, True, "a character model calls no tools and writes no set format"))
    for name, refused, why in checks:
        if refused:
            raise HTTPError(400, f"{name} is not supported: {why}", name)


def _stops(stop, HTTPError) -> tuple[str, ...]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise HTTPError(400, f"stop: up to {MAX_STOPS} non-empty strings", "stop")
    return tuple(stops)


def _config(one, body, prompt: str, length: int, logprobs, limits, HTTPError, chat: bool = False) -> SampleConfig:
    if length > limits.max_length:
        raise HTTPError(400, f"max_tokens {length} is more than this server's --max-length {limits.max_length}",
                        "max_tokens")  # fmt: skip
    # a completion's prompt is read whole or refused (a 400 naming what the model cannot read); a
    # chat's is the template's too, so what the model never saw is left out (read as <unk> where it can)
    unknown = ("unk" if one.model.vocab.unk is not None else "skip") if chat else "auto"
    one.model.vocab.encode(prompt, unknown=unknown, context="the prompt")
    top_p = body.top_p if body.top_p is not None and body.top_p < 1 else None
    return SampleConfig(
        prime=prompt,
        length=length,
        temp=body.temperature if body.temperature is not None else 1.0,
        top_p=top_p,
        num_samples=body.n or 1,
        seed=body.seed,
        stops=(*_stops(body.stop, HTTPError), *(TURN_ENDS if chat else ())),
        logprobs=logprobs,
        unknown=unknown,
    )


def chat_prompt(messages: list, HTTPError) -> str:
    """A chat as text, each turn its role's marker line (`USER:`) then its text and a blank
    line, ending with the marker of the assistant's turn, which the model writes."""
    turns = []
    for i, m in enumerate(messages):
        if m.role not in ROLES:
            raise HTTPError(400, f"messages.{i}.role: one of {', '.join(ROLES)}, not {m.role!r}", "messages")
        content = m.content
        if isinstance(content, list):  # parts: their text
            content = "".join(part.get("text", "") for part in content if part.get("type") == "text")
        turns.append(f"{ROLE_MARK[m.role]}{content or ''}\n\n")
    if not turns:
        raise HTTPError(400, "messages: at least one", "messages")
    return "".join(turns) + ROLE_MARK["assistant"]


class _Run:
    """One OpenAI request: its runs (a prompt each) submitted to the model's batcher, their
    deliveries merged in one queue, and the answer built whole or streamed."""

    def __init__(self, one, configs: list[SampleConfig], body, request: Request, metrics, chat: bool):
        self.one, self.configs, self.body, self.request, self.chat = one, configs, body, request, chat
        self.n = configs[0].num_samples
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.queue: asyncio.Queue = asyncio.Queue()
        since = time.perf_counter()
        self.first = None if metrics is None else (lambda: metrics.first_symbol(one.name, since))
        self.handles = [one.batcher.submit(c, self._tagged(i), self.queue.qsize) for i, c in enumerate(configs)]

    def _tagged(self, i: int):
        return lambda item: self.queue.put_nowait((i, item))

    async def answer(self) -> Response:
        if self.body.stream:
            return StreamingResponse(self._events(), media_type="text/event-stream")
        try:
            got = await self._collect()
        finally:
            for h in self.handles:
                h.cancel()
        if got is None:
            return Response(status_code=499)
        return JSONResponse(await self._whole(*got))

    async def _collect(self):
        """Every run's items until all are done: (items by run, Done by run), or None if the
        client went away (asked 4 times a second)."""
        items: list[list] = [[] for _ in self.configs]
        done: dict[int, Done] = {}
        while len(done) < len(self.configs):
            try:
                i, item = await asyncio.wait_for(self.queue.get(), timeout=0.25)
            except asyncio.TimeoutError:
                if await self.request.is_disconnected():
                    return None
                continue
            if self.first is not None:
                self.first, _ = None, self.first()
            if isinstance(item, Done):
                done[i] = item
            else:
                items[i].append(item)
        return items, done

    async def _whole(self, items: list[list], done: dict[int, Done]) -> dict:
        from charrnn.serve.app import HTTPError

        choices, used = [], 0
        for i, config in enumerate(self.configs):
            if done[i].error is not None:
                raise HTTPError(400, str(done[i].error))
            for s in range(self.n):
                text = "".join(item[s] for item in items[i])[len(self._shown(i, s)) :]  # after the prompt
                tokens = [t for item in items[i] for t in (getattr(item, "tokens", None) or [[]] * self.n)[s]]
                finish = self._finish(i, s)
                used += len(self.one.model.vocab.tokenizer.split(text))
                choices.append(await self._choice(i * self.n + s, config, text, tokens, finish))
        prompt_tokens = sum(len(self.one.model.vocab.encode(c.prime, unknown=c.unknown)) for c in self.configs)
        kind = "chat.completion" if self.chat else "text_completion"
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": used, "total_tokens": prompt_tokens + used}
        return {"id": self.id, "object": kind, "created": self.created, "model": self.one.name,
                "choices": choices, "usage": usage}  # fmt: skip

    def _shown(self, i: int, s: int) -> str:
        """The prompt as run i delivers it first (as read: without what it skipped)."""
        run = self.handles[i].run
        return run.first[s] if run is not None else ""

    def _finish(self, i: int, s: int) -> str:
        """Why stream s of run i ended: its stop string ("stop"), or its length."""
        run = self.handles[i].run
        return "stop" if run is not None and run.streams.done[s] else "length"

    async def _choice(self, index: int, config: SampleConfig, text: str, tokens: list, finish: str) -> dict:
        tokens = _within(tokens, len(text))
        if self.chat:
            lp = None if config.logprobs is None else {"content": [_chat_token(t) for t in tokens]}
            return {"index": index, "message": {"role": "assistant", "content": text}, "logprobs": lp,
                    "finish_reason": finish}  # fmt: skip
        echo = config.prime if self.body.echo else ""
        lp = None
        if config.logprobs is not None:
            lp = _completion_logprobs(tokens, len(echo))
            if echo:
                lp = _join(await self._prompt_logprobs(config.prime), lp)
        return {"text": echo + text, "index": index, "logprobs": lp, "finish_reason": finish}

    async def _prompt_logprobs(self, prompt: str) -> dict:
        """The prompt's own tokens and their log-probabilities (the first has none), for echo."""
        symbols = self.one.model.vocab.tokenizer.split(prompt)
        scores = [None] * len(symbols)
        if len(symbols) >= 2:
            s = await asyncio.to_thread(self.one.model.score, prompt, unknown="auto")
            scores = [None, *s.logprobs]
        offsets = [sum(map(len, symbols[:k])) for k in range(len(symbols))]
        return {"tokens": symbols, "token_logprobs": scores, "top_logprobs": [None] * len(symbols),
                "text_offset": offsets}  # fmt: skip

    async def _events(self):
        """Server-sent events: a chunk per piece of a choice's text, a last chunk per choice
        with its finish reason, then `[DONE]`."""
        written = [""] * (len(self.configs) * self.n)
        sent = [0] * len(written)  # tokens of each choice sent so far
        tokens: list[list] = [[] for _ in written]
        try:
            yield self._event([self._delta(k, "", None, role=True) for k in range(len(written))]) if self.chat else ""
            if not self.chat and self.body.echo:
                yield self._event([self._delta(i * self.n + s, c.prime, None) for i, c in enumerate(self.configs)
                                   for s in range(self.n)])  # fmt: skip
            done = 0
            while done < len(self.configs):
                i, item = await self.queue.get()
                if self.first is not None:
                    self.first, _ = None, self.first()
                if isinstance(item, Done):
                    done += 1
                    if item.error is not None:
                        yield self._event(None, error=str(item.error))
                        break
                    yield self._event([self._last(i, s, written, tokens, sent) for s in range(self.n)])
                    continue
                yield self._event(self._pieces(i, item, written, tokens, sent))
            yield self._usage(written) + "data: [DONE]\n\n"
        finally:
            for h in self.handles:
                h.cancel()

    def _pieces(self, i: int, item, written, tokens, sent) -> list[dict]:
        chunks = []
        for s in range(self.n):
            k = i * self.n + s
            piece = self._after_prompt(k, i, s, item[s])
            tokens[k] += (getattr(item, "tokens", None) or [[]] * self.n)[s]
            written[k] += piece
            ready = _within(tokens[k], len(written[k]))[sent[k] :]
            if piece or ready:
                sent[k] += len(ready)
                chunks.append(self._delta(k, piece, ready))
        return chunks

    def _after_prompt(self, k: int, i: int, s: int, piece: str) -> str:
        """What of a piece is new text: the run delivers the prompt first, as read."""
        if not hasattr(self, "_prompt_left"):
            self._prompt_left: dict[int, int] = {}
        left = self._prompt_left.setdefault(k, len(self._shown(i, s)))
        self._prompt_left[k] = max(0, left - len(piece))
        return piece[left:]

    def _last(self, i: int, s: int, written, tokens, sent) -> dict:
        k = i * self.n + s
        ready = _within(tokens[k], len(written[k]))[sent[k] :]
        return self._delta(k, "", ready, finish=self._finish(i, s))

    def _delta(self, k: int, piece: str, tokens, finish=None, role=False) -> dict:
        config = self.configs[k // self.n]
        if self.chat:
            delta = {"role": "assistant", "content": ""} if role else ({"content": piece} if piece else {})
            lp = None if config.logprobs is None or not tokens else {"content": [_chat_token(t) for t in tokens]}
            return {"index": k, "delta": delta, "logprobs": lp, "finish_reason": finish}
        lp = None if config.logprobs is None or tokens is None else _completion_logprobs(tokens, 0)
        return {"text": piece, "index": k, "logprobs": lp, "finish_reason": finish}

    def _event(self, choices, error: str | None = None) -> str:
        if error is not None:
            return f"data: {json.dumps({'error': {'message': error, 'type': 'invalid_request_error'}})}\n\n"
        if not choices:
            return ""
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        chunk = {"id": self.id, "object": kind, "created": self.created, "model": self.one.name, "choices": choices}
        return f"data: {json.dumps(chunk)}\n\n"

    def _usage(self, written: list[str]) -> str:
        if not (self.body.stream_options or {}).get("include_usage"):
            return ""
        used = sum(len(self.one.model.vocab.tokenizer.split(t)) for t in written)
        prompt = sum(len(self.one.model.vocab.encode(c.prime, unknown=c.unknown)) for c in self.configs)
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        chunk = {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.one.name,
            "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": used, "total_tokens": prompt + used},
        }
        return f"data: {json.dumps(chunk)}\n\n"


def _within(tokens: list, length: int) -> list:
    """The tokens that begin within the first `length` characters of the text (a stop string
    cut the rest, or it is not written yet)."""
    out, at = [], 0
    for t in tokens:
        if at >= length:
            break
        out.append(t)
        at += len(t[0])
    return out


def _completion_logprobs(tokens: list, offset: int) -> dict:
    starts, at = [], offset
    for t in tokens:
        starts.append(at)
        at += len(t[0])
    return {
        "tokens": [t[0] for t in tokens],
        "token_logprobs": [t[1] for t in tokens],
        "top_logprobs": [t[2] for t in tokens],
        "text_offset": starts,
    }


def _join(a: dict, b: dict) -> dict:
    return {k: a[k] + b[k] for k in a}


def _chat_token(t) -> dict:
    text, lp, top = t
    return {
        "token": text,
        "logprob": lp,
        "bytes": list(text.encode("utf-8")),
        "top_logprobs": [{"token": k, "logprob": v, "bytes": list(k.encode("utf-8"))} for k, v in top.items()],
    }
