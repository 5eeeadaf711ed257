"""Crash test: train, kill -9 at a random moment, check the newest checkpoint loads, resume; repeat.

    python -m tests.kill9 WORKDIR --kills 20

Each round forks a child that runs `charrnn train` (fresh, then `--resume`) with a checkpoint at
every step, waits until it has saved once, then kills it within the next half second, so kills
often land in the middle of a save. The parent imports torch and trains two steps first, so
each child starts with all it needs imported and set up, which keeps a round to a fraction of a
second. Prints one JSON line: rounds, the step of last.pt after each kill, how many kills left a
half-written temporary file, and any checkpoint that failed to load.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import torch

from charrnn.cli.app import app
from charrnn.errors import CheckpointError
from charrnn.training import checkpoint
from tests.conftest import TINY_FLAGS

FLAGS = [*TINY_FLAGS, *"--checkpoint-every 1 --eval-every 3 --log-every 1 --decay-steps 1000".split()]


def _child(args: list[str]) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    # forked from a test, sys.stdout and sys.stderr are pytest's capture files, not fds 1 and 2
    sys.stdout = sys.stderr = open(devnull, "w", closefd=False)
    torch.set_num_threads(1)  # a forked child must not reuse the parent's thread pool
    try:
        app(args)
    finally:
        os._exit(0)


def _stamp(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _warm_up(text: Path) -> None:
    """Train two steps here, in a directory thrown away, so that what each child would do again
    after the fork on its first steps is done once: importing charrnn.api (the commands import it
    lazily) and torch._dynamo (AdamW's constructor does, in seconds), and the kernels' first calls."""
    torch.set_num_threads(1)  # as in the children: no thread pool to fork
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)  # the corpus cache too goes there
        try:
            app(["train", str(text), *FLAGS, "--max-steps", "2", "--out", "run"])
        except SystemExit as e:
            if e.code:
                raise SystemExit(f"the warm-up run failed (exit {e.code})") from None
        finally:
            os.chdir(here)


def crash_loop(workdir: Path, text: Path, kills: int, seed: int = 0, max_s: float = 0.5) -> dict:
    _warm_up(text)
    rng = random.Random(seed)
    os.chdir(workdir)
    run = workdir / "run"
    steps, torn, failures = [], 0, []
    for i in range(kills):
        if (run / "last.pt").exists():
            args = ["train", "--resume", str(run), "--max-steps", "1000000", "--quiet"]
        else:
            args = ["train", str(text), *FLAGS, "--max-steps", "1000000", "--out", str(run)]
        before = _stamp(run / "last.pt")
        pid = os.fork()
        if pid == 0:
            _child(args)
        # Let the child get into training (it has saved once), then kill it at a random moment.
        deadline = time.monotonic() + 60
        while _stamp(run / "last.pt") == before and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, max_s))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        torn += any(run.glob(f".*.pt.tmp-{pid}"))
        for name in ("last.pt", "best.pt"):
            if (run / name).exists():
                try:
                    ckpt = checkpoint.load(run / name)
                    checkpoint.load_model(run / name)
                except CheckpointError as e:
                    failures.append(f"round {i}: {e}")
                    continue
                if name == "last.pt":
                    steps.append(ckpt["step"])
    return {"rounds": kills, "steps": steps, "torn_writes": torn, "failures": failures}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--text", type=Path, help="corpus file [default: WORKDIR/corpus.txt]")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    workdir = a.workdir.resolve()
    print(json.dumps(crash_loop(workdir, (a.text or workdir / "corpus.txt").resolve(), a.kills, a.seed)))


if __name__ == "__main__":
    main()
