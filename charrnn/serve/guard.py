"""What a request must be before the app sees it, as one ASGI middleware:

- on a server bound to loopback, a `Host` that is a loopback name (a DNS-rebinding page names
  its own host, and is refused);
- no `Origin`, its own origin, or one `--cors-origin` allows (a page elsewhere that the user
  visits cannot drive the server; `curl` sends no Origin);
- with an API key, `Authorization: Bearer KEY` on every /v1 route, compared in constant time;
- a body of at most `--max-body` bytes, read within `--timeout` seconds (a client that sends
  it slower is answered 408).

    app = Guard(app, Gate(api_key="s3cret", origins=("https://example.org",), loopback_only=True))

Each refusal is one line: `{"error": ...}`, or OpenAI's shape on the OpenAI routes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from dataclasses import dataclass

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
OPENAI_PATHS = ("/v1/completions", "/v1/chat/completions", "/v1/models")
OPEN_PATHS = ("/healthz", "/metrics", "/")  # no key needed: health, metrics and the page (which asks for one)


@dataclass(frozen=True)
class Gate:
    api_key: str | None = None
    origins: tuple[str, ...] = ()
    loopback_only: bool = False
    max_body: int = 64 * 1024
    timeout: float = 10.0


def error_body(path: str, status: int, message: str, param: str | None = None) -> bytes:
    """A refusal's JSON: OpenAI's shape on its routes, charrnn's elsewhere."""
    if path.startswith(OPENAI_PATHS):
        kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 408: "timeout_error", 413: "invalid_request_error",
                429: "rate_limit_error"}.get(status, "server_error")  # fmt: skip
        return json.dumps({"error": {"message": message, "type": kind, "param": param, "code": None}}).encode()
    return json.dumps({"error": message}).encode()


async def send_error(send, path: str, status: int, message: str, headers: list | None = None) -> None:
    body = error_body(path, status, message)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *(headers or [])],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


class Guard:
    def __init__(self, app, gate: Gate):
        self.app, self.gate = app, gate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        refusal = self._refusal(scope)
        if refusal is not None:
            status, message, headers = refusal
            return await send_error(send, path, status, message, headers)
        await self._with_body_limits(scope, receive, send)

    def _refusal(self, scope) -> tuple[int, str, list] | None:
        gate, path = self.gate, scope.get("path", "")
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        host = headers.get(b"host", b"").decode("latin-1")
        if gate.loopback_only and _hostname(host) not in LOOPBACK_NAMES:
            return 400, "this server answers only requests for localhost (Host: a loopback name)", []
        origin = headers.get(b"origin")
        if origin is not None:
            origin = origin.decode("latin-1")
            own = f"{scope.get('scheme', 'http')}://{host}"
            if origin != own and origin not in gate.origins:
                return 403, f"requests from pages at {_short(origin)} are not allowed (see --cors-origin)", []
        if gate.api_key is not None and path.startswith("/v1") and not _key_ok(headers, gate.api_key):
            challenge = [(b"www-authenticate", b"Bearer")]
            return 401, "a valid API key is needed: Authorization: Bearer KEY", challenge
        return None

    async def _with_body_limits(self, scope, receive, send):
        gate, path = self.gate, scope.get("path", "")
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        too_large = f"the request body is over this server's --max-body {gate.max_body} bytes"
        if declared is not None and declared.isdigit() and int(declared) > gate.max_body:
            return await send_error(send, path, 413, too_large)
        received, complete = 0, False

        async def limited():
            nonlocal received, complete
            if complete:  # the body is in: what follows is a disconnect, waited for as long as it takes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), gate.timeout)
            except asyncio.TimeoutError:
                raise _TooSlow from None
            received += len(message.get("body", b""))
            complete = message.get("type") != "http.request" or not message.get("more_body", False)
            if received > gate.max_body:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await send_error(send, path, 413, too_large)
        except _TooSlow:
            await send_error(send, path, 408, f"the request body did not arrive within --timeout {gate.timeout:g} s")


def _hostname(host: str) -> str:
    """A Host header's name, without its port."""
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _key_ok(headers: dict, key: str) -> bool:
    given = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


def _short(text: str, most: int = 80) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"
