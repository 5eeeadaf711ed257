"""The Python API: the README's example runs as written, and gives what the command line gives."""

from __future__ import annotations

import contextlib
import io
import math
import re

import pytest
import torch

import charrnn
from charrnn.training.scoring import char_logprobs
from tests.conftest import ROOT, one_line_error


def readme_python() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert blocks, "the README has no Python example"
    return "\n".join(blocks)


@pytest.mark.slow
def test_the_readme_example_runs_and_matches_the_command_line(cli, tmp_path):
    scope: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(readme_python(), "README.md", "exec"), scope)  # in the cli fixture's working directory
    printed = out.getvalue()
    assert (tmp_path / "checkpoints" / "my-run" / "best.pt").is_file()
    assert scope["result"].step == 300 and scope["result"].best_val_loss < 3.0
    # generate gives exactly what `charrnn sample` prints, less the final newline
    r = cli("sample", "checkpoints/my-run", "--prime", "ROMEO:", "--length", 300, "--temp", 0.8, "--seed", 7)
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes.decode("utf-8") == scope["text"] + "\n"
    texts = scope["texts"]
    assert len(texts) == 4 and all(t.startswith("ROMEO:") and "\n\n" not in t[6:] for t in texts)
    assert scope["model"].generate("ROMEO:", length=500, seed=1) in printed  # what stream printed, piece by piece
    assert f"{scope['score'].nats:.3f} nats/char" in printed
    assert "the prime text has 3 character(s) not in the model's vocabulary: 'ж', 'у', 'к'" in printed


def test_generate_stream_and_score(tiny_run):
    model = charrnn.load(tiny_run)
    assert model.path == tiny_run / "best.pt"
    text = model.generate("床前", length=80, seed=11)
    assert text.startswith("床前") and len(text) == 82
    assert "".join(model.stream("床前", length=80, seed=11)) == text  # the same text, in pieces
    many = model.generate("The", length=40, num_samples=3, seed=2)
    assert isinstance(many, list) and len(many) == 3 and all(len(t) == 43 for t in many)
    score = model.score("The quick brown fox")
    assert len(score.logprobs) == len("The quick brown fox") - 1 and all(p <= 0 for p in score.logprobs)
    assert score.nats == pytest.approx(-sum(score.logprobs) / 18)
    assert score.bits == pytest.approx(score.nats / math.log(2))
    # read in windows with the state carried, the text gets the same log-probabilities as in one pass
    ids = torch.tensor(model.vocab.encode("The quick brown fox"))
    assert char_logprobs(model.net, ids, window=4).tolist() == pytest.approx(score.logprobs, abs=1e-5)


def test_errors_are_the_command_lines(cli, tiny_run, tmp_path):
    model = charrnn.load(tiny_run)
    with pytest.raises(charrnn.UnknownCharacterError, match="'Z'") as e:
        model.generate("Zz", length=5)
    one_line_error(cli("sample", tiny_run, "--prime", "Zz", "--length", 5), 7, str(e.value))
    with pytest.raises(charrnn.BadValueError, match="--temp"):
        model.generate("The", temp=-1)
    with pytest.raises(charrnn.CheckpointError, match="no such checkpoint"):
        charrnn.load(tmp_path / "missing.pt")
    with pytest.raises(charrnn.BadValueError, match="unknown setting"):
        charrnn.train(tmp_path / "x.txt", hiden=3)
    assert model.score("Zz The", unknown="skip").text == "z The"
