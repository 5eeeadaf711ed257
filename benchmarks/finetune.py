"""Fine-tuning against training from scratch, side by side in one run, for the same wall-clock
budgets on the same new text.

    python benchmarks/finetune.py                                  # parent 300 s; budgets 30, 120, 600 s
    python benchmarks/finetune.py --budgets 30,120 --parent-time 120
    python benchmarks/finetune.py --parent RUN --lr-fracs 0.1,0.3,1 --budgets 120 --texts english

With --lr-fracs it compares fine-tuning recipes instead: the peak learning rate at each
fraction of the parent's (the default recipe uses FINETUNE_LR_FRAC), without the scratch runs.

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
from charrnn.corpus.text import iter_text
from charrnn.training.runs import resolve_checkpoint

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
    ap.add_argument("--parent", type=Path, help="a parent run directory to use instead of training one")
    ap.add_argument("--texts", default="english,german", help="which new texts: english, german")
    ap.add_argument("--lr-fracs", help="compare fine-tuning at these fractions of the parent's peak rate")
    a = ap.parse_args()
    budgets = [float(b) for b in a.budgets.split(",")]
    root = Path(tempfile.mkdtemp(prefix="charrnn-finetune-"))
    chosen = a.texts.split(",")
    texts = {name: build(name, files, root) for name, files in CORPORA.items() if name.split()[0] in chosen}

    t0 = time.perf_counter()
    if a.parent is None:
        parent = charrnn.train(
            "tinyshakespeare", preset="small", time_limit=a.parent_time, out=root / "parent", **COMMON
        )
        parent_dir, parent_loss, what = (
            parent.run_dir,
            parent.best_val_loss,
            f"{parent.step} steps in {parent.elapsed_s:.0f} s",
        )
    else:
        ckpt = torch.load(resolve_checkpoint(a.parent, "best.pt"), weights_only=True)
        parent_dir, parent_loss, what = a.parent, ckpt["best_val_loss"], f"{ckpt['step']} steps ({a.parent})"
    print(
        f"parent: small (2x256) on tiny-shakespeare, {what}, val loss {parent_loss:.4f}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        flush=True,
    )
    if a.lr_fracs:
        compare_rates(parent_dir, texts, budgets, [float(f) for f in a.lr_fracs.split(",")], root)
        return
    rows = []
    for name, text in texts.items():
        for budget in budgets:
            tag = f"{name.split()[0]}-{budget:g}"
            tuned = charrnn.train(text, init_from=parent_dir, time_limit=budget, out=root / f"ft-{tag}", **COMMON)
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


def compare_rates(parent_dir: Path, texts: dict[str, Path], budgets: list[float], fracs: list[float], root: Path):
    """Fine-tuning at several peak rates (fractions of the parent's), side by side."""
    parent_lr = torch.load(resolve_checkpoint(parent_dir, "best.pt"), weights_only=True)["train_config"]["lr"]
    print(f"{'new text':17}{'budget':>8}" + "".join(f"{f'lr x{f:g}':>11}" for f in fracs))
    for name, text in texts.items():
        for budget in budgets:
            losses = []
            for frac in fracs:
                out = root / f"rate-{name.split()[0]}-{budget:g}-{frac:g}"
                r = charrnn.train(text, init_from=parent_dir, time_limit=budget, lr=parent_lr * frac, out=out, **COMMON)
                losses.append(r.val_loss)
            print(f"{name:17}{budget:>7.0f}s" + "".join(f"{v:>11.4f}" for v in losses), flush=True)


if __name__ == "__main__":
    main()
