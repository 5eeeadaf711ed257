"""Word tokens and capped vocabularies against plain characters, for the same CPU time.

    python benchmarks/word_level.py --jobs 2        # every run below, two at a time (about 40 min)
    python benchmarks/word_level.py --budgets 20,60 --jobs 2      # a quick look

Every run is `charrnn train CORPUS --preset P --time-limit T --seed 0 --quiet` in a process of
its own with one thread, pinned to a core of its own (`--jobs` runs at once, on cores 0, 1...),
the preset being the one `--preset auto` picks for tiny-shakespeare on the 2-core CPU at that
budget (tiny up to 120 s, small beyond).

1. tiny-shakespeare, characters against words (`--tokens word --max-vocab 8000`, with the
   `--softmax full` and with `--softmax adaptive`, the default there), at the largest budget. The models are
   scored on the same text, the character corpus's val split (its last 10%), in bits per
   character of it (`eval --file`). A few lines of samples from each follow.
2. A text of many characters: Debian's Chinese fortunes (`apt install fortunes-zh`;
   /usr/share/games/fortunes/chinese, 1.1 M characters, 5,965 distinct), with --min-count 1, 2,
   3 and 5 (at the largest budget 1 and 5 only, `--top-min-counts`), with a full softmax and
   with `--softmax adaptive` (`--adaptive-min-counts`); and tiny-shakespeare's characters at the
   same budgets, for the speed ratio. A capped vocabulary reads its rare characters as one symbol, <unk>, whose
   loss is not the cost of writing the character out; so the val figures come twice: as
   measured, and with every <unk> of the val text charged log2(characters left out) bits
   more, as if the model then wrote the character from a uniform choice.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from charrnn import api
from charrnn.corpus.bundled import text_path
from charrnn.corpus.store import Corpus
from charrnn.training import checkpoint

CJK = Path("/usr/share/games/fortunes/chinese")
LN2 = math.log(2)


@dataclass
class Run:
    name: str
    corpus: str
    budget: int
    flags: list[str] = field(default_factory=list)
    out: Path | None = None

    @property
    def preset(self) -> str:
        return "tiny" if self.budget <= 120 else "small"


def train(run: Run, core: int) -> None:
    cmd = [sys.executable, "-m", "charrnn", "train", run.corpus, "--preset", run.preset]
    cmd += ["--time-limit", str(run.budget), "--seed", "0", "--quiet", "--out", str(run.out), *run.flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    print(f"core {core}: {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
    subprocess.run(cmd, env=env, check=True, preexec_fn=lambda: os.sched_setaffinity(0, {core}))


def run_all(runs: list[Run], jobs: int) -> None:
    cores = sorted(os.sched_getaffinity(0))[:jobs]
    free = list(cores)
    import threading

    lock = threading.Lock()

    def one(run: Run) -> None:
        if run.out.exists():  # trained, or being trained by another call with the same --work
            return
        with lock:
            core = free.pop(0)
        try:
            train(run, core)
        finally:
            with lock:
                free.append(core)

    with ThreadPoolExecutor(len(cores)) as pool:
        for f in [pool.submit(one, r) for r in sorted(runs, key=lambda r: -r.budget)]:
            f.result()


def speed(run: Run) -> tuple[int, float, float]:
    """Steps, seconds of training, and steps per second."""
    ckpt = checkpoint.load(run.out / "last.pt")
    return ckpt["step"], ckpt["elapsed_s"], ckpt["step"] / ckpt["elapsed_s"]


def unk_charged(run: Run) -> tuple[float, float, float, int]:
    """The val loss in bits per character as measured, and with each <unk> of the val text
    charged log2(characters left out) more; the coverage, and the vocabulary's size."""
    ckpt = checkpoint.load(run.out / "best.pt")
    corpus = Corpus.load(ckpt["corpus"]["path"])
    ev = api.evaluate(run.out / "best.pt", device="cpu")
    vocab, tokens = corpus.vocab, corpus.meta.get("tokens")
    if vocab.unk is None:
        return ev.bits, ev.bits, 1.0, len(vocab)
    targets = corpus.split("val")[1:]
    unks = int((targets == vocab.unk).sum())
    dropped = tokens["distinct"] - (len(vocab) - 1)
    charged = (ev.loss * len(targets) + unks * math.log(dropped)) / len(targets) / LN2
    return ev.bits, charged, tokens["coverage"], len(vocab)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budgets", default="60,600", help="seconds of training per run, comma-separated")
    ap.add_argument("--min-counts", default="1,2,3,5", help="with a full softmax, below the largest budget")
    ap.add_argument("--top-min-counts", default="1,5", help="with a full softmax, at the largest budget")
    ap.add_argument("--adaptive-min-counts", default="1,5", help="with --softmax adaptive, at every budget")
    ap.add_argument(
        "--jobs", type=int, default=1, help="runs at once, each on a core of its own (or several calls with the "
        "same --work, each pinned to its own cores: each takes the runs not started yet)"
    )  # fmt: skip
    ap.add_argument("--work", type=Path, default=None, help="where the runs go (default: a temporary directory)")
    ap.add_argument(
        "--train-up-to", type=int, default=None, help="train only the runs of at most this budget, then stop "
        "(a later call with the same --work trains the rest and prints the tables)"
    )  # fmt: skip
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    ints = lambda s: [int(c) for c in s.split(",") if c]  # noqa: E731
    if not CJK.exists():
        raise SystemExit(f"{CJK} is missing: apt install fortunes-zh")
    work = args.work or Path(tempfile.mkdtemp(prefix="word-level-"))
    print(f"runs in {work}", file=sys.stderr)
    top = max(budgets)

    runs: dict[tuple, Run] = {}
    for b in budgets:
        runs["ts", "char", b] = Run(f"tiny-shakespeare, characters, {b} s", "tinyshakespeare", b)
        for softmax, counts in (
            ("full", ints(args.top_min_counts if b == top else args.min_counts)),
            ("adaptive", ints(args.adaptive_min_counts)),
        ):
            for c in counts:
                flags = (["--min-count", str(c)] if c > 1 else []) + ["--softmax", softmax]
                name = f"Chinese, --min-count {c}, {softmax}, {b} s"
                runs["cjk", softmax, c, b] = Run(name, str(CJK), b, flags)
    words = ["--tokens", "word", "--max-vocab", "8000"]
    runs["ts", "word", top] = Run(
        f"tiny-shakespeare, words, full, {top} s", "tinyshakespeare", top, [*words, "--softmax", "full"]
    )
    runs["ts", "word-adaptive", top] = Run(
        f"tiny-shakespeare, words, adaptive, {top} s", "tinyshakespeare", top, [*words, "--softmax", "adaptive"]
    )
    for key, run in runs.items():
        run.out = work / "-".join(map(str, key))
    todo = [r for r in runs.values() if not r.out.exists()]
    if args.train_up_to is not None:
        run_all([r for r in todo if r.budget <= args.train_up_to], args.jobs)
        return
    run_all(todo, args.jobs)

    # 1. characters against words on the same val text
    char_run, word_run, adaptive_run = (
        runs["ts", "char", top],
        runs["ts", "word", top],
        runs["ts", "word-adaptive", top],
    )
    char_corpus = Corpus.load(checkpoint.load(char_run.out / "best.pt")["corpus"]["path"])
    val_text = work / "tinyshakespeare-val.txt"
    val_text.write_text(char_corpus.vocab.decode(char_corpus.split("val")), encoding="utf-8")
    print(f"\n1. tiny-shakespeare, {top} s of one core each, scored on the character corpus's val split")
    print(f"   ({len(val_text.read_text(encoding='utf-8')):,} characters of {text_path('tinyshakespeare').name})\n")
    print(f"{'model':<44} {'vocab':>6} {'steps':>6} {'steps/s':>8} {'val bits/char':>14} {'per token':>22}")
    for run in (char_run, word_run, adaptive_run):
        steps, _, sps = speed(run)
        ev = api.evaluate(run.out / "best.pt", file=val_text, device="cpu")
        model = api.load(run.out / "best.pt")
        per = f"ppl {ev.perplexity:,.1f}" if ev.units.word else "-"
        print(f"{run.name:<44} {len(model.vocab):>6} {steps:>6} {sps:>8.2f} {ev.bits:>14.4f} {per:>22}")
    word_cov = Corpus.load(checkpoint.load(word_run.out / "best.pt")["corpus"]["path"]).meta["tokens"]["coverage"]
    print(f"(the word corpus's coverage: {word_cov:.2%} of its tokens are in the vocabulary; the rest are <unk>)")
    for run, length in ((char_run, 300), (word_run, 90), (adaptive_run, 90)):
        text = api.load(run.out / "best.pt").generate("ROMEO:", length=length, seed=1, temp=0.8)
        print(f"\n--- {run.name}, `sample --prime ROMEO: --length {length} --seed 1` ---\n{text}")

    # 2. a capped vocabulary on text of many characters
    print(f"\n2. {CJK} against tiny-shakespeare, characters, one core each\n")
    head = f"{'run':<44} {'vocab':>6} {'coverage':>9} {'steps':>6} {'steps/s':>8} {'vs ts':>6}"
    print(head + f" {'val bits/char':>14} {'<unk> charged':>14}")
    for b in budgets:
        ts_steps, _, ts_sps = speed(runs["ts", "char", b])
        ts_bits = unk_charged(runs["ts", "char", b])[0]
        ts = runs["ts", "char", b]
        print(f"{ts.name:<44} {65:>6} {1:>9.2%} {ts_steps:>6} {ts_sps:>8.2f} {1:>6.2f} {ts_bits:>14.4f} {'':>14}")
        for run in [r for key, r in runs.items() if key[0] == "cjk" and key[-1] == b]:
            steps, _, sps = speed(run)
            raw, charged, cov, size = unk_charged(run)
            print(
                f"{run.name:<44} {size:>6} {cov:>9.2%} {steps:>6} {sps:>8.2f} {ts_sps / sps:>6.2f} "
                f"{raw:>14.4f} {charged:>14.4f}"
            )
    print("\nvs ts: tiny-shakespeare's steps per second over this run's, at the same budget and preset")


if __name__ == "__main__":
    main()
