"""`charrnn export`: each format checked against charrnn's own output. ONNX's logits against
torch's step by step, and its greedy text against `charrnn sample --temp 0`; a safetensors
file sampled, served and described as the run it came from, loaded with no pickle, and refused
when damaged; the HTML page run in headless Chromium from file:// with every request caught."""

from __future__ import annotations

import asyncio
import html
import json
import pickle
import re
import socketserver
import subprocess
import threading
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
import torch

import charrnn
from charrnn import api
from charrnn.classify.checkpoint import ClassifierCheckpoint
from charrnn.classify.checkpoint import write as write_classifier
from charrnn.classify.config import ClassifierConfig
from charrnn.classify.model import CharClassifier, batch, encode, hashed, pad
from charrnn.classify.predict import load_classifier
from charrnn.config import ModelConfig, TrainConfig
from charrnn.corpus.preprocess import preprocess
from charrnn.corpus.vocab import Vocab
from charrnn.errors import BadValueError, CheckpointError
from charrnn.generation.sample import sample_text
from charrnn.model.rnn import CharRNN
from charrnn.training import checkpoint
from charrnn.training.loop import train
from tests.conftest import MIXED_TEXT, one_line_error, tiny_model, tiny_train
from tests.test_visualize import CHROMIUM, needs_chromium

try:
    import onnxruntime as ort
except ImportError:  # the test extra brings it
    ort = None
needs_ort = pytest.mark.skipif(ort is None, reason="onnxruntime is not installed (pip install -e '.[test]')")
PRIME = "The "
# Chromium's own background requests (its update and time checks), made from any page, blank
# or not: the recording proxy answers them too, so nothing leaves the machine
BROWSER_OWN = (".google.com", ".googleapis.com", ".gstatic.com", ".gvt1.com")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 2x16 LSTM trained 300 steps on the mixed corpus: enough that greedy text is words,
    not one repeated character (2-3 s)."""
    root = tmp_path_factory.mktemp("export")
    (root / "mixed.txt").write_bytes(MIXED_TEXT.encode("utf-8"))
    corpus = preprocess(root / "mixed.txt", root / "corpus")
    train(corpus, tiny_model(len(corpus.vocab)), tiny_train(max_steps=300), run_dir=root / "run")
    return root / "run"


def random_model(path: Path, vocab: Vocab, **kw) -> Path:
    """A checkpoint of an untrained 2x16 model (weights scaled up, so its logits are far from
    uniform); enough to compare one implementation of the arithmetic with another."""
    torch.manual_seed(0)
    net = CharRNN(ModelConfig(vocab_size=len(vocab), hidden=16, layers=2, **kw))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3)
    if net.config.softmax == "adaptive":
        net.set_order(torch.rand(len(vocab)))
    checkpoint.write(checkpoint.Checkpoint(net.config, TrainConfig(), vocab, net.state_dict()), path)
    return path


SMALL = Vocab.from_text("abcdefgh \n")
CJK = Vocab([chr(0x4E00 + i) for i in range(600)])  # over 512 symbols: an adaptive softmax may serve it


class OnnxModel:
    """An exported step graph in onnxruntime, fed its own state back: what any runtime does."""

    def __init__(self, path: Path, rows: int, label: int = 0):
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.meta = self.session.get_modelmeta().custom_metadata_map
        cfg = json.loads(self.meta["model_config"])
        names = {i.name for i in self.session.get_inputs()}
        self.feeds = {n: np.zeros((cfg["layers"], rows, cfg["hidden"]), np.float32) for n in ("h", "c") if n in names}
        if "label" in names:
            self.feeds["label"] = np.full(rows, label, dtype=np.int64)

    def step(self, ids) -> np.ndarray:
        logits, *state = self.session.run(None, {**self.feeds, "ids": np.asarray(ids, dtype=np.int64)})
        self.feeds.update(zip([n for n in ("h", "c") if n in self.feeds], state, strict=True))
        return logits


# --------------------------------------------------------------------------- ONNX


@pytest.mark.slow
@needs_ort
@pytest.mark.parametrize("kind", ["lstm", "gru", "labelled"])
def test_onnx_logits_match_torch_over_1000_steps(kind, tmp_path):
    extra = {"labels": ("x", "y"), "label_counts": (3, 4)} if kind == "labelled" else {"model": kind}
    path = random_model(tmp_path / "m.pt", SMALL, **extra)
    out = api.export(path, "onnx")
    assert out == tmp_path / "m.onnx"
    model, _, _ = checkpoint.load_model(path)
    rows = 3
    labels = torch.tensor([1, 0, 1]) if kind == "labelled" else None
    onnx = OnnxModel(out, rows)
    if labels is not None:
        onnx.feeds["label"] = labels.numpy()
    g = torch.Generator().manual_seed(1)
    state, worst = None, 0.0
    with torch.no_grad():
        for _ in range(1000):
            ids = torch.randint(len(SMALL), (rows,), generator=g)
            logits, state = model(ids[:, None], state, None if labels is None else labels[:, None])
            worst = max(worst, float(np.abs(onnx.step(ids.numpy()) - logits[:, -1].numpy()).max()))
    assert worst < 1e-4


@needs_ort
def test_onnx_adaptive_softmax_and_tied_embeddings_match_torch(tmp_path):
    for name, vocab, kw in [("adaptive", CJK, {"softmax": "adaptive"}), ("tied", SMALL, {"tie_embeddings": True})]:
        path = random_model(tmp_path / f"{name}.pt", vocab, **kw)
        model, _, _ = checkpoint.load_model(path)
        onnx = OnnxModel(api.export(path, "onnx"), 2)
        ids, state = torch.tensor([[3, 1], [2, 5], [7, 7]]), None
        with torch.no_grad():
            for step in ids:
                logits, state = model(step[:, None], state)
                assert np.abs(onnx.step(step.numpy()) - logits[:, -1].numpy()).max() < 1e-4, name


@needs_ort
def test_onnx_greedy_text_equals_charrnn_sample(cli, trained):
    r = cli("sample", trained, "--temp", "0", "--prime", PRIME, "--length", 300, "--quiet")
    assert r.exit_code == 0, r.stderr
    out = api.export(trained, "onnx", trained.parent / "model.onnx")
    onnx = OnnxModel(out, rows=2)  # two rows, one batch: the same text twice
    vocab = Vocab(json.loads(onnx.meta["vocab"]))
    for i in vocab.encode(PRIME):
        logits = onnx.step([i, i])
    texts = [PRIME, PRIME]
    for _ in range(300):
        ids = logits.argmax(axis=-1)
        texts = [t + vocab.chars[j] for t, j in zip(texts, ids, strict=True)]
        logits = onnx.step(ids)
    assert texts[0] == texts[1] == r.stdout_bytes.decode("utf-8").removesuffix("\n")
    assert len(set(texts[0][len(PRIME) :])) > 5  # words, not one character over and over
    io = json.loads(onnx.meta["io"])
    assert io["graph"] == "one step" and set(io["inputs"]) == {"ids", "h", "c"}


@needs_ort
@pytest.mark.parametrize("kind,both,ngrams", [("lstm", True, 0), ("gru", False, 3)])
def test_onnx_classifier_probabilities_match(kind, both, ngrams, tmp_path):
    vocab = Vocab.from_text("abcdefghijxyz")
    torch.manual_seed(0)
    cfg = ClassifierConfig(vocab_size=len(vocab), labels=3, model=kind, hidden=16, layers=2, bidirectional=both,
                           ngrams=ngrams, buckets=97 if ngrams else 0)  # fmt: skip
    net = CharClassifier(cfg).eval()
    if ngrams:
        torch.nn.init.normal_(net.grams.weight[1:])  # trained rows, not the zeros it starts from
    write_classifier(ClassifierCheckpoint(cfg, ["a", "b", "c"], vocab, net.state_dict()), tmp_path / "c.pt")
    out = api.export(tmp_path / "c.pt", "onnx")
    texts = ["abc", "", "xyzzyjihgfedcba", "j", "ax" * 20, "é, ü"]
    ids, lengths = batch(encode(vocab, texts, "skip", "text {}".format), "cpu")
    feed = {"ids": ids.numpy(), "lengths": lengths.numpy()}
    grams = None
    if ngrams:
        grams = pad(hashed(texts, ngrams, 97), "cpu")
        feed["grams"] = grams.numpy()
    with torch.no_grad():
        want = torch.softmax(net(ids, lengths, grams), dim=-1).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(["probs"], feed)[0]
    assert np.abs(got - want).max() < 1e-5
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["kind"] == "classifier" and json.loads(meta["labels"]) == ["a", "b", "c"]


def test_without_the_export_extra_onnx_is_a_one_line_error_naming_it(cli, tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # as if it were not installed
    r = cli("export", tiny_run, "--format", "onnx", "-o", tmp_path / "m.onnx")
    one_line_error(r, 1, "charrnn[export]")
    assert not (tmp_path / "m.onnx").exists()


# --------------------------------------------------------------------------- safetensors


def test_safetensors_samples_byte_identical_text_and_info_and_serve_take_it(cli, trained, tmp_path):
    r = cli("export", trained, "--format", "safetensors", "-o", tmp_path / "shared.safetensors")
    assert r.exit_code == 0, r.stderr
    file = tmp_path / "shared.safetensors"
    args = ["--prime", PRIME, "--length", 300, "--temp", 0.8, "--seed", 7, "--quiet"]
    a, b = cli("sample", trained, *args), cli("sample", file, *args)
    assert a.exit_code == b.exit_code == 0 and a.stdout_bytes == b.stdout_bytes
    info = cli("info", file)
    assert info.exit_code == 0 and "lstm 2 x 16" in info.stdout
    from charrnn.serve.app import create_app

    model = charrnn.load(file)
    app = create_app(model)

    async def generate() -> dict:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://charrnn") as client:
                return (await client.post("/v1/generate", json={"prime": PRIME, "length": 60, "seed": 5})).json()

    assert asyncio.run(generate())["text"] == charrnn.load(trained).generate(PRIME, length=60, seed=5)


def test_safetensors_loads_without_pickle_and_the_library_reads_it(trained, tmp_path, monkeypatch):
    out = api.export(trained, "safetensors", tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        assert set(f.keys()) == set(torch.load(trained / "best.pt", weights_only=True)["model"])
        assert json.loads(f.metadata()["model_config"])["hidden"] == 16

    def refused(*a, **k):
        raise AssertionError("pickle was used")

    for target, name in [(pickle, "Unpickler"), (pickle, "loads"), (pickle, "load"), (torch, "load")]:
        monkeypatch.setattr(target, name, refused)
    model, vocab, ckpt = checkpoint.load_model(out)
    assert ckpt.vocab == vocab and ckpt.model_config.hidden == 16 and ckpt.optimizer is None


def test_a_classifier_exports_to_safetensors_and_predicts_the_same(tmp_path):
    vocab = Vocab.from_text("abcxyz")
    torch.manual_seed(0)
    cfg = ClassifierConfig(vocab_size=len(vocab), labels=2, hidden=16, ngrams=3, buckets=61)
    net = CharClassifier(cfg)
    torch.nn.init.normal_(net.grams.weight[1:])
    write_classifier(ClassifierCheckpoint(cfg, ["p", "q"], vocab, net.state_dict()), tmp_path / "c.pt")
    out = api.export(tmp_path / "c.pt", "safetensors")
    texts = ["abc", "xyzzy", ""]
    assert torch.equal(
        load_classifier(out).probabilities(texts), load_classifier(tmp_path / "c.pt").probabilities(texts)
    )
    assert api.info(out).rows[0] == ("kind", "classifier (charrnn classify)")
    assert ("model", "lstm 1 x 16 + character 1-3-grams in 61 buckets") in api.info(out).rows


def test_a_damaged_safetensors_file_is_refused_in_one_line(cli, trained, tmp_path):
    data = api.export(trained, "safetensors", tmp_path / "m.safetensors").read_bytes()
    header = int.from_bytes(data[:8], "little")
    damaged = {
        "cut in the tensors": data[: len(data) - 100],
        "cut in the header": data[: 8 + header // 2],
        "eight bytes": data[:8],
        "a byte more": data + b"\0",
        "header length past the end": (len(data)).to_bytes(8, "little") + data[8:],
        "header not JSON": data[:8] + b"{" + b"\xff" * (header - 1) + data[8 + header :],
    }
    for what, content in damaged.items():
        path = tmp_path / "bad.safetensors"
        path.write_bytes(content)
        with pytest.raises(CheckpointError):
            checkpoint.load_model(path)
        r = cli("sample", path, "--length", 5)
        one_line_error(r, 4, str(path))
        assert "safetensors" in r.stderr or "corrupt" in r.stderr, what


# --------------------------------------------------------------------------- refusals


def test_bad_formats_paths_and_models_are_one_line_errors(cli, tiny_run, tmp_path):
    one_line_error(cli("export", tiny_run, "--format", "tflite"), 2, "tflite")
    one_line_error(cli("export", tiny_run, "-f", "html", "--dtype", "int4"), 2, "int4")
    (tmp_path / "a-file").write_text("x")
    one_line_error(cli("export", tiny_run, "-f", "onnx", "-o", tmp_path / "a-file" / "m.onnx"), 2, "cannot write")
    one_line_error(cli("export", tiny_run, "-f", "html", "-o", tmp_path), 2, "directory")
    one_line_error(cli("export", tiny_run / "best.pt", "-f", "html", "-o", tiny_run / "best.pt"), 2, "checkpoint")
    one_line_error(cli("export", tmp_path / "nowhere", "-f", "onnx"), 4, "no such")
    vocab = Vocab.from_text("abc")
    cfg = ClassifierConfig(vocab_size=len(vocab), labels=2, hidden=8)
    write_classifier(ClassifierCheckpoint(cfg, ["p", "q"], vocab, CharClassifier(cfg).state_dict()), tmp_path / "c.pt")
    one_line_error(cli("export", tmp_path / "c.pt", "-f", "html"), 2, "classifier")
    assert not list(tmp_path.glob("*.html"))


@needs_ort
def test_a_word_model_exports_to_onnx_and_safetensors_but_not_html(tmp_path):
    from charrnn.corpus.tokens import Tokenizer

    path = random_model(tmp_path / "w.pt", Vocab(["hello", " ", "world", "\n"], Tokenizer("word")))
    for fmt in ("onnx", "safetensors"):
        api.export(path, fmt)
    assert charrnn.load(tmp_path / "w.safetensors").vocab.tokenizer.kind == "word"
    with pytest.raises(BadValueError, match="word-token model"):
        api.export(path, "html")


# --------------------------------------------------------------------------- html


def test_the_page_holds_everything_and_smaller_dtypes_make_smaller_pages(trained, tmp_path):
    sizes = {}
    for dtype in ("float32", "float16", "int8"):
        page = api.export(trained, "html", tmp_path / f"{dtype}.html", dtype=dtype)
        text = page.read_text(encoding="utf-8")
        sizes[dtype] = page.stat().st_size
        assert "Content-Security-Policy" in text and "default-src 'none'" in text
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing from the network
        assert 'id="output"' in text
    assert sizes["float32"] > sizes["float16"] > sizes["int8"]


class _Recorder(socketserver.ThreadingTCPServer):
    """A loopback HTTP proxy that answers every request 502 and notes its first line: the
    browser is pointed at it, so that no request leaves the machine, and each one is seen."""

    daemon_threads = True

    def __init__(self):
        self.seen: list[str] = []
        recorder = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                line = self.request.recv(4096).split(b"\r\n")[0].decode("latin-1")
                recorder.seen.append(line)
                self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture(scope="module")
def recorder():
    server = _Recorder()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def open_page(url: str, tmp_path: Path, recorder: _Recorder, *args: str) -> tuple[str, set[str]]:
    """The DOM of `url` once its scripts have run (headless Chromium, --dump-dom), and the
    hosts of the requests it made, through the recording proxy."""
    recorder.seen.clear()
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        f"--proxy-server=http://127.0.0.1:{recorder.server_address[1]}", "--proxy-bypass-list=<-loopback>",
        *args, "--dump-dom", url,
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, timeout=120)
    hosts = {re.split(r"[ /:]+", line.split(" ", 1)[1].removeprefix("http://"))[0] for line in recorder.seen}
    return r.stdout.decode("utf-8"), hosts  # bytes decoded as they are: "\r" stays "\r"


def written(dom: str) -> tuple[str, float]:
    """The page's text (#output) and its own speed (#speed's data-chars-per-s)."""
    pre = re.search(r'<pre id="output"[^>]*>(.*?)</pre>', dom, re.S)
    assert pre, dom[-2000:]
    cps = re.search(r'id="speed" data-chars-per-s="([\d.]*)"', dom)
    return html.unescape(re.sub(r"<[^>]+>", "", pre.group(1))), float(cps.group(1) or "nan")


@pytest.mark.slow
@needs_chromium
def test_the_page_writes_charrnns_greedy_text_offline_and_shows_its_speed(trained, tmp_path, recorder):
    want = sample_text(*(lambda m: (m.net, m.vocab))(charrnn.load(trained)), prime=PRIME, temp=0, length=500)
    blank = tmp_path / "blank.html"
    blank.write_text("<p>nothing</p>")
    _, browser_own = open_page(blank.as_uri(), tmp_path, recorder)  # what the browser asks for by itself
    probe = tmp_path / "probe.html"
    probe.write_text('<img src="http://example.com/x.png"><script>fetch("http://example.org/y")</script>')
    _, probed = open_page(probe.as_uri(), tmp_path, recorder)
    assert {"example.com", "example.org"} <= probed  # the recorder sees what a page asks for
    link = f"#prime={quote(PRIME)}&temp=0&length=500&seed=7&go"
    for dtype, agree in [("float32", 500), ("float16", 200)]:
        page = api.export(trained, "html", tmp_path / f"{dtype}.html", dtype=dtype)
        dom, hosts = open_page(page.as_uri() + link, tmp_path, recorder)
        text, cps = written(dom)
        assert text[: len(PRIME) + agree] == want[: len(PRIME) + agree], dtype
        assert len(set(text)) > 5 and cps > 0
        asked = {h for h in hosts - browser_own if not h.endswith(BROWSER_OWN)}
        assert not asked, f"the page asked for {asked}"


@pytest.mark.slow
@needs_chromium
def test_the_page_samples_by_its_seed_and_reads_labels_from_the_link(tmp_path, recorder):
    path = random_model(tmp_path / "l.pt", SMALL, labels=("x", "y"), label_counts=(3, 4))
    page = api.export(path, "html", dtype="float32")
    runs = {}
    for name, frag in {
        "a": "#temp=0.9&top-k=5&top-p=0.9&length=200&seed=11&go",
        "b": "#temp=0.9&top-k=5&top-p=0.9&length=200&seed=11&go",
        "c": "#temp=0.9&top-k=5&top-p=0.9&length=200&seed=12&go",
        "greedy-y": "#prime=ab&temp=0&length=200&label=y&go",
    }.items():
        runs[name] = written(open_page(page.as_uri() + frag, tmp_path, recorder)[0])[0]
    assert runs["a"] == runs["b"] != runs["c"]
    model = charrnn.load(path)
    assert runs["greedy-y"] == model.generate("ab", length=200, temp=0, label="y")
