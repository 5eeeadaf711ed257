"""The activation visualiser and the training report: the numbers behind them, the pages as
files (self-contained, escaped), the commands, and the pages in a real headless browser."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from charrnn.corpus.vocab import Vocab
from charrnn.model.rnn import CharRNN
from charrnn.pages.report import load_run, loss_sparkline, sparkline, write_report
from charrnn.pages.visualize import (
    FEATURES,
    build_page,
    correlations,
    interesting_cells,
    text_features,
    trace,
    unit_matrix,
)
from charrnn.training.runlog import read_samples
from tests.conftest import MIXED_TEXT, TINY_FLAGS, one_line_error, tiny_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
HOSTILE = 'He said "stop" (twice)</script><script>alert(1)</script>\n床前🐍 & <b>'


def _model(vocab: Vocab, kind: str = "lstm") -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(tiny_model(len(vocab), model=kind)).eval()


def _page_data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="viz-data">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


# --------------------------------------------------------------------------- numbers


def test_text_features_follow_the_text():
    f = text_features('ab "cd"\n(x) Yz')
    assert list(f["inside quotes"]) == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert list(f["inside brackets"]) == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert list(f["position in line"]) == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5]
    assert list(f["start of word"]) == [1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0]
    assert list(f["after newline"]) == [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert list(f["capital letter"]) == [0] * 12 + [1, 0]
    assert set(f) == set(FEATURES)


def test_correlations_find_a_unit_that_copies_a_feature():
    rng = np.random.default_rng(0)
    feat = rng.integers(0, 2, size=200).astype(float)
    acts = np.stack([feat * 0.8 - 0.4, -feat, rng.normal(size=200), np.full(200, 0.3)], axis=1)  # (N, 4)
    r = correlations(np.stack([feat, np.zeros(200)]), acts)
    assert r.shape == (2, 4)
    assert r[0, 0] == pytest.approx(1.0) and r[0, 1] == pytest.approx(-1.0)
    assert abs(r[0, 2]) < 0.3
    assert r[0, 3] == 0 and not r[1].any()  # constant unit, constant feature: 0, not NaN
    cells = interesting_cells(r, [(0, "h", u) for u in range(4)], names=("f", "g"), top=2)
    assert {(c["unit"], c["feature"]) for c in cells} == {(0, "f"), (1, "f")}


def test_trace_matches_the_whole_sequence_forward(mixed_corpus):
    vocab = mixed_corpus.vocab
    model = _model(vocab)
    text = MIXED_TEXT[:120]
    t = trace(model, vocab, text)
    ids = torch.tensor(vocab.encode(text))[None]
    with torch.no_grad():
        logits, (h, c) = model(ids)
    L, S, N, H = t.states.shape
    assert (L, S, N, H) == (2, 2, 120, 16) and t.kinds == ("h", "c")
    assert np.allclose(t.states[:, 0, -1], h[:, 0].numpy(), atol=1e-5)  # every layer, not just the last
    assert np.allclose(t.states[:, 1, -1], c[:, 0].numpy(), atol=1e-5)
    p = torch.softmax(logits[0], -1)[torch.arange(N - 1), ids[0, 1:]].numpy()
    assert np.isnan(t.prob[0]) and np.allclose(t.prob[1:], p, atol=1e-5)
    assert t.top_ids.shape == (N, 5) and np.all(np.diff(t.top_p, axis=1) <= 0)
    assert t.top_p[0, 0] == pytest.approx(torch.softmax(logits[0, 0], -1).max().item(), abs=1e-5)
    acts, labels = unit_matrix(t)
    assert acts.shape == (N, 2 * 2 * 16) and labels[16] == (0, "c", 0)
    assert np.abs(acts).max() <= 1


def test_trace_of_a_gru_has_hidden_states_only():
    vocab = Vocab.from_text(MIXED_TEXT)
    t = trace(_model(vocab, "gru"), vocab, MIXED_TEXT[:50])
    assert t.kinds == ("h",) and t.states.shape == (2, 1, 50, 16)


# --------------------------------------------------------------------------- pages as files


def test_visualize_page_is_self_contained_and_escaped():
    vocab = Vocab.from_text(MIXED_TEXT + HOSTILE)
    text = MIXED_TEXT[:300] + HOSTILE
    page = build_page(_model(vocab), vocab, text, title="<run> & co")
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", page)
    assert page.count("</script>") == 2  # the data's and the code's: the text cannot close a tag
    assert "<run>" not in page and "&lt;run&gt; &amp; co" in page
    d = _page_data(page)
    assert "".join(d["text"]) == text  # CJK, emoji, CRLF and markup survive the round trip (a symbol each)
    n = len(text)
    assert len(d["prob"]) == n and d["prob"][0] == -1 and len(d["top_ids"]) == 5 * n
    acts = np.frombuffer(base64.b64decode(d["acts"]), dtype=np.int8)
    assert acts.size == d["stored"] * n == 64 * n  # 2 layers x (h, c) x 16 units
    assert all(0 <= c["row"] < d["stored"] for c in d["cells"]) and d["cells"]


def test_visualize_page_keeps_interesting_units_within_its_budget():
    vocab = Vocab.from_text(MIXED_TEXT)
    text = MIXED_TEXT[:200]
    d = _page_data(build_page(_model(vocab), vocab, text, max_stored=20 * 200))
    assert d["stored"] == 20 and d["total_units"] == 64
    assert len(base64.b64decode(d["acts"])) == 20 * 200
    for c in d["cells"]:
        assert d["units"][c["row"]] == [c["layer"], c["kind"], c["unit"]]


def test_report_reads_the_run_and_draws_it(run_copy):
    run = load_run(run_copy)
    assert [e["step"] for e in run.evals] == [10, 20, 30]
    assert [s["step"] for s in run.samples] == [10, 20, 30]
    assert run.ckpt.model_config.hidden == 16 and run.ckpt.optimizer is None and "optimizer" not in run.ckpt.payload
    page = write_report(run_copy).read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert page.count('<polyline class="series"') == 2 + 2 + 1 + 1  # loss by step and time, lr, speed
    assert page.count("<li>") == 3 and "step 30" in page and "train.batch_size" in page
    sample = read_samples(run_copy)[1]["text"]
    assert sample.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in page


def test_report_of_a_run_without_samples_or_checkpoint(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train_loss": 4.0, "lr": 0.001, "elapsed_s": 1}\n{"ste')
    page = write_report(tmp_path).read_text()
    assert "--sample-every" in page and "No readable last.pt" in page


def test_sparkline():
    assert sparkline([3, 2, 1]) == "█▅▁"
    assert len(sparkline(list(range(1000)), width=40)) == 40
    assert sparkline([]) == "" and sparkline([float("nan")]) == ""
    assert (
        loss_sparkline([{"step": 1, "train_loss": 4.0}, {"step": 2, "val_loss": 3.5}, {"step": 3, "train_loss": 2.0}])
        == "4.00 █▁ 2.00"
    )


# --------------------------------------------------------------------------- commands


def test_visualize_and_report_commands(cli, run_copy, tmp_path):
    # their --help: tests/test_cli.py's test_every_command_has_help_with_examples
    r = cli("visualize", run_copy, "--max-chars", 100)  # default text: the corpus's val split
    assert r.exit_code == 0, r.stderr
    page = run_copy / "visualize.html"
    assert len(_page_data(page.read_text(encoding="utf-8"))["prob"]) == 100 and r.stdout == ""
    text = tmp_path / "t.txt"
    text.write_text(MIXED_TEXT[:400], encoding="utf-8")
    r = cli("visualize", run_copy / "last.pt", "--text", text, "--out", tmp_path / "v.html")
    assert r.exit_code == 0 and (tmp_path / "v.html").is_file(), r.stderr
    r = cli("visualize", run_copy, "--prime", "Zebra")
    assert r.exit_code == 7 and r.stderr.count("\n") == 1 and "'Z'" in r.stderr
    one_line_error(cli("visualize", run_copy, "--prime", "ab", "--text", text), 2, "give --text or --prime, not both")
    r = cli("report", run_copy, "--out", tmp_path / "r.html")
    assert r.exit_code == 0 and (tmp_path / "r.html").is_file(), r.stderr
    r = cli("report", tmp_path / "nowhere")
    assert r.exit_code == 3 and r.stderr.startswith("charrnn: error:")


def test_train_writes_a_report_and_info_shows_a_sparkline(cli, mixed_file, tmp_path):
    r = cli("train", mixed_file, *TINY_FLAGS, "--max-steps", 30, "--log-every", 5, "--out", "run")
    assert r.exit_code == 0, r.stderr
    assert f"report: {Path('run') / 'report.html'}" in r.stderr
    assert (tmp_path / "run" / "report.html").is_file()
    assert re.search(r"train loss \d\.\d\d [▁▂▃▄▅▆▇█]+ \d\.\d\d", r.stderr)
    r = cli("info", "run")
    assert r.exit_code == 0 and re.search(r"[▁▂▃▄▅▆▇█]{3,}", r.stdout)


# --------------------------------------------------------------------------- in a browser


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def png_pixels(path: Path) -> tuple[int, int, np.ndarray]:
    """(width, height, pixels (H, W, C)) of an 8-bit RGB or RGBA PNG, such as a browser's screenshot."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, head = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    w, h, depth, colour, _, _, interlace = head
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1).astype(np.int32)
        if f == 2:  # up
            line = (line + prev) & 255
        elif f in (1, 3, 4):  # sub, average, paeth: each byte depends on the one to its left
            cur = line.tolist()
            up = prev.tolist()
            for x in range(stride):
                a = cur[x - bpp] if x >= bpp else 0
                b = up[x]
                if f == 1:
                    p = a
                elif f == 3:
                    p = (a + b) >> 1
                else:
                    c = up[x - bpp] if x >= bpp else 0
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else b if pb <= pc else c
                cur[x] = (cur[x] + p) & 255
            line = np.array(cur, dtype=np.int32)
        prev = line
        out[y] = line
    return w, h, out.reshape(h, w, bpp)


def _assert_not_blank(png: Path, width: int, height: int) -> None:
    w, h, px = png_pixels(png)
    assert (w, h) == (width, height)
    rgb = px[..., :3].reshape(-1, 3)
    colours, counts = np.unique(rgb, axis=0, return_counts=True)
    assert len(colours) > 50  # text, shading and charts, not a flat page
    assert counts.max() / len(rgb) < 0.9  # no single colour covers the screen
    assert rgb.std() > 20


@pytest.fixture
def pages(tmp_path, run_copy):
    vocab = Vocab.from_text(MIXED_TEXT + HOSTILE)
    viz = tmp_path / "viz.html"
    viz.write_text(build_page(_model(vocab), vocab, MIXED_TEXT[:600] + HOSTILE), encoding="utf-8")
    return viz, write_report(run_copy)


@pytest.mark.slow
@needs_chromium
def test_pages_render_in_a_browser(tmp_path, pages):
    for page in pages:
        shot = tmp_path / f"{page.stem}.png"
        r = _chromium(tmp_path, "--window-size=800,600", f"--screenshot={shot}", page.as_uri())
        assert shot.is_file(), r.stderr[-2000:]
        _assert_not_blank(shot, 800, 600)


@pytest.mark.slow
@needs_chromium
def test_visualize_interactions_in_a_browser(tmp_path, pages):
    viz, report = pages
    r = _chromium(tmp_path, "--dump-dom", viz.as_uri() + "#selftest")
    m = re.search(r'<pre id="selftest">(.*?)</pre>', r.stdout, re.S)
    assert m and m.group(1), r.stderr[-2000:]
    got = json.loads(m.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    n = len(MIXED_TEXT[:600] + HOSTILE)
    assert got["spans"] == got["chars"] == n  # one span per code point: emoji and CJK included
    assert got["text_ok"] and got["newlines"] == (MIXED_TEXT[:600] + HOSTILE).count("\n")
    assert got["tip_visible"] and got["tip_rows"] == 5 and "likeliest next" in got["tip_text"]
    assert got["prob_colour_ok"] and got["picked"] and got["act_colour_ok"] and got["colours"] > 5
    assert got["cell_clicked"]
    assert "<script>alert(1)" not in r.stdout and "<b>" not in r.stdout  # the text stayed text
    r = _chromium(tmp_path, "--dump-dom", viz.as_uri() + "#unit=2:c:7&char=4")  # a link to a unit and a character
    assert re.search(r'<div id="tip" style="[^"]*display: block', r.stdout) and "layer 2 c #7: r with" in r.stdout
    r = _chromium(tmp_path, "--dump-dom", report.as_uri())
    assert r.stdout.count("<polyline") == 6 and r.stdout.count("<li>") == 3
