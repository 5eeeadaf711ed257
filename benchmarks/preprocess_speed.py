"""Preprocessing speed and memory on a large generated mixed-script corpus, and training's
resident memory for a small against a large corpus.

    python benchmarks/preprocess_speed.py [--mb 200] [--workdir /tmp/charrnn-bench]

Generates a UTF-8 file of Latin, Cyrillic, Greek, CJK, Arabic and emoji text, then runs
`charrnn preprocess` on it in a child process (peak RSS from the kernel's accounting),
beside the naive way (read it all, a Python dict lookup per character) on a slice of it.
Then trains the same small model for a few steps on a 10 MB and on the large corpus and
prints each run's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

WORDS = [
    "the",
    "and",
    "thou",
    "king",
    "light",
    "river",
    "mountain",
    "Москва",
    "река",
    "ночь",
    "слово",
    "λόγος",
    "θάλασσα",
    "φως",
    "明月",
    "故乡",
    "山",
    "黄河",
    "千里",
    "東京",
    "さくら",
    "السلام",
    "كتاب",
    "🐍",
    "🎉",
    "🌕",
    "naïve",
    "café",
    "e\u0301",
    "שלום",
]


def generate(path: Path, mb: int) -> None:
    rng = random.Random(0)
    lines = []
    for _ in range(20000):
        lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) + rng.choice([".", "!", "?", ","]))
    block = ("\n".join(lines) + "\n").encode("utf-8")
    target = mb << 20
    with open(path, "wb") as f:
        written = 0
        i = 0
        while written < target:
            piece = block if written + len(block) <= target else block[: target - written]
            # cut on a line boundary so the tail stays valid UTF-8
            if len(piece) < len(block):
                piece = piece[: piece.rfind(b"\n") + 1]
                if not piece:
                    break
            f.write(piece)
            written += len(piece)
            i += 1


def run_child(code: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS MB) of one child process, from wait4's rusage."""
    t = time.perf_counter()
    proc = subprocess.Popen(code, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(code)}")
    return secs, usage.ru_maxrss / 1024


NAIVE = """
import sys, numpy as np
text = open(sys.argv[1], encoding="utf-8").read()
index = {c: i for i, c in enumerate(sorted(set(text)))}
np.array([index[c] for c in text], dtype=np.uint16).tofile(sys.argv[2])
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--naive-mb", type=int, default=20)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/charrnn-bench"))
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args()
    wd = args.workdir
    wd.mkdir(parents=True, exist_ok=True)
    big, small, naive_in = wd / f"mixed-{args.mb}mb.txt", wd / "mixed-10mb.txt", wd / f"mixed-{args.naive_mb}mb.txt"
    for path, mb in ((big, args.mb), (small, 10), (naive_in, args.naive_mb)):
        if not path.exists() or path.stat().st_size < (mb << 20) * 0.99:
            generate(path, mb)
    py = sys.executable
    size = big.stat().st_size / 2**20
    rows = []
    secs, peak = run_child([py, "-m", "charrnn", "preprocess", str(big), "--out", str(wd / "corpus-big")])
    rows.append(("charrnn preprocess", size, secs, peak))
    nsize = naive_in.stat().st_size / 2**20
    nsecs, npeak = run_child([py, "-c", NAIVE, str(naive_in), str(wd / "naive.bin")])
    rows.append(("naive (read all, dict per char)", nsize, nsecs, npeak))
    print(f"{'method':<34} {'MB':>7} {'seconds':>8} {'MB/s':>7} {'peak RSS MB':>12} {'RSS/file':>9}")
    for name, mb, s, p in rows:
        print(f"{name:<34} {mb:>7.0f} {s:>8.2f} {mb / s:>7.1f} {p:>12.0f} {p / mb:>8.2f}x")
    print(f"speed ratio charrnn / naive: {(rows[0][1] / rows[0][2]) / (rows[1][1] / rows[1][2]):.1f}x")

    if args.skip_train:
        return
    print()
    print(f"{'training corpus':<34} {'MB':>7} {'peak RSS MB':>12}")
    for path in (small, big):
        out = wd / f"corpus-train-{path.stem}"
        subprocess.run(
            [py, "-m", "charrnn", "preprocess", str(path), "--out", str(out), "--val-frac", "0.0005"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, peak = run_child(
            [
                py,
                "-m",
                "charrnn",
                "train",
                str(out),
                "--hidden",
                "128",
                "--layers",
                "2",
                "--max-steps",
                "30",
                "--device",
                "cpu",
                "--quiet",
                "--out",
                str(wd / f"run-{path.stem}"),
            ]
        )
        print(f"{path.name:<34} {path.stat().st_size / 2**20:>7.0f} {peak:>12.0f}")


if __name__ == "__main__":
    main()
