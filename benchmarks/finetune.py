"""Fine-tuning against training from scratch, side by side in one run, for the same wall-clock
budgets on the same new text.

    python benchmarks/finetune.py                                  # parent 300 s; budgets 30, 120, 600 s
    python benchmarks/finetune.py --budgets 30,120 --parent-time 120

A parent model (the `small` preset, 2x256) is trained on the bundled tiny-shakespeare for
--parent-time seconds. Then, for each new corpus and budget, one run fine-tunes it
(`charrnn train NEW --init-from PARENT --time-limit B`) and another trains a model of the
same size from scratch (`charrnn train NEW --preset small --time-limit B`). Both are
evaluated on the new corpus's whole val split, the same way; the fine-tuned run's own
evaluation before its first step is shown too.

The new corpora are real, freely installable English and German text, Debian's fortune
files (`apt-get install fortunes fortunes-de`):
- English: the people, wisdom, literature, humorists and fortunes files (336 KB), which hold
  characters tiny-shakespeare lacks (digits, quotes, tabs);
- German: the witze and unfug files (315 KB), which add umlauts, ß and more.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import charrnn
from charrnn.data import iter_text
from charrnn.runs import resolve_checkpoint

FORTUNES = Path("/usr/share/games/fortunes")
CORPORA = {
    "english fortunes": [FORTUNES / n for n in ("people", "wisdom", "literature", "humorists", "fortunes")],
    "german fortunes": [FORTUNES / "de" / n for n in ("witze", "unfug")],
}
COMMON = dict(device="cpu", precision="fp32")


def build(name: str, files: list[Path], root: Path) -> Path:
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"{missing[0]} is missing: apt-get install fortunes fortunes-de")
    out = root / (name.replace(" ", "-") + ".txt")
    out.write_text("".join("".join(iter_text(f)) for f in files), encoding="utf-8")
    return out


def first_eval(run_dir: Path) -> float:
    """The val loss of a run's first evaluation (a fine-tuned run's is before its first step)."""
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        m = json.loads(line)
        if "val_loss" in m and "train_loss" not in m:
            return m["val_loss"]
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", default="30,120,600", help="seconds of training, comma-separated")
    ap.add_argument("--parent-time", type=float, default=300, help="seconds the parent trains on tiny-shakespeare")
    a = ap.parse_args()
    budgets = [float(b) for b in a.budgets.split(",")]
    root = Path(tempfile.mkdtemp(prefix="charrnn-finetune-"))
    texts = {name: build(name, files, root) for name, files in CORPORA.items()}

    t0 = time.perf_counter()
    parent = charrnn.train("tinyshakespeare", preset="small", time_limit=a.parent_time, out=root / "parent", **COMMON)
    print(
        f"parent: small (2x256) on tiny-shakespeare, {parent.step} steps in {parent.elapsed_s:.0f} s, "
        f"val loss {parent.best_val_loss:.4f}; torch {torch.__version__}, {torch.get_num_threads()} threads",
        flush=True,
    )
    rows = []
    for name, text in texts.items():
        for budget in budgets:
            tag = f"{name.split()[0]}-{budget:g}"
            tuned = charrnn.train(text, init_from=parent.run_dir, time_limit=budget, out=root / f"ft-{tag}", **COMMON)
            scratch = charrnn.train(text, preset="small", time_limit=budget, out=root / f"scratch-{tag}", **COMMON)
            ckpt = torch.load(resolve_checkpoint(tuned.run_dir, "last.pt"), weights_only=True)
            row = (name, budget, first_eval(tuned.run_dir), tuned, scratch, ckpt["parent"]["new_chars"])
            rows.append(row)
            print(
                f"{name:17} {budget:>5.0f} s  fine-tuned {tuned.val_loss:.4f} ({tuned.step} steps)  "
                f"scratch {scratch.val_loss:.4f} ({scratch.step} steps)",
                flush=True,
            )

    print()
    print(f"{'new text':17}{'chars':>10}{'new':>5}{'budget':>8}{'start':>8}{'fine-tuned':>12}{'scratch':>9}{'gain':>8}")
    for name, budget, start, tuned, scratch, new in rows:
        chars = len(texts[name].read_text(encoding="utf-8"))
        print(
            f"{name:17}{chars:>10,}{new:>5}{budget:>7.0f}s{start:>8.4f}{tuned.val_loss:>12.4f}"
            f"{scratch.val_loss:>9.4f}{scratch.val_loss - tuned.val_loss:>8.4f}"
        )
    won = sum(r[3].val_loss < r[4].val_loss for r in rows)
    print(f"fine-tuning is ahead in {won} of {len(rows)}; val loss in nats/char on each text's val split")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
