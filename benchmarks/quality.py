"""Quality per wall-clock budget: train presets on tiny-shakespeare for a fixed time each and
print the val loss (nats and bits per character) beside the nanoGPT reference figures.

    python benchmarks/quality.py --budgets 60,600               # auto beside the transformer baseline
    python benchmarks/quality.py --presets tiny,small --budgets 60 --no-baseline
    python benchmarks/quality.py --budgets 600 --samples 4

Each run is `charrnn train CORPUS --preset P --time-limit B` in a child process (so runs do
not share a process), on nanoGPT's split (the last 10% is val), by default on the bundled
tiny-shakespeare. Run on an otherwise idle machine: it measures what a user gets in the
time they give. Each budget also trains `transformer_baseline.py` (nanoGPT's CPU recipe,
written here), in a child process of its own, on the same split, and prints it beside charrnn
with the difference (--no-baseline leaves it out).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

# Measured on this project's 2-core CPU machine (see benchmarks/README.md) and published figures.
REFERENCES = [
    ("nanoGPT CPU recipe (4x128 transformer), 2,000 iters", "~63 s CPU", 1.89),
    ("nanoGPT CPU recipe, 19,000 iters", "~9.5 min CPU", 1.52),
    ("nanoGPT GPU recipe (6x384 transformer), 5,000 iters", "~3 min A100", 1.4697),
]


def run(corpus: str, preset: str, budget: float, out: Path, extra: list[str]) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "charrnn",
        "train",
        str(corpus),
        "--preset",
        preset,
        "--time-limit",
        str(budget),
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in lines if "val_loss" in m]
    steps = [m for m in lines if "train_loss" in m]
    chosen = next(
        (
            ln.split("-> ")[1].split(":")[0].split()[0]
            for ln in p.stderr.splitlines()
            if ln.startswith("preset auto -> ")
        ),
        preset,
    )
    return {
        "preset": preset,
        "chosen": chosen,
        "budget": budget,
        "val": min(m["val_loss"] for m in evals),
        "steps": steps[-1]["step"],
        "elapsed": steps[-1]["elapsed_s"],
    }


def baseline(corpus: str, budget: float) -> dict:
    """The transformer baseline's steps and val loss after `budget` seconds, in a child process."""
    script = Path(__file__).with_name("transformer_baseline.py")
    cmd = [sys.executable, str(script), "--corpus", str(corpus), "--time-limit", str(budget)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    return json.loads(p.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="auto")
    ap.add_argument("--budgets", default="60")
    ap.add_argument("--corpus", default="tinyshakespeare", help="a text file, or a bundled corpus by name")
    ap.add_argument("--samples", type=int, default=0, help="print this many lines of a sample per run")
    ap.add_argument("--keep", type=Path, help="keep the run directories here")
    ap.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train the transformer baseline for each budget too (default: yes)",
    )
    ap.add_argument("extra", nargs="*", help="more charrnn train flags, after --")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="charrnn-quality-"))
    results, baselines = [], {}
    for budget in (float(b) for b in args.budgets.split(",")):
        if args.baseline:
            baselines[budget] = baseline(args.corpus, budget)
            print(
                f"  transformer baseline {budget:.0f} s: val {baselines[budget]['val']:.4f}",
                file=sys.stderr,
                flush=True,
            )
        for preset in args.presets.split(","):
            out = root / f"{preset}-{int(budget)}s"
            r = run(args.corpus, preset, budget, out, args.extra)
            results.append(r)
            print(f"  {preset} ({r['chosen']}) {budget:.0f} s: val {r['val']:.4f}", file=sys.stderr, flush=True)
            if args.samples:
                s = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "charrnn",
                        "sample",
                        str(out),
                        "--prime",
                        "ROMEO:",
                        "--length",
                        "400",
                        "--seed",
                        "7",
                    ],
                    capture_output=True,
                    text=True,
                ).stdout
                r["sample"] = "\n".join(s.splitlines()[: args.samples])
    print(f"{'run':<58} {'budget':>12} {'val nats/char':>14} {'bits/char':>10} {'steps':>7}")
    for r in results:
        name = f"charrnn --preset {r['preset']}" + (f" ({r['chosen']})" if r["chosen"] != r["preset"] else "")
        print(f"{name:<58} {r['budget']:>10.0f} s {r['val']:>14.4f} {r['val'] / math.log(2):>10.4f} {r['steps']:>7}")
    for budget, b in baselines.items():
        name = "transformer baseline (nanoGPT's CPU recipe, side by side)"
        print(f"{name:<58} {budget:>10.0f} s {b['val']:>14.4f} {b['val'] / math.log(2):>10.4f} {b['steps']:>7}")
    for r in results:
        if r["budget"] in baselines:
            gap = baselines[r["budget"]]["val"] - r["val"]
            print(f"charrnn --preset {r['preset']} at {r['budget']:.0f} s is {gap:.4f} nats/char below the baseline")
    for name, budget, val in REFERENCES:
        print(f"{name:<58} {budget:>12} {val:>14.4f} {val / math.log(2):>10.4f} {'':>7}")
    for r in results:
        if "sample" in r:
            print(f"\n--preset {r['preset']}, {r['budget']:.0f} s:\n{r['sample']}")


if __name__ == "__main__":
    main()
