"""Running `charrnn serve`: load the models, listen, answer until Ctrl-C or SIGTERM, then let
the requests in flight finish (a few seconds at most, then each ends cleanly as cancelled).
HTTP is answered in a second thread; a single model is stepped in the main one, where torch's
CPU threads serve it best (several models each step in a thread of their own).

    serve(["checkpoints/my-run"], host="127.0.0.1", port=8000, limits=ServeLimits())

A client that takes longer than --timeout to send a request's headers is disconnected, and
past --max-connections open connections a request is answered 503.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from charrnn import api
from charrnn.config import ServeLimits
from charrnn.errors import BadValueError, CharRNNError
from charrnn.generation.batching import Batcher
from charrnn.serve.app import create_app
from charrnn.serve.guard import Gate
from charrnn.serve.models import name_of

GRACE_S = 5  # seconds requests in flight get after Ctrl-C or SIGTERM
CANCEL_AT_S = 3.5  # when those still running are ended (cancelled), to answer before the grace runs out
KEY_ENV = "CHARRNN_API_KEY"


def serve(
    runs: list[str] | None,
    *,
    host: str,
    port: int,
    limits: ServeLimits,
    device: str = "cpu",
    api_key: str | None = None,
    no_auth: bool = False,
    cors_origins: tuple[str, ...] = (),
    metrics: bool = False,
) -> None:
    """Load the models (`NAME=RUN` or `RUN` each; default: the newest run), listen on
    host:port, and answer until Ctrl-C or SIGTERM."""
    api_key = api_key if api_key is not None else os.environ.get(KEY_ENV) or None
    loopback = is_loopback(host)
    if not loopback and api_key is None and not no_auth:
        raise BadValueError(
            f"--host {host} answers other machines: give an --api-key (or --api-key-file, or {KEY_ENV}), "
            "or --no-auth to serve them without one"
        )
    models = load_models(runs, device)
    first = next(iter(models))
    batcher = None
    if len(models) == 1:  # stepped in this thread
        model = models[first]
        batcher = Batcher(model.net, model.vocab, max_streams=limits.max_streams, max_waiting=limits.max_waiting,
                          thread=False, eod_text=model.eod_text)  # fmt: skip
    gate = Gate(api_key, tuple(cors_origins), loopback, limits.max_body, limits.timeout)
    app = create_app(models, limits, batcher, gate=gate, metrics=metrics)  # a checkpoint it cannot describe fails here
    sock = _listen(host, port)
    _say_serving(models, host, sock, api_key is not None)
    _run(app, sock, limits, batcher)


def load_models(runs: list[str] | None, device: str) -> dict[str, api.Model]:
    models: dict[str, api.Model] = {}
    for spec in runs or [None]:
        name, _, path = (
            (spec or "").rpartition("=") if spec and "=" in spec and not Path(spec).exists() else ("", "", spec)
        )
        model = api.load(path or None, device=device)
        name = name or name_of(model.path)
        if name in models:
            raise BadValueError(f"two models are named {name!r}: name them apart as NAME=RUN")
        models[name] = model
    return models


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _say_serving(models: dict, host: str, sock: socket.socket, keyed: bool) -> None:
    url_host = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        how = "with an API key" if keyed else "without any authentication"
        print(f"charrnn: warning: --host {host} answers every network this machine is on, {how}", file=sys.stderr)
    served = ", ".join(f"{name} ({m.path})" if len(models) > 1 else str(m.path) for name, m in models.items())
    print(f"serving {served} on http://{url_host}:{sock.getsockname()[1]} (Ctrl-C to stop)", file=sys.stderr)


def _run(app, sock: socket.socket, limits: ServeLimits, batcher: Batcher | None) -> None:
    """HTTP in a second thread; a single model's batcher in this one (else this one waits)."""
    server = _uvicorn(app, limits)  # outside the main thread it leaves the signals to us
    failed: list[BaseException] = []
    stopped = threading.Event()

    def answer() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            failed.append(e)
        finally:
            stopped.set()
            if batcher is not None:
                batcher.close()

    def stop(signum, frame) -> None:  # the first Ctrl-C or SIGTERM drains; a second Ctrl-C stops at once
        if server.should_exit and signum == signal.SIGINT:
            server.force_exit = True
        if not server.should_exit:  # the runs still going by then end as cancelled, answered in time
            threading.Timer(CANCEL_AT_S, app.state.models.close).start()
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    web = threading.Thread(target=answer, name="charrnn-http")
    web.start()
    try:
        if batcher is not None:
            batcher.run()  # until the server has stopped, or the grace ran out
        else:
            while not stopped.wait(0.2):
                pass
    finally:
        server.should_exit = True  # the loop stopped: so does the server, whatever stopped it
        web.join()
    if failed:
        raise failed[0]


def _uvicorn(app, limits: ServeLimits):
    """The uvicorn server that answers HTTP for `app`: its access log on stderr, slow clients
    closed, open connections capped."""
    import uvicorn

    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"  # stdout is for the product only
    config = uvicorn.Config(
        app,
        http=_guarded_h11(limits.timeout),
        log_level="info",
        log_config=log_config,
        timeout_graceful_shutdown=GRACE_S,
        limit_concurrency=limits.max_connections,
        lifespan="on",
    )
    return uvicorn.Server(config)


def _guarded_h11(timeout: float):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request headers do not arrive
    within `timeout` seconds (of its opening, or of its last response): a slowloris client
    otherwise holds it open for ever."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Guarded(H11Protocol):
        guard = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self.guard = self.loop.call_later(timeout, self._too_slow)

        def _disarm(self) -> None:
            if self.guard is not None:
                self.guard.cancel()
                self.guard = None

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()  # the headers are in: the body's time is the app's to keep

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _too_slow(self) -> None:
            self.guard = None
            if self.cycle is None or self.cycle.response_complete:
                self.transport.close()

    return Guarded


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it a reply on a kept-alive connection waits ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise CharRNNError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
