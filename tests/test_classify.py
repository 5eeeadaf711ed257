"""`charrnn classify`: train, predict (in a real shell pipeline), eval and its page, the
checkpoint round trip, the two kinds of checkpoint kept apart, and every bad input."""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from charrnn.classify.config import ClassifierSettings
from charrnn.classify.evaluate import evaluate_classifier
from charrnn.classify.predict import load_classifier
from charrnn.classify.train import train_classifier
from tests.conftest import files_under, fork_charrnn, one_line_error, subprocess_env
from tests.test_reliability import _malicious
from tests.test_visualize import _assert_not_blank, _chromium, needs_chromium

FIXTURES = Path(__file__).parent / "fixtures"
MARKS = {"alpha": "x", "beta": "y", "gamma": "z"}
# it has learned the marks by epoch 2 and keeps that checkpoint: epochs beyond patience would save nothing
FAST = dict(hidden=16, batch_size=16, lr=1e-2, max_epochs=25, patience=3, device="cpu", seed=5)


def marked_words(n: int, seed: int = 0) -> dict[str, list[str]]:
    """Words of a-j with one letter that names their label somewhere inside."""
    r = random.Random(seed)
    out = {}
    for label, mark in MARKS.items():
        words = []
        for _ in range(n):
            w = "".join(r.choice("abcdefghij") for _ in range(r.randint(1, 8)))
            pos = r.randint(0, len(w))
            words.append(w[:pos] + mark + w[pos:])
        out[label] = words
    return out


def write_dir(d: Path, data: dict[str, list[str]]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for label, words in data.items():
        (d / f"{label}.txt").write_text("".join(w + "\n" for w in words), encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def clf_run(tmp_path_factory) -> tuple[Path, Path]:
    """(a classifier trained on marked words, that data's directory), trained once."""
    root = tmp_path_factory.mktemp("classify")
    data = write_dir(root / "data", marked_words(120))
    result = train_classifier(data, ClassifierSettings(**FAST, max_length=64), out=root / "run")
    return result.run_dir, data


def test_a_label_decided_by_one_character_is_learned_exactly(clf_run, tmp_path):
    run, data = clf_run
    clf = load_classifier(run)
    assert clf.ckpt.val_accuracy == 1.0 and clf.labels == sorted(MARKS)
    test = write_dir(tmp_path / "test", marked_words(40, seed=1))  # words it never saw
    ev = evaluate_classifier(run, test)
    assert ev.scores.accuracy >= 0.98 and ev.scores.total == 120
    assert [r["support"] for r in ev.scores.per_label()] == [40, 40, 40]


@pytest.mark.slow
def test_predict_in_a_shell_pipeline(clf_run):
    run, _ = clf_run
    words = ["abzc", "xhh", "ey", "dddx", "jz"]
    script = (
        f"printf '%s\\n' {' '.join(words)} | {sys.executable} -m charrnn classify predict {run} | sort -t$'\\t' -k2"
    )
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert [row[1] for row in rows] == ["alpha", "alpha", "beta", "gamma", "gamma"]  # sorted by label
    assert {row[0]: row[1] for row in rows} == {
        "abzc": "gamma",
        "xhh": "alpha",
        "ey": "beta",
        "dddx": "alpha",
        "jz": "gamma",
    }
    assert all(0.5 < float(row[2]) <= 1 for row in rows)


def test_predict_top_json_and_unknown_characters(cli, clf_run):
    run, _ = clf_run
    r = cli("classify", "predict", run, "abx", "--top", 3)
    text, *ranked = r.stdout.rstrip("\n").split("\t")
    assert r.exit_code == 0 and text == "abx" and ranked[0] == "alpha" and len(ranked) == 6
    assert abs(sum(float(p) for p in ranked[1::2]) - 1) < 1e-3
    r = cli("classify", "predict", run, "--json", "y", "ccz")
    got = [json.loads(line) for line in r.stdout.splitlines()]
    assert [g["labels"][0]["label"] for g in got] == ["beta", "gamma"] and got[1]["text"] == "ccz"
    r = cli("classify", "predict", run, "abqx")  # 'q' was never seen: read as the unknown symbol
    assert r.exit_code == 0 and r.stdout.split("\t")[1] == "alpha"
    assert r.stderr.count("\n") == 1 and "read as the unknown symbol" in r.stderr and "'q' 1" in r.stderr
    one_line_error(cli("classify", "predict", run, "abqx", "--unknown", "error"), 7, "'q'", "--unknown skip")
    r = cli("classify", "predict", run, "abqx", "--unknown", "skip")
    assert r.exit_code == 0 and r.stdout.split("\t")[1] == "alpha" and "left out" in r.stderr
    one_line_error(cli("classify", "predict", run, input=b"ab\xff\n"), 3, "the texts on stdin are not UTF-8")


def test_eval_table_json_and_page(cli, clf_run, tmp_path):
    run, data = clf_run
    page = tmp_path / "eval.html"
    r = cli("classify", "eval", run, data, "--out", page)
    assert r.exit_code == 0 and "accuracy" in r.stdout and "gamma" in r.stdout and "precision" in r.stdout
    html = page.read_text(encoding="utf-8")
    assert "<svg" in html and html.count("<rect") == 9 and "http://" not in html and "https://" not in html
    counts = [int(c) for c in re.findall(r'data-count="(\d+)"', html)]
    assert sum(counts) == 360  # every example, in its cell
    r = cli("classify", "eval", run, data, "--json", "--out", tmp_path / "e2.html")
    got = json.loads(r.stdout)
    assert got["examples"] == 360 and 0.9 < got["accuracy"] <= 1 and set(got) >= {"macro_f1", "per_label"}


@pytest.mark.slow
@needs_chromium
def test_eval_page_renders_in_chromium(cli, clf_run, tmp_path):
    run, data = clf_run
    from charrnn.pages.classify import write_page

    page = write_page(evaluate_classifier(run, data), tmp_path / "page.html")
    r = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert "Confusion matrix" in r.stdout and r.stdout.count("<rect") == 9, r.stderr[-2000:]
    # the page `classify eval --out` writes, in a screenshot that is not blank
    assert cli("classify", "eval", run, data, "--out", tmp_path / "eval.html").exit_code == 0
    shot = tmp_path / "eval.png"
    _chromium(tmp_path, "--window-size=800,600", f"--screenshot={shot}", (tmp_path / "eval.html").as_uri())
    assert shot.is_file()
    _assert_not_blank(shot, 800, 600)


def test_checkpoint_round_trip_and_info(cli, clf_run):
    run, _ = clf_run
    clf = load_classifier(run)
    again = load_classifier(run / "best.pt")
    texts = ["abx", "hy", "z", ""]
    assert torch.equal(clf.probabilities(texts), again.probabilities(texts))
    ckpt = torch.load(run / "best.pt", weights_only=True)
    assert ckpt["kind"] == "classifier" and ckpt["labels"] == ["alpha", "beta", "gamma"]
    r = cli("info", run)
    assert r.exit_code == 0 and "classifier" in r.stdout and "alpha, beta, gamma" in r.stdout
    assert "val accuracy" in r.stdout


def test_the_two_kinds_of_checkpoint_are_never_confused(cli, clf_run, tiny_run):
    run, data = clf_run
    one_line_error(cli("sample", run), 4, "is a classifier")
    one_line_error(cli("eval", run), 4, "is a classifier")
    one_line_error(cli("train", data / "alpha.txt", "--resume", run), 4, "is a classifier")
    one_line_error(cli("classify", "predict", tiny_run, "abc"), 4, "not a classifier")
    one_line_error(cli("classify", "eval", tiny_run, data), 4, "not a classifier")


def test_a_malicious_pickle_posing_as_a_classifier_is_refused(cli, tmp_path, clf_run):
    _, data = clf_run
    marker = tmp_path / "pwned"
    evil = _malicious(tmp_path / "evil.pt", marker, "torch")
    for args in (("classify", "predict", evil, "abc"), ("classify", "eval", evil, data), ("info", evil)):
        one_line_error(cli(*args), 4, "refused")
    assert not marker.exists()


def _tsv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


BAD = {
    "empty directory": (lambda d: (d / "data").mkdir() or d / "data", 3, "no LABEL.txt files"),
    "empty file": (lambda d: _tsv(d / "data.tsv", ""), 3, "holds no rows"),
    "label file with no lines": (
        lambda d: write_dir(d / "data", {"a": ["x"] * 5}) and (d / "data" / "b.txt").write_text("\n\n") and d / "data",
        3,
        "b.txt: holds no examples",
    ),
    "one label": (lambda d: write_dir(d / "data", {"only": ["ab", "cd", "ef"]}), 3, "only one label ('only')"),
    "missing column": (lambda d: _tsv(d / "data.tsv", "text\tkind\nab\tx\ncd\ty\n"), 3, "no column 'label'"),
    "ragged row": (lambda d: _tsv(d / "data.tsv", "text\tlabel\nab\tx\ncd\ty\textra\n"), 3, "row 3 has 3 columns"),
    "empty label": (lambda d: _tsv(d / "data.tsv", "text\tlabel\nab\tx\ncd\t \n"), 3, "row 3 has an empty label"),
    "invalid utf-8": (
        lambda d: (d / "data.tsv").write_bytes(b"text\tlabel\nab\xff\tx\ncd\ty\n") and d / "data.tsv",
        3,
        "invalid UTF-8",
    ),
    "binary": (lambda d: (d / "data.tsv").write_bytes(bytes(range(256)) * 4) and d / "data.tsv", 3, "binary"),
    "bad json line": (
        lambda d: _tsv(d / "data.jsonl", '{"text": "a", "label": "x"}\n{oops\n'),
        3,
        "line 2 is not JSON",
    ),
    "too small to split": (lambda d: _tsv(d / "data.tsv", "text\tlabel\nab\tx\ncd\ty\n"), 3, "too few to split"),
    "unknown kind of file": (lambda d: _tsv(d / "data.xml", "<a/>"), 3, "named by its suffix"),
    "missing": (lambda d: d / "nothing-here", 3, "no such file"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_data_is_one_line_and_nothing_is_written(cli, tmp_path, name):
    make, code, words = BAD[name]
    data = make(tmp_path)
    before = files_under(tmp_path)
    one_line_error(cli("classify", "train", data, "--out", tmp_path / "run", "--device", "cpu"), code, words)
    assert files_under(tmp_path) == before  # no run directory, no half-written checkpoint


def test_encoding_errors_long_texts_and_other_formats(cli, tmp_path):
    words = marked_words(30, seed=3)
    rows = [(w.encode() + b"\xff", label) for label, ws in words.items() for w in ws]
    (tmp_path / "data.tsv").write_bytes(b"text\tlabel\n" + b"".join(t + b"\t" + lb.encode() + b"\n" for t, lb in rows))
    r = cli("classify", "train", tmp_path / "data.tsv", "--out", tmp_path / "r1", "--encoding-errors", "replace",
            "--hidden", 8, "--max-epochs", 1, "--max-length", 4, "--device", "cpu", "-q")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert re.search(r"warning: [\d,]+ texts were cut to --max-length 4", r.stderr)
    lines = [json.dumps({"sentence": w, "lang": label}) for label, ws in words.items() for w in ws]
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = cli("classify", "train", tmp_path / "data.jsonl", "--text-col", "sentence", "--label-col", "lang",
            "--out", tmp_path / "r2", "--hidden", 8, "--max-epochs", 1, "--device", "cpu", "-q")  # fmt: skip
    assert r.exit_code == 0 and (tmp_path / "r2" / "best.pt").is_file(), r.stderr
    csv_rows = [f'"{w}, really",{label}' for label, ws in words.items() for w in ws]
    (tmp_path / "data.csv").write_text("\n".join(csv_rows) + "\n", encoding="utf-8")
    r = cli("classify", "train", tmp_path / "data.csv", "--text-col", 0, "--label-col", 1, "--out", tmp_path / "r3",
            "--hidden", 8, "--max-epochs", 1, "--device", "cpu", "-q")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert load_classifier(tmp_path / "r3").ckpt.data["examples"] == 90
    r = cli("classify", "train", tmp_path / "data.csv", "--text-col", 0, "--label-col", 1, "--out", tmp_path / "r3")
    one_line_error(r, 2, "not empty")


def test_bad_option_values(cli, tmp_path, clf_run):
    run, data = clf_run
    for args, words in (
        (("--lr", 0), "--lr"),
        (("--hidden", 0), "--hidden"),
        (("--val-frac", 1), "--val-frac"),
        (("--model", "transformer"), "--model"),
        (("--device", "cuda"), "CUDA") if not torch.cuda.is_available() else (("--batch-size", 0), "--batch-size"),
    ):
        r = cli("classify", "train", data, "--out", tmp_path / "run", *args)
        assert r.exit_code in (2, 5) and words in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "run").exists()
    one_line_error(cli("classify", "predict", run, "a", "--top", 0), 2, "--top")
    unseen = write_dir(tmp_path / "unseen", {"alpha": ["ax"], "delta": ["dd"]})
    one_line_error(cli("classify", "eval", run, unseen), 3, "not trained on: 'delta'")


def test_tsv_quotes_are_text_and_a_split_keeps_every_label_in_train(cli, tmp_path):
    rows = ['"Quoted" rest\tx', '"oops\tx', "plain\ty", "more\ty"] + [f"w{i}\t{'xy'[i % 2]}" for i in range(20)]
    _tsv(tmp_path / "q.tsv", "text\tlabel\n" + "\n".join(rows) + "\n")
    from charrnn.classify.data import load_examples, stratified_split

    ex = load_examples(tmp_path / "q.tsv")
    assert ex.texts[:2] == ['"Quoted" rest', '"oops'] and len(ex) == 24  # a quote is a character, rows stay rows
    tiny = _tsv(tmp_path / "tiny.tsv", "text\tlabel\na\tx\nb\tx\nc\ty\nd\ty\n")
    train, val = stratified_split(load_examples(tiny), 0.9, seed=1)
    assert len(train) == 2 and len(val) == 2  # each label keeps one example to learn from
    jsonl = _tsv(tmp_path / "b.jsonl", '{"text": "a", "label": true}\n{"text": "b", "label": 1}\n')
    assert load_examples(jsonl).labels == ["true", "1"]


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(cli, tmp_path, monkeypatch, clf_run):
    _, data = clf_run
    import charrnn.classify.train

    monkeypatch.setattr(charrnn.classify.train.F, "cross_entropy", lambda *a, **k: torch.tensor(float("nan")))
    r = cli("classify", "train", data, "--out", tmp_path / "run", "--device", "cpu", "-q")
    assert r.exit_code == 6 and "Traceback" not in r.stderr, r.stderr
    last = r.stderr.splitlines()[-1]
    assert last == "charrnn: error: training diverged in epoch 1 (the loss is not finite); try a lower --lr"
    assert not (tmp_path / "run").exists()
    one_line_error(cli("classify", "train", data, "--lr", 1e38, "--out", tmp_path / "run"), 2, "--lr")


@pytest.mark.slow
def test_sigterm_validates_saves_and_exits_143(tmp_path):
    data = write_dir(tmp_path / "data", marked_words(3000, seed=4))
    args = ["classify", "train", data, "--out", tmp_path / "run", "--device", "cpu", "--max-epochs", 50, "--hidden", 32]
    proc = fork_charrnn(*args, cwd=tmp_path)
    for line in proc.stderr:
        if line.startswith("classifying"):  # its SIGTERM handler is in place: training starts
            break
    time.sleep(0.2)  # part-way through the first epoch (8,100 training examples)
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 143, rest
    assert "stopping" in rest and "(interrupted)" in rest and "Traceback" not in rest
    assert load_classifier(tmp_path / "run").ckpt.epoch >= 1


def test_predict_writes_nothing_until_every_text_is_readable(cli, clf_run):
    run, _ = clf_run
    r = cli("classify", "predict", run, "--unknown", "error", input="abx\nzz\nabq\n")
    one_line_error(r, 7, "line 3 of stdin has 1 character(s)", "'q'", "--unknown skip")
    assert r.stdout == ""
    r = cli("classify", "predict", run, "a\tb\ny\rz", "--unknown", "skip")
    assert r.exit_code == 0 and r.stdout.count("\n") == 1 and r.stdout.startswith("a b y z\t")


def test_sample_never_picks_a_classifier_run_and_eval_survives_an_unwritable_page(cli, clf_run, tmp_path):
    run, data = clf_run
    shutil.copytree(run, tmp_path / "checkpoints" / "names")  # cli runs in tmp_path
    one_line_error(cli("sample"), 4, "no trained model found")
    r = cli("classify", "eval", run, data, "--json", "--out", data / "alpha.txt" / "page.html")
    assert r.exit_code == 0 and json.loads(r.stdout)["examples"] == 360
    assert "warning: could not write the page" in r.stderr


def test_a_test_set_with_characters_never_seen_is_classified_with_one_warning(cli, clf_run, tmp_path):
    run, _ = clf_run
    # the marks of the labels, among characters training never saw (é three times, 7 twice, ü)
    test = write_dir(tmp_path / "test", {"alpha": ["abxü", "x7"], "beta": ["ébyca", "cy"], "gamma": ["zé", "ezé7"]})
    r = cli("classify", "eval", run, test, "--json", "--out", tmp_path / "page.html")
    assert r.exit_code == 0 and json.loads(r.stdout)["accuracy"] == 1.0, r.stderr
    warning = [line for line in r.stderr.splitlines() if "warning" in line]
    assert warning == [
        "charrnn: warning: 5 of 6 texts held 6 characters the classifier never saw, read as the unknown "
        "symbol (--unknown error refuses them); the commonest: 'é' 3, '7' 2, 'ü' 1"
    ]
    assert "6 characters it never saw read as the unknown symbol, in 5 examples" in (tmp_path / "page.html").read_text()
    r = cli("classify", "predict", run, input="abxü\nzé\nyyy\n")  # a pipeline of lines goes through
    assert r.exit_code == 0 and [line.split("\t")[1] for line in r.stdout.splitlines()] == ["alpha", "gamma", "beta"]
    assert r.stderr.count("\n") == 1 and "2 of 3 texts held 2 characters" in r.stderr


def test_a_classifier_from_before_the_unknown_symbol_still_reads_texts(cli):
    old = FIXTURES / "classifier-da87776"  # see tests/fixtures/make_old_classifier.py
    expected = json.loads((old / "expected.json").read_text())
    clf = load_classifier(old)
    assert clf.vocab.unk is None and clf.unknown_rule() == "skip" and not clf.net.config.ngrams
    # characters it never saw are left out, as --unknown skip did then: the same probabilities
    assert torch.allclose(clf.probabilities(expected["texts"]), torch.tensor(expected["skip"]), atol=1e-6)
    r = cli("classify", "predict", old, *expected["texts"])
    assert r.exit_code == 0 and [line.split("\t")[1] for line in r.stdout.splitlines()] == ["alpha", "gamma", "beta"]
    assert r.stderr.count("\n") == 1 and "2 of 3 texts held 2 characters" in r.stderr and "left out" in r.stderr
    one_line_error(cli("classify", "predict", old, "abq", "--unknown", "unk"), 7, "<unk>")


@pytest.mark.slow
def test_time_limit_alone_trains_until_the_time_is_up(cli, tmp_path):
    data = write_dir(tmp_path / "data", marked_words(10, seed=7))
    r = cli("classify", "train", data, "--out", tmp_path / "run", "--time-limit", 1.5, "--patience", 10_000,
            "--hidden", 4, "--device", "cpu", "-q")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert r.stderr.splitlines()[0].endswith("until 1.5 s are up (--time-limit; no epoch cap), or 10000 epochs "
                                             "without a better val accuracy (--patience)")  # fmt: skip
    done = re.search(r"done: (\d+) epochs in ([\d.]+) s \(time-limit\)", r.stderr)
    assert done and int(done[1]) > 3 and float(done[2]) >= 1.5, r.stderr  # past the old default of 3 epochs
    r = cli("classify", "train", data, "--out", tmp_path / "run2", "--time-limit", 60, "--max-epochs", 2,
            "--hidden", 4, "--device", "cpu", "-q")  # fmt: skip
    assert "until 2 epochs (--max-epochs) or 60 s (--time-limit), whichever comes first" in r.stderr.splitlines()[0]
    assert "done: 2 epochs" in r.stderr and "(max-epochs)" in r.stderr


def test_the_progress_bar_ends_on_the_last_epoch_that_ran(cli, tmp_path):
    data = write_dir(tmp_path / "data", marked_words(20, seed=8))
    r = cli("classify", "train", data, "--out", tmp_path / "run", "--max-epochs", 3, "--hidden", 4, "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    bar = [line for line in r.stderr.splitlines() if line.startswith("epoch ") and ":" not in line]
    assert bar and all(line.startswith("epoch 3 ") for line in bar), r.stderr  # never an "epoch 4" that never ran
    lines = r.stderr.splitlines()
    assert [line.split(":")[0] for line in lines if re.match(r"epoch \d+:", line)] == ["epoch 1", "epoch 2", "epoch 3"]
    assert not any(line.strip() == "best" for line in lines)  # piped, a line is never wrapped


def test_ngram_ids_follow_the_documented_recipe():
    # what a runtime feeding the exported ONNX graph computes: CRC-32 of each n-gram's UTF-8 of
    # " " + text + " ", 1-grams first, modulo the buckets, plus one
    import zlib

    from charrnn.classify.model import hashed

    for text in ("ab", "smørrebrød", ""):
        t = f" {text} "
        want = [zlib.crc32(t[i : i + k].encode("utf-8")) % 97 + 1 for k in (1, 2, 3) for i in range(len(t) - k + 1)]
        assert hashed([text], 3, 97)[0].tolist() == want
