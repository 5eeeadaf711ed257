"""What a new user meets in the first hour: numbers that agree, notices that say what was used,
and errors that say what to do next; and the Python API doing what the command does."""

import re
import sys

import pytest

import charrnn
import charrnn.api
from charrnn import memory
from charrnn.training import checkpoint
from tests.conftest import TINY_FLAGS, one_line_error


@pytest.mark.parametrize("flags", [["--tie-embeddings"], ["--untied"]])
def test_info_counts_the_parameters_the_model_has(cli, mixed_file, tmp_path, flags):
    # a tied output matrix is one tensor under two names in the checkpoint: counted once, as train counts it
    r = cli("train", mixed_file, *TINY_FLAGS, "--max-steps", 1, *flags, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.stderr
    model, _, _ = checkpoint.load_model(tmp_path / "run" / "best.pt")
    params = sum(p.numel() for p in model.parameters())
    shown = re.search(r"parameters\s+│\s+([\d,]+)", cli("info", tmp_path / "run").stdout).group(1)
    assert int(shown.replace(",", "")) == params


def test_sample_says_which_checkpoint_it_uses_when_none_is_named(cli, mixed_file):
    assert cli("train", mixed_file, *TINY_FLAGS, "--max-steps", 1, "--out", "checkpoints/mine").exit_code == 0
    r = cli("sample", "--prime", "The", "--length", 5, "--seed", 1)
    assert r.exit_code == 0 and r.stderr.strip() == "using checkpoints/mine/best.pt"
    quiet = cli("sample", "--prime", "The", "--length", 5, "--seed", 1, "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == r.stdout
    named = cli("sample", "checkpoints/mine", "--prime", "The", "--length", 5, "--seed", 1)
    assert named.stderr == "" and named.stdout == r.stdout
    # the folder of runs is not a run: say so, and name one
    one_line_error(cli("sample", "checkpoints"), 4, "is a folder of runs", "checkpoints/mine")


def test_errors_say_what_to_do(cli, mixed_file, tmp_path):
    assert cli("train", mixed_file, *TINY_FLAGS, "--max-steps", 1, "--out", "run").exit_code == 0
    one_line_error(cli("sample", "run", "--prime", "Zebra"), 7, "'Z'", "--unknown skip")
    binary = tmp_path / "bin"
    binary.mkdir()
    (binary / "a.dat").write_bytes(bytes(range(256)) * 4)
    one_line_error(cli("preprocess", binary, "--doc-sep", "\\n"), 3, "a.dat", "look binary", "--force")


def test_out_of_memory_names_the_cause(cli, mixed_file, monkeypatch, tmp_path):
    assert cli("train", mixed_file, *TINY_FLAGS, "--max-steps", 1, "--out", "run").exit_code == 0
    monkeypatch.setattr(memory, "available", lambda: 64 << 20)  # 64 MiB free
    r = cli("sample", "run", "--prime", "The quick brown fox. " * 5000, "--length", 5)
    one_line_error(r, 2, "a prime of 105,000 characters", "shorter prime")
    assert "--num-samples" not in r.stderr
    # what torch raises when an allocation fails: each command names its own options
    from charrnn.classify import predict

    def fail(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(charrnn.api, "generate", fail)
    r = cli("sample", "run", "--prime", "The", "--length", 5)
    one_line_error(r, 1, "out of memory", "--num-samples")
    assert "--batch-size" not in r.stderr
    monkeypatch.setattr(predict.Classifier, "probabilities", fail)
    words = tmp_path / "words"
    words.mkdir()
    for label, text in (("a", "abc abd abe acd ace"), ("b", "xyz xyw xzw yzw yxw")):
        (words / f"{label}.txt").write_text("\n".join(text.split() * 4) + "\n", encoding="utf-8")
    assert cli("classify", "train", words, "--out", "clf", "--quiet").exit_code == 0
    r = cli("classify", "predict", "clf", "abc")
    one_line_error(r, 1, "out of memory", "fewer or shorter texts")
    assert "--seq-len" not in r.stderr and "--num-samples" not in r.stderr


def test_auto_says_a_loss_read_off_another_corpus_is_a_guide(cli, mixed_file):
    r = cli("train", mixed_file, "--preset", "auto", "--time-limit", 20, "--max-steps", 1, "--device", "cpu",
            "--quiet", "--out", "run")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    line = next(x for x in r.stderr.splitlines() if x.startswith("preset auto -> "))
    assert "on tiny-shakespeare" in line and "predicted" not in line


def test_the_python_api_writes_the_report_and_shows_progress_when_asked(cli, mixed_file, capsys):
    result = charrnn.train(mixed_file, out="quiet-run", hidden=16, layers=1, batch_size=4, seq_len=16, max_steps=3,
                           device="cpu", precision="fp32")  # fmt: skip
    assert (result.run_dir / "report.html").is_file()  # as `charrnn train` writes it
    assert capsys.readouterr().err == ""  # silent by default, as libraries are
    charrnn.train(mixed_file, out="loud-run", hidden=16, layers=1, batch_size=4, seq_len=16, max_steps=3,
                  eval_every=2, device="cpu", precision="fp32", progress=True)  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("training 1x16 lstm") and "val loss" in err
    with pytest.raises(charrnn.BadValueError, match="not both"):
        charrnn.train(mixed_file, progress=True, callbacks=object())
    assert sys.stderr is not None
