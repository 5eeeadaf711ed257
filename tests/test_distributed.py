"""Data-parallel training: 2 CPU processes with gloo on loopback match one process with the
same global batch, write a checkpoint that samples normally, and resume on another world size."""

import os
import subprocess
import sys

import pytest
import torch

from charrnn import checkpoint
from charrnn.sample import sample_text
from charrnn.train import train
from tests.conftest import tiny_model, tiny_train

FLAGS = ["--hidden", "16", "--layers", "2", "--batch-size", "8", "--seq-len", "16", "--lr", "0.01",
         "--warmup-steps", "5", "--decay-steps", "40", "--eval-every", "0", "--checkpoint-every", "0",
         "--log-every", "5", "--device", "cpu", "--precision", "fp32", "--seed", "3", "--quiet"]


# How a torchrun start that failed for reasons outside charrnn reads (ports taken, rendezvous).
LAUNCH_FAILURES = ("EADDRINUSE", "Address already in use", "RendezvousConnectionError", "RendezvousTimeoutError",
                   "DistNetworkError", "Connection refused", "Connection reset")


def charrnn(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def close(a: dict, b: dict, tol: float = 1e-4) -> bool:
    return all(torch.allclose(a[k], b[k], atol=tol, rtol=0) for k in a)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path, mixed_corpus):
    mc = tiny_model(len(mixed_corpus.vocab))
    tc = dict(batch_size=8, max_steps=20, decay_steps=40, log_every=5)
    train(mixed_corpus, mc, tiny_train(**tc), tmp_path / "one")

    args = ("train", mixed_corpus.path, *FLAGS, "--max-steps", 20, "--nproc", 2, "--out", tmp_path / "two")
    r = charrnn(*args, cwd=tmp_path)
    if r.returncode != 0 and any(w in r.stderr for w in LAUNCH_FAILURES):
        r = charrnn(*args, cwd=tmp_path)  # the rendezvous lost a race for a loopback port: once more
    assert r.returncode == 0, r.stderr[-3000:]
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
    train(mixed_corpus, None, tiny_train(**{**tc, "max_steps": 30}), tmp_path / "two", resume=two)
    train(mixed_corpus, None, tiny_train(**{**tc, "max_steps": 30}), tmp_path / "one", resume=one)
    assert close(checkpoint.load(tmp_path / "one" / "last.pt")["model"],
                 checkpoint.load(tmp_path / "two" / "last.pt")["model"])


def test_batch_must_split_evenly(tmp_path, mixed_corpus):
    r = charrnn("train", mixed_corpus.path, *FLAGS, "--batch-size", 5, "--max-steps", 2, "--nproc", 2,
                "--out", tmp_path / "odd", cwd=tmp_path)
    assert r.returncode != 0 and "multiple of the number of processes" in r.stderr
