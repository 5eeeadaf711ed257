"""Data-parallel training: 2 CPU processes with gloo on loopback match one process with the
same global batch, write a checkpoint that samples normally, and resume on another world size."""

import contextlib
import os
import re
import signal
import time
from pathlib import Path

import pytest
import torch

from charrnn.generation.sample import sample_text
from charrnn.training import checkpoint, distributed
from charrnn.training.loop import train
from tests.conftest import TINY_FLAGS, fork_charrnn, subprocess_env, tiny_model, tiny_train

# a batch of 8 splits between 2 processes; the schedule's horizon is fixed so that runs of any length compare
FLAGS = [
    *TINY_FLAGS,
    *"--batch-size 8 --decay-steps 40 --eval-every 0 --checkpoint-every 0 --log-every 5 --seed 3".split(),
]


def charrnn(*args, cwd, env=None):
    """`charrnn ARGS` run to its end in a process of its own, the launcher of the ranks; (exit code, stderr)."""
    launcher = fork_charrnn(*args, cwd=cwd, env=env)
    _, stderr = launcher.communicate(timeout=300)
    return launcher.returncode, stderr


def close(a: dict, b: dict, tol: float = 1e-4) -> bool:
    return all(torch.allclose(a[k], b[k], atol=tol, rtol=0) for k in a)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path, mixed_corpus):
    mc = tiny_model(len(mixed_corpus.vocab))
    tc = dict(batch_size=8, max_steps=20, decay_steps=40, log_every=5)
    train(mixed_corpus, mc, tiny_train(**tc), run_dir=tmp_path / "one")

    args = ("train", mixed_corpus.path, *FLAGS, "--max-steps", 20, "--nproc", 2, "--out", tmp_path / "two")
    code, stderr = charrnn(*args, cwd=tmp_path)
    assert code == 0, stderr[-3000:]
    one = checkpoint.load(tmp_path / "one" / "last.pt")
    two = checkpoint.load(tmp_path / "two" / "last.pt")
    assert two["step"] == 20 and two["hidden"][0].shape == one["hidden"][0].shape  # the whole batch's state
    assert close(one["model"], two["model"])
    assert abs(one["val_loss"] - two["val_loss"]) < 1e-4
    # only rank 0 wrote: one metrics line per logged step, no duplicates
    steps = [line for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines() if "train_loss" in line]
    assert len(steps) == 5  # steps 1, 5, 10, 15, 20

    model, vocab, _ = checkpoint.load_model(tmp_path / "two" / "best.pt")
    assert sample_text(model, vocab, prime="The", length=40, seed=1).startswith("The")

    # resume the 2-process run in one process: the same as one process throughout
    train(mixed_corpus, None, tiny_train(**{**tc, "max_steps": 30}), run_dir=tmp_path / "two", resume=two)
    train(mixed_corpus, None, tiny_train(**{**tc, "max_steps": 30}), run_dir=tmp_path / "one", resume=one)
    assert close(
        checkpoint.load(tmp_path / "one" / "last.pt")["model"], checkpoint.load(tmp_path / "two" / "last.pt")["model"]
    )


def test_batch_must_split_evenly(cli, tmp_path, mixed_corpus, monkeypatch):
    # refused by the launcher before any process starts: no process is needed to see it
    started = []
    monkeypatch.setattr(distributed, "launch", lambda *args: started.append(args) or (0, ""))
    r = cli("train", mixed_corpus.path, *FLAGS, "--batch-size", 5, "--max-steps", 2, "--nproc", 2, "--out", "odd")
    assert r.exit_code == 2 and r.stderr.splitlines() == [
        "charrnn: error: --batch-size 5 must be a multiple of the number of processes (2)"
    ]
    assert started == [] and not (tmp_path / "odd").exists()


@pytest.mark.slow
def test_a_write_failure_on_rank_0_is_one_line_and_its_exit_code(cli, tmp_path, mixed_corpus):
    run = tmp_path / "run"
    # the first steps in one process (no need for another), and without a sample, so none is written yet
    r = cli("train", mixed_corpus.path, *FLAGS, "--max-steps", 10, "--sample-every", 0, "--out", run)
    assert r.exit_code == 0, r.stderr
    last = (run / "last.pt").read_bytes()
    (run / "samples.txt").symlink_to("/dev/full")
    code, stderr = charrnn(
        "train", "--resume", run, "--max-steps", 20, "--sample-every", 5, "--nproc", 2, "--quiet", cwd=tmp_path
    )
    assert code == 6
    assert stderr.strip().splitlines() == [
        f"charrnn: error: could not write {run / 'samples.txt'}: the disk is full; last.pt and best.pt hold "
        "the last good weights"
    ]
    assert (run / "last.pt").read_bytes() == last


@contextlib.contextmanager
def _long_run(tmp_path, corpus):
    """A 2-process run launched in the background, yielded once it has saved last.pt."""
    run = tmp_path / "run"
    args = ["train", corpus.path, *FLAGS, "--max-steps", 10**6, "--checkpoint-every", 20, "--nproc", 2, "--out", run]
    launcher = fork_charrnn(*args, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.pt").exists() and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert launcher.poll() is None, launcher.stderr.read()
        yield launcher, run
    finally:
        if launcher.poll() is None:
            launcher.kill()


@pytest.mark.slow
def test_a_process_that_dies_is_named_and_the_others_stop(tmp_path, mixed_corpus):
    with _long_run(tmp_path, mixed_corpus) as (launcher, run):
        ranks = {_rank_of(pid): pid for pid in _children(launcher.pid)}
        assert set(ranks) == {0, 1}, ranks
        os.kill(ranks[1], signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=60)
    assert launcher.returncode == 1
    assert stderr.strip().splitlines() == ["charrnn: error: training process 1 of 2 was killed by signal 9"]
    assert not Path(f"/proc/{ranks[0]}").exists()  # rank 0 was stopped too, and reaped
    assert checkpoint.load(run / "last.pt")["step"] >= 20


@pytest.mark.slow
def test_ctrl_c_to_the_launcher_alone_stops_every_process_and_saves(tmp_path, mixed_corpus):
    # a terminal's Ctrl-C reaches only the launcher (the ranks have their own process group),
    # as does `kill -INT` or `timeout -s INT`: it passes the signal on
    with _long_run(tmp_path, mixed_corpus) as (launcher, run):
        launcher.send_signal(signal.SIGINT)
        _, stderr = launcher.communicate(timeout=60)
    assert launcher.returncode == 130, stderr
    assert f"resume with: charrnn train --resume {run}" in stderr and "Traceback" not in stderr
    assert checkpoint.load(run / "last.pt")["step"] > 20


@pytest.mark.slow
def test_the_processes_save_and_stop_when_the_launcher_is_killed(tmp_path, mixed_corpus):
    # `kill -9` or `timeout -s KILL` on the launcher: its ranks are told (SIGTERM) and do not
    # train on unwatched
    with _long_run(tmp_path, mixed_corpus) as (launcher, run):
        ranks = _children(launcher.pid)
        assert len(ranks) == 2
        launcher.kill()
        launcher.wait(timeout=10)
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in ranks) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in ranks)
        # rank 0 kept the launcher's stderr: every writer of it has gone, so this reads to the end
        stderr = launcher.stderr.read()
    # saved again on the way out, at the step it names (not a file's mtime: a save that follows
    # a periodic one within the same clock tick keeps the same mtime)
    said = re.search(r"interrupted at step (\d+); saved (.*)$", stderr, re.MULTILINE)
    assert said is not None and "Traceback" not in stderr, stderr[-3000:]
    assert said[2] == str(run / "last.pt")
    assert checkpoint.load(run / "last.pt")["step"] == int(said[1]) >= 20


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


INJECT_RANK_1_FAILURE = """
import os
if os.environ.get("RANK") == "1":  # the third reduction on rank 1 fails with an error of its own
    import charrnn.training.distributed as d
    from charrnn.errors import TrainingError
    real, calls = d.all_sum, []
    def all_sum(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise TrainingError("simulated failure on rank 1")
        return real(*args, **kwargs)
    d.all_sum = all_sum
"""


@pytest.mark.slow
def test_another_process_that_fails_is_named_with_its_own_error(tmp_path, mixed_corpus):
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(INJECT_RANK_1_FAILURE)
    args = ("train", mixed_corpus.path, *FLAGS, "--max-steps", 40, "--nproc", 2, "--out", tmp_path / "run")
    code, stderr = charrnn(*args, cwd=tmp_path, env=subprocess_env(inject))
    assert code == 6
    assert stderr.strip().splitlines() == [
        "charrnn: error: training process 1 of 2 failed (exit 6): simulated failure on rank 1"
    ]


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _rank_of(pid: int) -> int:
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return int(next(e for e in env if e.startswith(b"RANK=")).split(b"=", 1)[1])
