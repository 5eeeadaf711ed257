"""The table behind `--preset auto`: val loss against characters trained, for each preset.

    python benchmarks/auto_table.py                          # every preset to 6 M characters
    python benchmarks/auto_table.py --presets tiny,small --chars 2e6
    python benchmarks/auto_table.py --corpus code.txt --chars 3e6   # a held-out text of another kind

Each preset trains on the corpus (default: the bundled tiny-shakespeare) for the steps that make
`--chars` characters, its cosine schedule decaying over that horizon, and is evaluated on the
whole val split every `--points`-th of the way. The curve is a function of characters trained,
not of time, so it holds on any machine: `--preset auto` measures how many characters per
second each preset trains here, and reads the curves at what the time limit buys. A point before
the end is read while the learning rate is still high, which is pessimistic in the same way for
every preset. Prints the table and, with --python, the curves as charrnn/autopreset.py holds them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from charrnn import api
from charrnn.training.presets import PRESETS, preset_settings


def curve(corpus: str, preset: str, chars: float, points: int, root: Path, seed: int) -> list[tuple[int, float]]:
    s = preset_settings(preset)
    per_step = s["batch_size"] * s["seq_len"]
    steps = max(points, round(chars / per_step))
    every = max(1, steps // points)
    out = root / preset
    api.train(
        corpus, out=out, preset=preset, max_steps=steps, eval_every=every, seed=seed, sample_every=0, checkpoint_every=0
    )
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [(m["step"] * per_step, m["val_loss"]) for m in lines if "val_loss" in m and m["step"] > 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="tinyshakespeare")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--chars", type=float, default=6e6, help="Characters each preset trains on.")
    ap.add_argument("--points", type=int, default=12, help="Evaluations along the way.")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--python", action="store_true", help="Also print the curves as Python.")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="charrnn-auto-table-"))
    curves = {}
    for preset in args.presets.split(","):
        t0 = time.perf_counter()
        curves[preset] = curve(args.corpus, preset, args.chars, args.points, root, args.seed)
        print(f"{preset}: {len(curves[preset])} points in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print(f"val loss (nats/char) on {args.corpus} after N characters trained, one run a preset to {args.chars:,.0f}")
    for preset, points in curves.items():
        print(f"\n{preset}")
        for chars, loss in points:
            print(f"  {chars:>12,} {loss:.4f}")
    if args.python:
        print("\nLOSS_BY_CHARS = {")
        for preset, points in curves.items():
            print(f"    {preset!r}: [" + ", ".join(f"({c}, {v:.4f})" for c, v in points) + "],")
        print("}")


if __name__ == "__main__":
    main()
