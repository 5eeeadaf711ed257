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

Tuning: each --variant "NAME: FLAGS" trains every preset and budget once more with those
flags too, and --jobs N runs that many trainings at once (on a GPU, where one small model
leaves the chip mostly idle; on a CPU they would share its cores and each get less done):

    python benchmarks/quality.py --presets auto --budgets 200 --no-baseline --jobs 4 \
        --variant "d0.4: --dropout 0.4" --variant "wd: --weight-decay 0.2" -- --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
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
        "best_step": min(evals, key=lambda m: m["val_loss"])["step"],
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
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME: FLAGS",
        help="also train each preset and budget with these charrnn train flags (repeatable)",
    )
    ap.add_argument("--jobs", type=int, default=1, help="trainings at once [default: 1]")
    ap.add_argument("extra", nargs="*", help="more charrnn train flags, after --")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="charrnn-quality-"))
    variants = [("", [])]
    for v in args.variant:
        name, _, flags = v.partition(":")
        variants.append((name.strip(), shlex.split(flags)))
    budgets = [float(b) for b in args.budgets.split(",")]
    baselines = {}
    for budget in budgets if args.baseline else ():
        baselines[budget] = baseline(args.corpus, budget)
        print(f"  transformer baseline {budget:.0f} s: val {baselines[budget]['val']:.4f}", file=sys.stderr, flush=True)
    jobs = [(b, p, v) for b in budgets for p in args.presets.split(",") for v in variants]

    def one(job) -> dict:
        budget, preset, (label, flags) = job
        out = root / (f"{preset}-{int(budget)}s" + (f"-{label}" if label else ""))
        tag = f" [{label}]" if label else ""
        try:
            r = run(args.corpus, preset, budget, out, [*args.extra, *flags])
        except SystemExit as e:  # one failed run leaves the others' results standing
            print(f"  {preset}{tag} {budget:.0f} s {e}", file=sys.stderr, flush=True)
            return dict(preset=preset, chosen=preset, budget=budget, variant=label, val=math.nan, best_step=0, steps=0)
        r["variant"] = label
        print(
            f"  {preset} ({r['chosen']}){tag} {budget:.0f} s: val {r['val']:.4f} "
            f"at step {r['best_step']} of {r['steps']}",
            file=sys.stderr,
            flush=True,
        )
        if args.samples:
            s = subprocess.run(
                [sys.executable, "-m", "charrnn", "sample", str(out), "--prime", "ROMEO:", "--length", "400"]
                + ["--seed", "7"],
                capture_output=True,
                text=True,
            ).stdout
            r["sample"] = "\n".join(s.splitlines()[: args.samples])
        return r

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one, jobs))
    for label, flags in variants[1:]:
        print(f"variant {label}: {shlex.join(flags)}")
    print(f"{'run':<58} {'budget':>12} {'val nats/char':>14} {'bits/char':>10} {'steps':>7} {'best at':>7}")
    for r in results:
        name = f"charrnn --preset {r['preset']}" + (f" ({r['chosen']})" if r["chosen"] != r["preset"] else "")
        name += f" [{r['variant']}]" if r["variant"] else ""
        print(
            f"{name:<58} {r['budget']:>10.0f} s {r['val']:>14.4f} {r['val'] / math.log(2):>10.4f} {r['steps']:>7} "
            f"{r['best_step']:>7}"
        )
    for budget, b in baselines.items():
        name = "transformer baseline (nanoGPT's CPU recipe, side by side)"
        print(f"{name:<58} {budget:>10.0f} s {b['val']:>14.4f} {b['val'] / math.log(2):>10.4f} {b['steps']:>7}")
    for r in results:
        if r["budget"] in baselines and not r["variant"]:
            gap = baselines[r["budget"]]["val"] - r["val"]
            print(f"charrnn --preset {r['preset']} at {r['budget']:.0f} s is {gap:.4f} nats/char below the baseline")
    for name, budget, val in REFERENCES:
        print(f"{name:<58} {budget:>12} {val:>14.4f} {val / math.log(2):>10.4f} {'':>7}")
    for r in results:
        if "sample" in r:
            print(f"\n--preset {r['preset']} {r['variant']}, {r['budget']:.0f} s:\n{r['sample']}")


if __name__ == "__main__":
    main()
