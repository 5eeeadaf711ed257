"""Running `charrnn serve`: load the model, listen, answer until Ctrl-C or SIGTERM, then let
the requests in flight finish. HTTP is answered in a second thread; the model is stepped in
the main one, where torch's CPU threads serve it best.

    serve(Path("checkpoints/my-run"), host="127.0.0.1", port=8000, limits=ServeLimits())
"""

from __future__ import annotations

import copy
import signal
import socket
import sys
import threading
from pathlib import Path

from charrnn import api
from charrnn.config import ServeLimits
from charrnn.errors import CharRNNError
from charrnn.generation.batching import Batcher
from charrnn.serve.app import create_app


def serve(checkpoint_path: Path | None, *, host: str, port: int, limits: ServeLimits, device: str = "cpu") -> None:
    """Load the model, listen on host:port, and answer until Ctrl-C or SIGTERM (then the
    requests in flight get a few seconds to finish). HTTP is answered in a second thread; the
    model is stepped in this one, where torch's CPU threads serve it best."""
    model = api.load(checkpoint_path, device=device)
    batcher = Batcher(
        model.net,
        model.vocab,
        max_streams=limits.max_streams,
        max_waiting=limits.max_waiting,
        thread=False,
        eod_text=model.eod_text,
    )
    app = create_app(model, limits, batcher)  # before listening: a checkpoint it cannot describe fails here
    sock = _listen(host, port)
    url_host = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        print(
            f"charrnn: warning: --host {host} answers every network this machine is on, without any authentication",
            file=sys.stderr,
        )
    print(f"serving {model.path} on http://{url_host}:{sock.getsockname()[1]} (Ctrl-C to stop)", file=sys.stderr)
    server = _uvicorn(app)  # outside the main thread it leaves the signals to us
    failed: list[BaseException] = []

    def answer() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            failed.append(e)
        finally:
            batcher.close()

    def stop(signum, frame) -> None:  # the first Ctrl-C or SIGTERM drains; a second Ctrl-C stops at once
        if server.should_exit and signum == signal.SIGINT:
            server.force_exit = True
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    web = threading.Thread(target=answer, name="charrnn-http")
    web.start()
    try:
        batcher.run()  # until the server has stopped
    finally:
        server.should_exit = True  # the loop stopped: so does the server, whatever stopped it
        web.join()
    if failed:
        raise failed[0]


def _uvicorn(app):
    """The uvicorn server that answers HTTP for `app`, its access log on stderr."""
    import uvicorn

    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"  # stdout is for the product only
    config = uvicorn.Config(app, log_level="info", log_config=log_config, timeout_graceful_shutdown=5, lifespan="on")
    return uvicorn.Server(config)


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
