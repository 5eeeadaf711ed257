"""`charrnn serve` for real clients: the official `openai` package against a real server on
loopback, several models in one server, API keys, CORS, Origin and Host, slow clients, and
Prometheus metrics, all over real HTTP."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import subprocess_env
from tests.test_serve import running

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def keyed(tiny_run, tmp_path_factory):
    """A server of the tiny run (as `tiny`) and a copy of it (as `twin`), with a key and metrics."""
    root = tmp_path_factory.mktemp("keyed")
    shutil.copytree(tiny_run, root / "twin")
    flags = ["--api-key", KEY, "--metrics", "--timeout", 1, "--max-streams", 8, "--max-queue", 2]
    flags += ["--max-length", 1_000_000]
    with running(f"tiny={tiny_run}", *flags, f"twin={root / 'twin'}", cwd=root) as (url, proc, log):
        yield url, log


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def sample(run, *args) -> str:
    r = subprocess.run([sys.executable, "-m", "charrnn", "sample", str(run), *map(str, args)],
                       env=subprocess_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout[:-1]  # its final newline


@pytest.mark.slow
def test_the_openai_client_completes(keyed, tiny_run):
    url, _ = keyed
    c = client(url)
    r = c.completions.create(model="tiny", prompt="The ", max_tokens=40, temperature=0.8, seed=7)
    # seeded: what `charrnn sample` writes after the prime, with the same options
    assert r.choices[0].text == sample(tiny_run, "--prime", "The ", "--length", 40, "--temp", 0.8, "--seed", 7)[4:]
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 40 and r.usage.prompt_tokens == 4
    streamed = c.completions.create(model="tiny", prompt="The ", max_tokens=40, temperature=0.8, seed=7, stream=True)
    assert "".join(chunk.choices[0].text for chunk in streamed) == r.choices[0].text
    three = c.completions.create(model="tiny", prompt="The", max_tokens=30, n=3, seed=1)
    assert [ch.index for ch in three.choices] == [0, 1, 2] and len({ch.text for ch in three.choices}) == 3
    stops = c.completions.create(model="tiny", prompt="The", max_tokens=200, seed=2, stop=[" ", "e"])
    assert stops.choices[0].finish_reason == "stop" and not {" ", "e"} & set(stops.choices[0].text)
    lp = c.completions.create(model="tiny", prompt="The", max_tokens=12, seed=3, logprobs=3).choices[0]
    assert "".join(lp.logprobs.tokens) == lp.text and len(lp.logprobs.token_logprobs) == len(lp.text)
    assert all(len(top) == 3 and max(top.values()) <= 0 for top in lp.logprobs.top_logprobs)
    assert lp.logprobs.text_offset == list(range(len(lp.text)))
    echo = c.completions.create(model="tiny", prompt="The", max_tokens=10, seed=3, echo=True).choices[0]
    assert echo.text == "The" + lp.text[:10]
    two = c.completions.create(model="tiny", prompt=["The", "Caf"], max_tokens=5, seed=4)
    assert [ch.index for ch in two.choices] == [0, 1] and two.usage.completion_tokens == 10


def test_the_openai_client_lists_models_and_chats(keyed):
    url, _ = keyed
    c = client(url)
    assert [m.id for m in c.models.list().data] == ["tiny", "twin"]
    messages = [{"role": "system", "content": "The"}, {"role": "user", "content": "The quick brown fox"}]
    whole = c.chat.completions.create(model="twin", messages=messages, max_tokens=40, seed=5)
    assert whole.object == "chat.completion" and whole.choices[0].message.role == "assistant"
    assert whole.choices[0].finish_reason in ("stop", "length") and whole.model == "twin"
    chunks = list(c.chat.completions.create(model="twin", messages=messages, max_tokens=40, seed=5, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].object == "chat.completion.chunk"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_the_clients_own_exceptions(keyed):
    url, _ = keyed
    with pytest.raises(openai.BadRequestError, match="suffix"):
        client(url).completions.create(model="tiny", prompt="The", suffix="!")
    with pytest.raises(openai.BadRequestError, match="logit_bias"):
        client(url).completions.create(model="tiny", prompt="The", logit_bias={"1": 5})
    with pytest.raises(openai.AuthenticationError):
        client(url, "wrong").completions.create(model="tiny", prompt="The")
    with pytest.raises(openai.NotFoundError, match="tiny, twin"):
        client(url).completions.create(model="nope", prompt="The")
    r = httpx.post(f"{url}/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, json={"prompt": 3})
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_several_models_keys_and_the_page(keyed):
    url, _ = keyed
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {"prime": "The", "length": 20, "seed": 9}
    first = httpx.post(f"{url}/v1/generate", json=body, headers=auth).json()["text"]
    assert httpx.post(f"{url}/v1/generate", json={**body, "model": "tiny"}, headers=auth).json()["text"] == first
    assert httpx.post(f"{url}/v1/generate", json={**body, "model": "twin"}, headers=auth).json()["text"] == first
    unknown = httpx.post(f"{url}/v1/generate", json={**body, "model": "nope"}, headers=auth)
    assert unknown.status_code == 404 and "tiny, twin" in unknown.json()["error"]
    assert httpx.post(f"{url}/v1/generate", json=body).status_code == 401  # no key
    assert httpx.get(f"{url}/v1/info").status_code == 401
    assert httpx.get(f"{url}/v1/info?model=twin", headers=auth).json()["path"].endswith("twin/best.pt")
    assert httpx.get(f"{url}/healthz").status_code == 200  # health stays open
    page = httpx.get(f"{url}/").text
    assert '<option value="tiny">' in page and '<option value="twin">' in page and 'id="key"' in page


def test_pages_elsewhere_and_other_hosts_are_refused(keyed, tiny_run, tmp_path):
    url, _ = keyed
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {"prime": "The", "length": 5}
    # a cross-origin page the user visits cannot drive the server (a text/plain POST needs no preflight)
    evil = httpx.post(f"{url}/v1/generate", content=b'{"length": 5}',
                      headers={**auth, "Origin": "https://evil.example", "Content-Type": "text/plain"})  # fmt: skip
    assert evil.status_code == 403 and "evil.example" in evil.json()["error"]
    own = httpx.post(f"{url}/v1/generate", json=body, headers={**auth, "Origin": url})  # the server's own page
    assert own.status_code == 200
    # DNS rebinding: a name that points at loopback, but is not a loopback name
    rebound = httpx.get(f"{url}/v1/info", headers={**auth, "Host": "attacker.example"})
    assert rebound.status_code == 400 and "path" not in rebound.text
    with running(tiny_run, "--cors-origin", "https://ok.example", cwd=tmp_path) as (cors, _, _):
        pre = httpx.options(
            f"{cors}/v1/generate",
            headers={
                "Origin": "https://ok.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://ok.example"
        ok = httpx.post(f"{cors}/v1/generate", json=body, headers={"Origin": "https://ok.example"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://ok.example"
        assert (
            httpx.post(f"{cors}/v1/generate", json=body, headers={"Origin": "https://evil.example"}).status_code == 403
        )
        assert httpx.post(f"{cors}/v1/generate", json=body).status_code == 200  # curl: no Origin


def test_a_run_named_like_html_stays_text_on_the_page(tiny_run, tmp_path):
    evil = tmp_path / "<img src=x onerror=alert(1)>"
    shutil.copytree(tiny_run, evil)
    with running(evil, cwd=tmp_path) as (url, _, _):
        page = httpx.get(f"{url}/").text
        models = httpx.get(f"{url}/v1/models").json()
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert [m["id"] for m in models["data"]] == [evil.name]  # the name itself is kept, as data


def _raw(url: str, data: bytes, wait: float = 0.0) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(data)
    time.sleep(wait)
    return s


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


@pytest.mark.slow
def test_slow_and_greedy_clients_get_short_answers(keyed):
    url, log = keyed  # --timeout 1, --max-streams 8, --max-queue 2
    slowloris = _raw(url, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")  # headers never finished
    assert _read_all(slowloris) == b""  # closed by the server after --timeout
    slow_body = _raw(url, b"POST /v1/score HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + KEY.encode()
                     + b"\r\nContent-Length: 100\r\n\r\n" + b'{"text": "Th')  # fmt: skip
    answer = _read_all(slow_body)
    assert answer.startswith(b"HTTP/1.1 408") and b"--timeout" in answer
    # a client that goes away mid-body: no traceback in the log, and the server goes on
    gone = _raw(url, b"POST /v1/score HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + KEY.encode()
                + b"\r\nContent-Length: 100\r\n\r\n" + b'{"text": "The"}', wait=0.1)  # fmt: skip
    gone.close()
    long_path = _raw(url, b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    answer = _read_all(long_path)
    assert answer.startswith(b"HTTP/1.1 404") and len(answer) < 2000  # the path is not echoed back whole
    auth = {"Authorization": f"Bearer {KEY}"}
    queued: list[httpx.Response] = []

    def one_more():
        queued.append(httpx.post(f"{url}/v1/generate", json={"length": 5}, headers=auth, timeout=60))

    body = {"length": 1_000_000, "num_samples": 8, "stream": True}  # longer than the test
    with httpx.stream("POST", f"{url}/v1/generate", json=body, headers=auth, timeout=60) as r:  # every row taken
        lines = r.iter_lines()  # kept: an iterator dropped closes the stream, and the server ends the run
        next(lines)
        waiting = [threading.Thread(target=one_more) for _ in range(2)]  # --max-queue 2: these two wait
        for t in waiting:
            t.start()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/healthz").json()["waiting"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        refused = httpx.post(f"{url}/v1/generate", json={"length": 5}, headers=auth)  # one more is refused
    for t in waiting:
        t.join(timeout=60)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert [q.status_code for q in queued] == [200, 200]
    time.sleep(0.3)
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "streams": 0, "waiting": 0}
    assert not [line for line in log if "Traceback" in line or "ClientDisconnect" in line]


def test_metrics_are_prometheus_text(keyed):
    url, _ = keyed
    auth = {"Authorization": f"Bearer {KEY}"}
    httpx.post(f"{url}/v1/generate", json={"length": 30, "num_samples": 2}, headers=auth)
    httpx.get(f"{url}/v1/info", headers=auth)
    text = httpx.get(f"{url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {(s.labels["route"], s.labels["status"]): s.value for s in families["charrnn_requests"].samples
                if s.name == "charrnn_requests_total"}  # fmt: skip
    assert requests[("/v1/generate", "200")] >= 1 and requests[("/v1/info", "200")] >= 1
    symbols = {s.labels["model"]: s.value for s in families["charrnn_symbols"].samples if s.name.endswith("_total")}
    assert symbols["tiny"] >= 60
    for name in ("charrnn_step_seconds", "charrnn_batch_rows", "charrnn_first_symbol_seconds"):
        counts = [s.value for s in families[name].samples if s.name.endswith("_count") and s.labels["model"] == "tiny"]
        assert counts and counts[0] >= 1, name
    assert {s.labels["model"] for s in families["charrnn_streams"].samples} == {"tiny", "twin"}


@pytest.mark.slow
def test_sigterm_ends_every_request_in_flight_cleanly(tiny_run, tmp_path):
    with running(tiny_run, "--max-length", 1_000_000, cwd=tmp_path) as (url, proc, log):
        answers: list = []  # each asks for more than it can write before the signal

        def whole():
            answers.append(httpx.post(f"{url}/v1/generate", json={"length": 1_000_000}, timeout=60))

        def streamed():
            body = {"length": 1_000_000, "stream": True}
            with httpx.stream("POST", f"{url}/v1/generate", json=body, timeout=60) as r:
                answers.append([line for line in r.iter_lines() if line])

        threads = [threading.Thread(target=f) for f in [whole] * 5 + [streamed] * 5]
        for t in threads:
            t.start()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=30)
        assert proc.wait(timeout=30) == 0
    wholes = [a for a in answers if isinstance(a, httpx.Response)]
    streams = [a for a in answers if isinstance(a, list)]
    assert len(wholes) == 5 and all(a.status_code == 200 and a.json()["stopped"] == "cancelled" for a in wholes)
    assert len(streams) == 5 and all(s[-1] == '{"done": true, "stopped": "cancelled"}' for s in streams)
    assert not [line for line in log if "Traceback" in line or "CancelledError" in line]
