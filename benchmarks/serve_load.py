"""Load on `charrnn serve`: many clients at once against the same requests one after another,
through the real HTTP API on loopback, side by side in one run.

    python benchmarks/serve_load.py                      # 3x512, 32 clients x 2,000 characters
    python benchmarks/serve_load.py --clients 8 --length 500 --hidden 128 --layers 2

A model of the given size is trained for one step on the bundled tiny-shakespeare (its
weights do not change the cost of a step), served by `python -m charrnn serve` in a child
process, and driven by streaming clients. Prints total chars/s for the concurrent and the
sequential runs and their ratio (the concurrent run through charrnn's /v1/generate and again
through OpenAI's /v1/completions with server-sent events), the ceiling that the model's own step sets on that ratio,
the p50 and p99 time to the first generated character, and one client's chars/s against
`Model.pieces`, what `charrnn sample` runs, in this process.
The request count and the run time are bounded by --clients and --length.

The clients run on the server's own cores, so after the server has started this process lowers
its CPU priority (--client-nice, 10 by default; 0 keeps it equal): the model's step runs on
every core, and a client scheduled in the middle of it stalls the whole step, which is a cost
of the load generator, not of the server. The figure it prints says which setting it ran with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch

import charrnn
from charrnn.config import SampleConfig
from charrnn.model.stepper import FastStepper

ROOT = Path(__file__).resolve().parents[1]


async def one(client: httpx.AsyncClient, url: str, seed: int, length: int, route: str = "generate") -> tuple:
    """(seconds to the first generated character, seconds in all, characters generated, the
    generated text) of one streamed request, through charrnn's /v1/generate (lines of JSON)
    or OpenAI's /v1/completions (server-sent events)."""
    t0 = time.perf_counter()
    first, text = None, []
    if route == "generate":
        body, path = {"prime": "ROMEO:", "length": length, "seed": seed, "stream": True}, "/v1/generate"
    else:
        # OpenAI's default temperature is 1; charrnn's 0.8, which /v1/generate takes
        body = {"prompt": "ROMEO:", "max_tokens": length, "seed": seed, "temperature": 0.8, "stream": True}
        path = "/v1/completions"
    async with client.stream("POST", f"{url}{path}", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if route == "completions":
                if not line.startswith("data: {"):
                    continue
                piece = json.loads(line[len("data: ") :])["choices"][0]["text"]
            elif line and "text" in (m := json.loads(line)):
                piece = m["text"]
            else:
                continue
            text.append(piece)
            if first is None and len("".join(text)) > (len("ROMEO:") if route == "generate" else 0):
                first = time.perf_counter() - t0
    written = "".join(text)[len("ROMEO:") :] if route == "generate" else "".join(text)
    return first, time.perf_counter() - t0, len(written), written


async def concurrent(url: str, clients: int, length: int, route: str = "generate") -> tuple[float, list[tuple]]:
    async with httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=clients)) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(client, url, s, length, route) for s in range(clients)))
        return time.perf_counter() - t0, results


async def sequential(url: str, clients: int, length: int, first_seed: int = 0) -> tuple[float, list[tuple]]:
    async with httpx.AsyncClient(timeout=None) as client:
        t0 = time.perf_counter()
        results = [await one(client, url, s, length) for s in range(first_seed, first_seed + clients)]
        return time.perf_counter() - t0, results


def start_server(run: Path, clients: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "serve", str(run), "--port", "0", "--max-streams", str(clients)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=run.parent,
    )
    for line in proc.stderr:
        if m := re.search(r"on (http://\S+) \(Ctrl-C", line):
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # its access log, unread
            return proc, m[1]
    raise SystemExit("the server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--length", type=int, default=2000, help="characters each client asks for")
    ap.add_argument("--client-nice", type=int, default=10, help="how far the clients' CPU priority is lowered")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="charrnn-serve-load-"))
    result = charrnn.train(
        "tinyshakespeare", hidden=a.hidden, layers=a.layers, max_steps=1, batch_size=8, seq_len=32,
        device="cpu", precision="fp32", out=tmp / "run",
    )  # fmt: skip
    model = charrnn.load(result.run_dir)
    list(model.pieces(SampleConfig(prime="ROMEO:", length=200, seed=0)))  # warm-up

    def step_ms(rows: int, steps: int = 200) -> float:
        """Milliseconds of one step of the model alone for `rows` streams, in this (main) thread."""
        stepper = FastStepper(model.net)
        state = stepper.convert(model.net.init_state(rows))
        ids = torch.zeros(rows, dtype=torch.long)
        for _ in range(20):
            _, state = stepper.step(ids, state)
        t0 = time.perf_counter()
        for _ in range(steps):
            _, state = stepper.step(ids, state)
        return (time.perf_counter() - t0) / steps * 1000

    def direct() -> float:
        t0 = time.perf_counter()
        list(model.pieces(SampleConfig(prime="ROMEO:", length=a.length, seed=0)))
        return time.perf_counter() - t0

    # This machine's speed drifts over minutes, so each pair of figures is taken around the
    # other: direct and one client twice, in turn; the sequential run in two halves, before
    # and after the concurrent one.
    proc, url = start_server(result.run_dir, a.clients)
    os.nice(a.client_nice)  # the server, started already, keeps its own priority
    try:
        asyncio.run(sequential(url, 2, 200))  # warm-up
        direct_t = direct()
        one_t, _ = asyncio.run(sequential(url, 1, a.length))
        first_half = a.clients // 2
        seq1_t, seq1_r = asyncio.run(sequential(url, first_half, a.length))
        con_t, con_r = asyncio.run(concurrent(url, a.clients, a.length))
        oai_t, oai_r = asyncio.run(concurrent(url, a.clients, a.length, "completions"))
        seq2_t, seq2_r = asyncio.run(sequential(url, a.clients - first_half, a.length, first_half))
        one_t += asyncio.run(sequential(url, 1, a.length))[0]
        direct_t += direct()
        one_row, all_rows = step_ms(1), step_ms(a.clients)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    seq_t, seq_r = seq1_t + seq2_t, seq1_r + seq2_r
    total = a.clients * a.length
    assert all(r[2] == a.length for r in seq_r + con_r + oai_r), "a request came back short"

    def first(results):
        ttfc = sorted(r[0] for r in results)
        return statistics.median(ttfc), ttfc[min(len(ttfc) - 1, round(0.99 * (len(ttfc) - 1)))]

    print(f"{a.layers}x{a.hidden} LSTM, {a.clients} clients x {a.length:,} characters, torch {torch.__version__}, "
          f"clients at nice {a.client_nice}")  # fmt: skip
    print(f"{'':34}{'chars/s':>10}{'p50 first char':>16}{'p99 first char':>16}")
    for name, t, results in (
        ("sequential (one after another)", seq_t, seq_r),
        ("concurrent, /v1/generate", con_t, con_r),
        ("concurrent, /v1/completions SSE", oai_t, oai_r),
    ):
        p50, p99 = first(results)
        print(f"{name:34}{total / t:>10,.0f}{p50 * 1000:>14,.0f}ms{p99 * 1000:>14,.0f}ms")
    print(f"ratio concurrent / sequential: {seq_t / con_t:.2f}x (/v1/generate), {seq_t / oai_t:.2f}x (/v1/completions)")
    same_routes = sum(c[3] == o[3] for c, o in zip(con_r, oai_r, strict=True))
    print(f"{same_routes} of {a.clients} texts are the same through both routes")
    print(f"the model's step alone: {one_row:.2f} ms for 1 row, {all_rows:.2f} ms for {a.clients}: batching can give "
          f"{a.clients * one_row / all_rows:.1f}x at most")  # fmt: skip
    same = sum(c[3] == s[3] for c, s in zip(con_r, seq_r, strict=True))
    print(f"{same} of {a.clients} concurrent texts are the ones their seeds give served one after another")
    print(f"one client {2 * a.length / one_t:,.0f} chars/s; Model.pieces (what charrnn sample runs) "
          f"{2 * a.length / direct_t:,.0f} chars/s; ratio {direct_t / one_t:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
