"""`charrnn serve` as a client meets it: a real server process on a free loopback port,
driven over HTTP."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

import charrnn
from tests.conftest import fork_charrnn
from tests.test_visualize import CHROMIUM, _chromium, needs_chromium

SERVING = re.compile(r"serving .* on (http://\S+) \(Ctrl-C to stop\)")


@contextmanager
def running(run: Path, *flags, cwd: Path):
    """`charrnn serve RUN --port 0 FLAGS` until the block ends; yields (url, process, its stderr lines)."""
    proc = fork_charrnn("serve", run, "--port", 0, *flags, cwd=cwd)
    log: list[str] = []
    url = None
    deadline = time.monotonic() + 120
    while url is None:
        line = proc.stderr.readline()
        if not line or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the server did not start: {''.join(log)}")
        log.append(line)
        if m := SERVING.search(line):
            url = m[1]
    reader = threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True)
    reader.start()
    _wait_healthy(url)
    try:
        yield url, proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        reader.join(timeout=5)


def _wait_healthy(url: str) -> None:
    for _ in range(100):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("the server never answered /healthz")


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    with running(tiny_run, cwd=tmp_path_factory.mktemp("serve")) as (url, proc, log):
        yield url, log


def stream(client: httpx.Client, url: str, times: list | None = None, **body) -> list[dict]:
    """The streamed answer's objects; `times` gets when each line arrived."""
    with client.stream("POST", f"{url}/v1/generate", json={**body, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        lines = []
        for line in r.iter_lines():
            if line:
                lines.append(json.loads(line))
                if times is not None:
                    times.append(time.perf_counter())
        return lines


def health_becomes(client, url: str, key: str, value: int, tries: int = 100) -> bool:
    """Whether /healthz's `key` reaches `value` within `tries` looks, 20 ms apart."""
    for _ in range(tries):
        if client.get(f"{url}/healthz").json()[key] == value:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.slow
def test_generate_is_what_charrnn_sample_prints(server, tiny_run, cli):
    url, _ = server
    r = httpx.post(f"{url}/v1/generate", json={"prime": "The ", "length": 150, "temp": 0.8, "seed": 7})
    assert r.status_code == 200, r.text
    got = r.json()
    out = cli("sample", tiny_run, "--prime", "The ", "--length", 150, "--temp", 0.8, "--seed", 7)
    assert got == {"text": out.stdout_bytes.decode("utf-8")[:-1], "stopped": "length"}
    # several samples: the command line's, between its separators
    r = httpx.post(f"{url}/v1/generate", json={"prime": "床前", "length": 40, "seed": 3, "num_samples": 3})
    out = cli(
        "sample", tiny_run, "--prime", "床前", "--length", 40, "--seed", 3, "--num-samples", 3, "--separator", "|~|"
    )
    assert r.json()["texts"] == out.stdout_bytes.decode("utf-8")[:-1].split("|~|")
    # a curl-style body (declared as a form) is read as JSON all the same
    r = httpx.post(f"{url}/v1/generate", content=b'{"prime": "The ", "length": 150, "seed": 7}')
    assert r.json() == got


@pytest.mark.slow
def test_streamed_text_is_the_whole_text_in_pieces(server):
    url, _ = server
    with httpx.Client(timeout=60) as client:
        t0, times = time.perf_counter(), []
        lines = stream(client, url, times, prime="The ", length=5000, seed=11)
        whole = client.post(f"{url}/v1/generate", json={"prime": "The ", "length": 5000, "seed": 11}).json()
        assert lines[-1] == {"done": True, "stopped": "length"}
        assert "".join(m["text"] for m in lines[:-1]) == whole["text"]
        # written as it goes: the first character long before the end, then the rest in many lines
        assert len(lines[0]["text"]) <= len("The ") + 1 and times[0] - t0 < (times[-1] - t0) / 4 and len(lines) > 4
        lines = stream(client, url, prime="The ", length=300, seed=11, num_samples=2)
        assert {m["sample"] for m in lines[:-1]} == {0, 1}
        # a stop string ends the sample where it first appears, without it
        stop = whole["text"][10:12]
        cut = client.post(f"{url}/v1/generate", json={"prime": "The ", "length": 300, "seed": 11, "stop": stop}).json()
        assert cut == {"text": whole["text"][: whole["text"].index(stop, 4)], "stopped": "stop"}


@pytest.mark.slow
def test_score_info_health_and_page(server, tiny_run):
    url, _ = server
    r = httpx.post(f"{url}/v1/score", json={"text": "The quick brown fox"})
    assert r.status_code == 200
    expected = charrnn.load(tiny_run).score("The quick brown fox")
    assert r.json()["logprobs"] == pytest.approx(expected.logprobs, abs=1e-5)
    assert r.json()["nats"] == pytest.approx(expected.nats, abs=1e-5) and r.json()["chars"] == 19
    info = httpx.get(f"{url}/v1/info").json()
    assert info["model"] == {"model": "lstm", "layers": 2, "hidden": 16, "dropout": 0.0, "softmax": "full",
                             "tie_embeddings": False} and info["path"].endswith("best.pt")  # fmt: skip
    assert isinstance(info["parameters"], int) and isinstance(info["step"], int) and info["loss_unit"] == "nats/char"
    assert info["parameters"] == charrnn.load(tiny_run).net.num_params() and isinstance(info["best_val_loss"], float)
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "streams": 0, "waiting": 0}
    page = httpx.get(f"{url}/").text
    assert 'id="go"' in page and 'id="stop"' in page and "chars/s" in page
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere


@pytest.mark.slow
def test_32_concurrent_streams_share_the_steps(server):
    url, _ = server
    with httpx.Client(timeout=120) as client:
        alone = {s: client.post(f"{url}/v1/generate", json={"prime": "The", "length": 200, "seed": s}).json()["text"]
                 for s in range(32)}  # fmt: skip
        peak = []
        results: dict[int, list[dict]] = {}

        def one(seed):
            with httpx.Client(timeout=120) as c:
                results[seed] = stream(c, url, prime="The", length=200, seed=seed)

        threads = [threading.Thread(target=one, args=(s,)) for s in range(32)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak.append(client.get(f"{url}/healthz").json()["streams"])
            time.sleep(0.02)
        for t in threads:
            t.join()
    assert max(peak) >= 16  # they ran together, not one after another
    texts = {s: "".join(m["text"] for m in lines[:-1]) for s, lines in results.items()}
    assert all(len(t) == 203 and t.startswith("The") for t in texts.values())
    # each stream's own generator decides its text: the same as served alone, but where the batched
    # product rounds a near-tie the other way
    assert sum(texts[s] == alone[s] for s in range(32)) >= 28
    assert len(set(texts.values())) == 32


@pytest.mark.slow
def test_a_client_that_goes_away_frees_its_stream(server):
    url, _ = server
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", f"{url}/v1/generate", json={"prime": "The", "length": 10_000, "stream": True}) as r:
            lines = r.iter_lines()
            next(lines), next(lines)
            assert client.get(f"{url}/healthz").json()["streams"] == 1
        assert health_becomes(client, url, "streams", 0)  # the response is closed: the stream leaves the batch
        # the same for a client that waits for the whole text and gives up first
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/generate", json={"prime": "The", "length": 10_000, "temp": 0}, timeout=0.3)
        assert health_becomes(client, url, "streams", 0)


BAD = [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "should be an object"),
    (b'{"length": "5"}', 400, "length: Input should be a valid integer"),
    (b'{"prime": 7}', 400, "prime: Input should be a valid string"),
    (b'{"lenght": 5}', 400, "unknown field 'lenght'"),
    (b'{"length": 10001}', 400, "more than this server's --max-length 10000"),
    (b'{"prime": "' + b"a" * 10_001 + b'"}', 400, "the prime is 10001 characters, more than this server's"),
    (b'{"temp": -0.5}', 400, "temp: Input should be greater than or equal to 0"),
    (b'{"top_p": 1.5}', 400, "top_p"),
    (b'{"top_k": 0}', 400, "top_k"),
    (b'{"num_samples": 65}', 400, "more than --max-streams 64"),
    (b'{"seed": -1}', 400, "seed"),
    (b'{"prime": "z\\u0436"}', 400, "1 character(s) not in the model's vocabulary: '\u0436'"),
]


@pytest.mark.slow
@pytest.mark.parametrize("body, status, words", BAD, ids=[b.decode()[:20] for b, _, _ in BAD])
def test_bad_requests_are_one_line_4xx(server, body, status, words):
    url, log = server
    r = httpx.post(f"{url}/v1/generate", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and list(r.json()) == ["error"], r.text
    assert words in r.json()["error"] and "\n" not in r.json()["error"]
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert not any("Traceback" in line or '" 500' in line for line in log)


@pytest.mark.slow
def test_unknown_paths_and_methods_are_one_line_too(server):
    url, _ = server
    r = httpx.get(f"{url}/v2/nothing")
    assert r.status_code == 404 and r.json() == {"error": "GET /v2/nothing: Not Found"}
    r = httpx.get(f"{url}/v1/generate")
    assert r.status_code == 405 and list(r.json()) == ["error"]


@pytest.mark.slow
def test_unknown_characters_can_be_skipped_and_scores_refused(server):
    url, _ = server
    r = httpx.post(f"{url}/v1/generate", json={"prime": "Th\u0436e", "unknown": "skip", "length": 5, "seed": 1})
    assert r.status_code == 200 and r.json()["text"].startswith("The")
    r = httpx.post(f"{url}/v1/score", json={"text": "a"})
    assert r.status_code == 400 and "at least 2 characters" in r.json()["error"]


@pytest.mark.slow
def test_limits_answer_413_and_429_not_a_crash(tiny_run, tmp_path):
    flags = ("--max-streams", 1, "--max-queue", 1, "--max-body", 256, "--max-length", 10**6)
    with running(tiny_run, *flags, cwd=tmp_path) as (url, proc, log):
        r = httpx.post(f"{url}/v1/generate", content=b'{"prime": "' + b"a" * 400 + b'"}')
        assert r.status_code == 413 and "--max-body 256" in r.json()["error"]
        with httpx.Client(timeout=60) as a, httpx.Client(timeout=60) as b:
            body = {"prime": "The", "length": 10**6, "stream": True}  # left unread, it pauses but holds its place
            with a.stream("POST", f"{url}/v1/generate", json=body) as first:
                lines = first.iter_lines()  # kept: a dropped iterator closes the response
                next(lines)  # writing: the one stream there is room for
                with b.stream("POST", f"{url}/v1/generate", json={"prime": "The", "stream": True}) as second:
                    health_becomes(httpx, url, "waiting", 1)  # waits: the one place in the queue
                    third = httpx.post(f"{url}/v1/generate", json={"prime": "The", "length": 5})
                    assert third.status_code == 429 and "waiting already" in third.json()["error"]
                    assert second.status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200
    assert proc.returncode == 0
    assert not any("Traceback" in line for line in log)


@pytest.mark.slow
def test_sigterm_lets_a_stream_finish_and_exits_0(tiny_run, tmp_path):
    with running(tiny_run, cwd=tmp_path) as (url, proc, log):
        with httpx.Client(timeout=60) as client:
            with client.stream(
                "POST", f"{url}/v1/generate", json={"prime": "The", "length": 3000, "stream": True}
            ) as r:
                lines = r.iter_lines()
                next(lines)
                proc.send_signal(signal.SIGTERM)  # drains: the stream in flight still ends as it should
                rest = [json.loads(line) for line in lines if line]
        assert rest[-1] == {"done": True, "stopped": "length"}
        assert proc.wait(timeout=30) == 0
    assert not any("Traceback" in line for line in log)


@pytest.mark.slow
def test_every_network_is_a_warning_and_a_taken_port_one_line(tiny_run, tmp_path):
    # other machines without a key: refused, unless --no-auth says so on purpose
    keyless = fork_charrnn("serve", tiny_run, "--host", "0.0.0.0", cwd=tmp_path)
    _, stderr = keyless.communicate(timeout=120)
    assert keyless.returncode == 2 and "--api-key" in stderr and stderr.count("\n") == 1
    with running(tiny_run, "--host", "0.0.0.0", "--no-auth", cwd=tmp_path) as (url, proc, log):
        assert any("charrnn: warning: --host 0.0.0.0 answers every network" in line for line in log)
        port = url.rsplit(":", 1)[1]
        taken = fork_charrnn("serve", tiny_run, "--port", port, cwd=tmp_path)
        _, stderr = taken.communicate(timeout=120)
        assert taken.returncode == 1 and stderr.startswith(f"charrnn: error: cannot listen on 127.0.0.1:{port}")
        assert stderr.count("\n") == 1


@pytest.mark.slow
@needs_chromium
def test_the_page_streams_text_in_a_browser(server, tmp_path):
    url, _ = server
    expected = httpx.post(f"{url}/v1/generate", json={"prime": "The", "length": 200, "seed": 7}).json()["text"]
    # the page types a prime and presses Generate itself (/#selftest); the browser's copy of the page
    # is taken when its time budget runs out, part-way through the text or after it
    r = _chromium(tmp_path, "--dump-dom", f"{url}/#selftest")
    m = re.search(r'<pre id="selftest">(.*?)</pre>', r.stdout, re.S)
    assert CHROMIUM and m and m.group(1), r.stderr[-2000:]
    got = json.loads(m.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    assert len(got["text"]) > len("The") and expected.startswith(got["text"])  # the stream, as it came
    assert re.match(r"(done \(length\): 203 characters|\d+ characters)", got["status"]), got["status"]
    if got["done"]:
        assert got["text"] == expected and "chars/s" in got["status"]


def test_replies_are_not_held_back_for_a_delayed_ack():
    # asyncio sets TCP_NODELAY only on sockets that name their protocol; without it each reply
    # on a kept-alive connection waited ~40 ms for the client's delayed ACK
    import asyncio
    import socket

    from charrnn.serve.server import _listen

    async def accepted_nodelay() -> int:
        sock = _listen("127.0.0.1", 0)
        seen = asyncio.get_running_loop().create_future()

        def connected(reader, writer):
            seen.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(connected, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        value = await asyncio.wait_for(seen, 10)
        writer.close()
        server.close()
        return value

    assert asyncio.run(accepted_nodelay()) != 0


def test_a_stream_whose_client_lags_pauses_and_the_others_go_on(tiny_run):
    from charrnn.config import SampleConfig
    from charrnn.generation.batching import MAX_BACKLOG, Batcher, Done

    model = charrnn.load(tiny_run)
    batcher = Batcher(model.net, model.vocab, max_streams=4, max_waiting=4)
    got = {"slow": [], "fast": []}
    ended = {name: threading.Event() for name in got}
    unread = {"slow": MAX_BACKLOG + 1}  # what the slow client has left unread

    def deliver(name):
        def take(item):
            if isinstance(item, Done):
                ended[name].set()
            else:
                got[name].append(item[0])

        return take

    try:
        batcher.submit(SampleConfig(prime="The", length=400, seed=1), deliver("slow"), lambda: unread["slow"])
        batcher.submit(SampleConfig(prime="The", length=400, seed=2), deliver("fast"))
        assert ended["fast"].wait(60)
        assert not ended["slow"].is_set() and len("".join(got["slow"])) <= len("The") + 1
        unread["slow"] = 0  # it reads again: the stream goes on where it paused
        assert ended["slow"].wait(60)
        assert "".join(got["slow"]) == model.generate("The", length=400, seed=1)
    finally:
        batcher.close()


def test_the_app_mounts_in_python_code(tiny_run):
    # create_app is an ASGI app for a server of the user's own; its lifespan starts the batcher
    import asyncio

    from charrnn.serve.app import create_app

    model = charrnn.load(tiny_run)
    app = create_app(model)

    async def use() -> tuple[dict, list[dict]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://charrnn") as client:
                whole = (await client.post("/v1/generate", json={"prime": "The ", "length": 60, "seed": 5})).json()
                r = await client.post("/v1/generate", json={"length": 30, "stream": True})
                return whole, [json.loads(line) for line in r.text.splitlines() if line]

    whole, lines = asyncio.run(use())
    assert whole == {"text": model.generate("The ", length=60, seed=5), "stopped": "length"}
    assert lines[-1] == {"done": True, "stopped": "length"} and len("".join(m["text"] for m in lines[:-1])) == 30


def test_the_batcher_takes_what_fits_queues_the_rest_and_closes_cleanly(tiny_run):
    from charrnn.config import SampleConfig
    from charrnn.generation.batching import Batcher, Busy, Closed, Done

    model = charrnn.load(tiny_run)
    ends: list[str] = []
    deliver = lambda item: ends.append(item.stopped) if isinstance(item, Done) else None  # noqa: E731
    batcher = Batcher(model.net, model.vocab, max_streams=2, max_waiting=0, thread=False)  # stepped by hand
    # with no queue at all, what the free rows take is still taken
    batcher.submit(SampleConfig(length=10**6, num_samples=2), deliver)
    with pytest.raises(Busy):
        batcher.submit(SampleConfig(length=5), deliver)  # it would have to wait for room
    batcher.max_waiting = 1
    batcher.submit(SampleConfig(length=5), deliver)
    assert batcher.load() == {"streams": 0, "waiting": 1}
    batcher.close()  # before the loop ever ran: the waiting and the running are told, and it stops
    batcher.run()
    assert ends == ["cancelled", "cancelled"]
    with pytest.raises(Closed):
        batcher.submit(SampleConfig(length=5), deliver)


def test_runs_that_join_and_leave_mid_batch_write_what_they_write_alone(tiny_run):
    # each plain run draws its noise several steps at a time; runs that join part-way through
    # those steps, leave early or pick with other options beside them must not shift anyone's draws
    from charrnn.config import SampleConfig
    from charrnn.generation.batching import Batcher, Done

    model = charrnn.load(tiny_run)
    batcher = Batcher(model.net, model.vocab, max_streams=8, max_waiting=8)
    texts: dict[str, list[list[str]]] = {}
    ended = {name: threading.Event() for name in ("a", "b", "c", "d")}
    seven_in = threading.Event()

    def deliver(name):
        def take(item):
            if isinstance(item, Done):
                ended[name].set()
                return
            got = texts.setdefault(name, [[] for _ in item])
            for buf, piece in zip(got, item, strict=True):
                buf.append(piece)
            if name == "a" and len("".join(got[0])) >= len("The") + 7:
                seven_in.set()

        return take

    options = {
        "a": SampleConfig(prime="The", length=300, seed=1, num_samples=2),
        "b": SampleConfig(prime="Th", length=40, seed=2),
        "c": SampleConfig(prime="T", length=100, seed=3, top_k=3),
        "d": SampleConfig(prime="e", length=120, seed=4, temp=0.7, num_samples=3),
    }
    try:
        batcher.submit(options["a"], deliver("a"))
        assert seven_in.wait(60)
        for name in "bcd":
            batcher.submit(options[name], deliver(name))
        assert all(e.wait(60) for e in ended.values())
    finally:
        batcher.close()
    for name, config in options.items():
        alone = model.generate(
            **{k: getattr(config, k) for k in ("prime", "length", "seed", "temp", "top_k", "num_samples")}
        )
        assert ["".join(t) for t in texts[name]] == (alone if config.num_samples > 1 else [alone]), name


def test_a_long_prime_for_many_samples_is_read_once_in_pieces_between_steps(tiny_run):
    # 10,000 characters of prime for 64 samples once took gigabytes and stalled every stream:
    # it is read once (one row), PRIME_CHUNK characters a pass, a step of the others between passes
    from charrnn.config import SampleConfig
    from charrnn.generation.batching import Batcher, Done
    from charrnn.generation.prime import PRIME_CHUNK

    model = charrnn.load(tiny_run)
    events: list[tuple] = []  # ("read", rows, columns) per pass over a prime, ("step", rows) per step
    forward = model.net.forward
    model.net.forward = lambda x, *a, **k: events.append(("read", *x.shape)) or forward(x, *a, **k)
    batcher = Batcher(model.net, model.vocab, max_streams=65, max_waiting=8)
    batcher.on_step = lambda rows, seconds: events.append(("step", rows))
    ended = {name: threading.Event() for name in ("writing", "long")}
    texts: dict[str, list[str]] = {}

    def deliver(name):
        def take(item):
            if isinstance(item, Done):
                ended[name].set()
            elif name == "long":
                texts[name] = [t + piece for t, piece in zip(texts.get(name, [""] * len(item)), item, strict=True)]

        return take

    prime = "The quick brown fox. " * 476  # 9,996 characters
    try:
        writing = batcher.submit(SampleConfig(prime="T", length=10**6, seed=1), deliver("writing"))
        while not any(e[0] == "step" for e in events):
            time.sleep(0.01)
        batcher.submit(SampleConfig(prime=prime, length=1, num_samples=64, seed=2), deliver("long"))
        assert ended["long"].wait(60)
        writing.cancel()
        assert ended["writing"].wait(60)
    finally:
        batcher.close()
        model.net.forward = forward
    reads = [e for e in events if e[0] == "read"][1:]  # the first: "T", before the long one came
    assert [rows for _, rows, _ in reads] == [1] * -(-len(prime) // PRIME_CHUNK)  # one row, every piece
    assert max(columns for _, _, columns in reads) == PRIME_CHUNK
    first, last = events.index(reads[0]), len(events) - events[::-1].index(reads[-1])
    order = "".join(e[0][0] for e in events[first:last])  # r: a piece of prime read, s: a step
    assert "rr" not in order and order.count("r") == len(reads), "the stream stalled"
    alone = model.generate(prime=prime, length=1, num_samples=64, seed=2)
    assert texts["long"] == alone


@pytest.mark.slow
def test_a_model_of_documents_serves_whole_documents(tmp_path, monkeypatch):
    # names, one a line: the server writes whole ones, as `charrnn sample --documents` does
    monkeypatch.chdir(tmp_path)  # the corpus cache (corpora/) goes there
    folder = tmp_path / "names"
    folder.mkdir()
    (folder / "names.txt").write_text("\n".join("Moreau Morozov Dubois Popov Laurent Volkov".split() * 40) + "\n")
    result = charrnn.train(
        folder, doc_sep="\n", out=tmp_path / "run", hidden=16, layers=1, batch_size=4, seq_len=16,
        max_steps=30, eval_every=0, device="cpu", precision="fp32",
    )  # fmt: skip
    model = charrnn.load(result.run_dir)
    with running(result.run_dir, "--max-length", 100, cwd=tmp_path) as (url, _, _):
        body = {"prime": "Mo", "documents": 3, "max_length": 12, "seed": 2}
        r = httpx.post(f"{url}/v1/generate", json=body)
        assert r.status_code == 200 and r.json()["stopped"] == "documents"
        assert r.json()["text"] == model.generate("Mo", documents=3, max_length=12, seed=2)
        assert r.json()["text"].count("\n") == 2 and all(d.startswith("Mo") for d in r.json()["text"].split("\n"))
        too_many = httpx.post(f"{url}/v1/generate", json={"documents": 20, "max_length": 10})
        assert too_many.status_code == 400 and "--max-length 100" in too_many.json()["error"]
        alone = httpx.post(f"{url}/v1/generate", json={"min_length": 3, "length": 50})
        assert alone.status_code == 400 and "go with documents" in alone.json()["error"]
