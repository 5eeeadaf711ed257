"""Checkpoints written by earlier charrnns still load, sample the same text and resume.

tests/fixtures/old-run/last.pt was written by commit 4e539ba, before the modules were split,
and tests/fixtures/run-55cb211/last.pt by commit 55cb211, before the package was laid out in
subpackages (each by tests/fixtures/make_old_checkpoint.py as it was then), with the text
each sampled then recorded beside it in expected.json."""

import json
from pathlib import Path

import pytest

from charrnn.generation.sample import sample_text
from charrnn.training import checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RUNS = ("old-run", "run-55cb211")
EXPECTED = {run: json.loads((FIXTURES / run / "expected.json").read_text(encoding="utf-8")) for run in RUNS}
CASES = [(run, case) for run in RUNS for case in EXPECTED[run]["samples"]]


@pytest.mark.parametrize(("run", "case"), CASES, ids=lambda x: x if isinstance(x, str) else x["kwargs"]["prime"])
def test_an_old_checkpoint_samples_the_text_it_sampled_then(run, case):
    model, vocab, _ = checkpoint.load_model(FIXTURES / run / "last.pt")
    assert sample_text(model, vocab, **case["kwargs"]) == case["text"]


@pytest.mark.parametrize("run", RUNS)
def test_an_old_checkpoint_through_the_command_line(cli, mixed_file, tmp_path, run):
    old = FIXTURES / run / "last.pt"
    kw = EXPECTED[run]["samples"][0]["kwargs"]
    r = cli("sample", old, "--prime", kw["prime"], "--length", kw["length"], "--seed", kw["seed"], "--temp", kw["temp"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == (EXPECTED[run]["samples"][0]["text"] + "\n").encode("utf-8")
    info = cli("info", old)
    assert info.exit_code == 0 and "lstm 2 x 16" in info.stdout and "150" in info.stdout
    # its training state resumes too (its corpus is named again: the recorded path is gone)
    r = cli("train", mixed_file, "--resume", old, "--out", tmp_path / "on", "--max-steps", 160, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert checkpoint.load(tmp_path / "on" / "last.pt")["step"] == 160
