"""The command line as a user meets it: CliRunner for each command, and the installed
`charrnn` script in a real shell pipeline."""

import json
import math
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from charrnn.corpus.bundled import CORPORA
from charrnn.training import checkpoint
from charrnn.training.runlog import read_samples
from tests.conftest import MIXED_TEXT, TINY_FLAGS, one_line_error


@pytest.fixture
def newest_run(cli, tiny_run, tmp_path) -> Path:
    """The shared tiny run, copied to checkpoints/ in the working directory: the run that
    `charrnn sample` with no checkpoint named picks."""
    return Path(shutil.copytree(tiny_run, tmp_path / "checkpoints" / "mixed"))


def test_every_command_has_help_with_examples(cli):
    for cmd in ("preprocess", "train", "sample", "eval", "info", "visualize", "report"):
        r = cli(cmd, "--help")
        assert r.exit_code == 0
        assert "Example" in r.stdout, cmd
    assert "tiny" in cli("train", "--help").stdout  # the presets table


def test_presets_set_the_recipe_and_explicit_flags_win(cli, mixed_file, tmp_path):
    from charrnn.training.presets import PRESETS, auto_preset

    r = cli(
        "train",
        mixed_file,
        "--preset",
        "small",
        "--time-limit",
        60,
        "--hidden",
        24,
        "--lr",
        0.02,
        "--max-steps",
        1,
        "--device",
        "cpu",
        "--quiet",
        "--out",
        tmp_path / "run",
    )
    assert r.exit_code == 0, r.stderr
    ckpt = checkpoint.load(tmp_path / "run" / "last.pt")
    assert ckpt["model_config"]["hidden"] == 24 and ckpt["train_config"]["lr"] == 0.02  # explicit flags
    small = PRESETS["small"]
    assert ckpt["model_config"]["layers"] == small["layers"]
    for name in ("batch_size", "seq_len", "weight_decay", "warmup_steps"):
        assert ckpt["train_config"][name] == small[name], name
    # the rule by time alone, which the processes of a data-parallel run fall back on
    assert [auto_preset(t, "cpu") for t in (60, 120, 121, 3600, 3601)] == [
        "small",
        "small",
        "medium",
        "medium",
        "large",
    ]
    assert auto_preset(None, "cpu") == "large"
    assert auto_preset(60, "cuda") == auto_preset(None, "cuda") == "xl"  # tuned on a GPU


def test_preprocess_writes_corpus_and_summary(cli, mixed_file, tmp_path):
    r = cli("preprocess", mixed_file, "--val-frac", "0.2")
    assert r.exit_code == 0, r.stderr
    meta = json.loads((tmp_path / "corpora" / "mixed" / "meta.json").read_text())
    assert meta["vocab_size"] == len(set(MIXED_TEXT))
    assert "characters" in r.stderr and r.stdout == ""


def test_train_then_sample_info_eval(cli, mixed_file, tmp_path):
    run = tmp_path / "checkpoints" / "mixed"
    r = cli("train", mixed_file, *TINY_FLAGS, "--max-steps", 40, "--out", "checkpoints/mixed")
    assert r.exit_code == 0, r.stderr
    assert "best val loss" in r.stderr and "bits/char" in r.stderr
    assert r.stdout == ""
    # no checkpoint argument: the newest run
    r = cli("sample", "--prime", "床前", "--length", 50, "--seed", 3)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("床前") and len(r.stdout) == 2 + 50 + 1
    assert r.stdout == cli("sample", run, "--prime", "床前", "--length", 50, "--seed", 3).stdout
    info = cli("info", run)
    assert info.exit_code == 0 and "parameters" in info.stdout and "lstm 2 x 16" in info.stdout
    ev = cli("eval", run)
    assert ev.exit_code == 0 and "nats/char" in ev.stdout and "bits/char" in ev.stdout
    holdout = tmp_path / "holdout.txt"
    holdout.write_text(MIXED_TEXT[:300], encoding="utf-8")
    assert "nats/char" in cli("eval", run, "--file", holdout).stdout


def test_sample_reads_prime_from_stdin(cli, newest_run):
    r = cli("sample", "--length", 20, "--seed", 1, input="The ")
    assert r.exit_code == 0 and r.stdout.startswith("The ") and len(r.stdout_bytes.decode("utf-8")) == 4 + 20 + 1
    assert r.stdout == cli("sample", newest_run, "--prime", "The ", "--length", 20, "--seed", 1).stdout


def test_unknown_prime_character_with_no_run_named(cli, newest_run):
    r = cli("sample", "--prime", "Zж", "--length", 5)
    assert r.exit_code == 7
    using, error = r.stderr.splitlines()  # which checkpoint (none was named), then the error's one line
    assert using.startswith("using ") and "'Z'" in error and "'ж'" in error


def test_num_samples_and_stop(cli, newest_run):
    args = ("sample", "--num-samples", 3, "--length", 30, "--seed", 2, "--separator", "\n--\n")
    r = cli(*args)
    out = r.stdout_bytes.decode("utf-8")  # as written: r.stdout turns CRLF into LF
    assert r.exit_code == 0 and out.count("\n--\n") == 2 and out.endswith("\n")
    full = out[:-1].split("\n--\n")
    assert [len(t) for t in full] == [30, 30, 30]
    # each sample ends where the stop string first appears, without it; the others are left whole
    stop = full[0][5:7]
    cut = [t[: t.index(stop)] if stop in t else t for t in full]
    r = cli(*args, "--stop", stop)
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes.decode("utf-8") == "\n--\n".join(cut) + "\n"


def test_resume_trains_to_total_steps(cli, newest_run, tmp_path):
    r = cli("train", "--resume", "checkpoints/mixed", "--max-steps", 60, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "60 steps" in r.stderr and checkpoint.load(newest_run / "last.pt")["step"] == 60
    r = cli("train", "--resume", "checkpoints/mixed", "--hidden", 32)
    assert r.exit_code == 2 and "cannot change on resume" in r.stderr


# Bad options, files and checkpoints given to each command: tests/test_reliability.py, a test for
# each row of the README's Reliability table.


def test_sample_with_no_run_to_pick_is_one_line(cli):
    one_line_error(cli("sample"), 4, "no trained model")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("charrnn") is None, reason="the charrnn console script is not installed")
def test_installed_command_in_a_shell_pipeline(cli, newest_run, tmp_path):
    run = newest_run

    def start(command):
        shell = isinstance(command, str)
        return subprocess.Popen(
            command,
            shell=shell,
            executable="/bin/bash" if shell else None,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    # three processes that spend seconds each importing torch: started together, then read in turn
    piped = start(f"printf 'ab' | charrnn sample {run} --length 50 | head -c 10")
    # a reader that goes away early: no traceback, exit 0
    early = start(f"set -o pipefail; charrnn sample {run} --length 100000 --prime ab | head -c 5")
    # python -m charrnn works too, and writes what the command does
    sample = ["sample", str(run), "--prime", "ab", "--length", "5", "--seed", "1"]
    module = start([sys.executable, "-m", "charrnn", *sample])
    out, err = piped.communicate(timeout=120)
    assert piped.returncode == 0 and out.startswith(b"ab") and len(out) == 10, err
    out, err = early.communicate(timeout=120)
    assert early.returncode == 0 and b"Traceback" not in err and err == b"" and len(out) == 5
    out, err = module.communicate(timeout=120)
    assert module.returncode == 0 and out.startswith(b"ab"), err
    assert out == cli(*sample).stdout_bytes


@pytest.mark.slow
def test_chinese_corpus_end_to_end(cli, tmp_path):
    poem = "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n白日依山尽，黄河入海流。欲穷千里目，更上一层楼。\n"
    (tmp_path / "tang.txt").write_text(poem * 60, encoding="utf-8")
    flags = ["--hidden", 32, "--max-steps", 150, "--lr", 0.02, "--out", "checkpoints/tang"]
    r = cli("train", "tang.txt", *TINY_FLAGS, *flags)
    assert r.exit_code == 0, r.stderr
    # the model learned the poem: its val loss is a small part of what the characters' frequencies give ...
    unigram = -sum(n / len(poem) * math.log(n / len(poem)) for n in Counter(poem).values())  # 3.55 nats/char
    metrics = (tmp_path / "checkpoints" / "tang" / "metrics.jsonl").read_text().splitlines()
    val = [json.loads(line)["val_loss"] for line in metrics if "val_loss" in line]
    assert val and val[-1] < unigram / 10
    # ... and, greedy, it goes on from the first two characters with the rest of the first line
    s = cli("sample", "--prime", "床前", "--length", 30, "--temp", "0")
    assert s.exit_code == 0 and s.stdout.startswith(poem.splitlines(keepends=True)[0])
    assert len(s.stdout) == 2 + 30 + 1 and set(s.stdout.strip()) <= set(poem)


@pytest.mark.slow
def test_tinyshakespeare_end_to_end(cli, tmp_path):
    # the bundled corpus, by name: nothing outside the installed package is needed
    flags = "--hidden 64 --layers 1 --batch-size 32 --seq-len 64 --max-steps 200 --lr 0.01 --eval-every 100"
    r = cli("train", "tinyshakespeare", *flags.split(), "--device", "cpu", "--quiet", "--out", "checkpoints/ts")
    assert r.exit_code == 0, r.stderr
    run = tmp_path / "checkpoints" / "ts"
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "val_loss" in line]
    assert [e["step"] for e in evals] == [100, 200]
    assert evals[-1]["val_loss"] < 2.3  # a unigram model scores 3.3 nats/char
    # a progress sample at each evaluation, though the console was quiet
    samples = read_samples(run)
    assert [s["step"] for s in samples] == [100, 200] and all(len(s["text"]) > 100 for s in samples)
    assert checkpoint.load(run / "last.pt")["corpus"]["sha256"] == CORPORA["tinyshakespeare"].sha256
    s = cli("sample", "--prime", "ROMEO:", "--length", 100, "--seed", 7)
    assert s.exit_code == 0 and s.stdout.startswith("ROMEO:")
