"""Checkpoints written by an earlier charrnn still load, sample the same text and resume.

tests/fixtures/old-run/last.pt was written by commit 4e539ba (tests/fixtures/make_old_checkpoint.py),
with the text it sampled then recorded beside it in expected.json."""

import json
from pathlib import Path

import pytest

from charrnn import checkpoint
from charrnn.sample import sample_text

OLD = Path(__file__).resolve().parent / "fixtures" / "old-run"
EXPECTED = json.loads((OLD / "expected.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", EXPECTED["samples"], ids=lambda c: c["kwargs"]["prime"])
def test_an_old_checkpoint_samples_the_text_it_sampled_then(case):
    model, vocab, _ = checkpoint.load_model(OLD / "last.pt")
    assert sample_text(model, vocab, **case["kwargs"]) == case["text"]


def test_an_old_checkpoint_through_the_command_line(cli, mixed_file, tmp_path):
    kw = EXPECTED["samples"][0]["kwargs"]
    r = cli(
        "sample",
        OLD / "last.pt",
        "--prime",
        kw["prime"],
        "--length",
        kw["length"],
        "--seed",
        kw["seed"],
        "--temp",
        kw["temp"],
    )
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == (EXPECTED["samples"][0]["text"] + "\n").encode("utf-8")
    info = cli("info", OLD / "last.pt")
    assert info.exit_code == 0 and "lstm 2 x 16" in info.stdout and "150" in info.stdout
    # its training state resumes too (its corpus is named again: the recorded path is gone)
    r = cli("train", mixed_file, "--resume", OLD / "last.pt", "--out", tmp_path / "on", "--max-steps", 160, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert checkpoint.load(tmp_path / "on" / "last.pt")["step"] == 160
