"""Conditional generation: a model trained with labels against the same model without them,
on words of eleven languages from Debian's word lists (/usr/share/dict), side by side.

    python benchmarks/labels.py                              # 3,000 words a language, 3,000 steps each
    python benchmarks/labels.py --words 1000 --steps 500     # a quick look

The data: for each language, words that occur in its list only (ignoring case), sampled with
a fixed seed into two disjoint sets: one for the language models (gen/<Language>.txt, a word
a line) and one for a classifier (cls/<Language>.txt). The words one model learns from are
never the classifier's.

1. Val loss. `charrnn train gen --doc-sep '\\n' --labels from-file` (preset small) trains the
   conditional model. The unconditional one trains on a copy of the very same corpus with its
   labels removed: the same documents, in the same order, with the same splits, the same
   settings, seed and number of steps. Both are evaluated on the same val words.
2. Does the label steer the text? `charrnn classify train cls` (its defaults) learns to tell
   the languages apart. It is scored on the conditional corpus's real val words (what a
   perfect generator would reach), then on `--samples` words the conditional model writes for
   each language (`sample --label L --documents N`): the share it attributes to L. Chance is
   1 in 11. Also printed: the share of generated words that are words of the training lists
   (copied rather than made up).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/classify.py: the word lists

from classify import APT, DICT, LANGUAGES, read_list  # noqa: E402

from charrnn import api  # noqa: E402
from charrnn.classify.config import ClassifierSettings  # noqa: E402
from charrnn.classify.predict import load_classifier  # noqa: E402
from charrnn.classify.train import train_classifier  # noqa: E402
from charrnn.config import SampleConfig
from charrnn.corpus.documents import EOD  # noqa: E402
from charrnn.corpus.store import Corpus  # noqa: E402


def build(out: Path, words: int, seed: int) -> None:
    missing = [name for _, name in LANGUAGES if not (DICT / name).exists()]
    if missing:
        raise SystemExit(f"missing word lists in {DICT} ({', '.join(missing)}): run `{APT}`")
    lists = {lang: read_list(DICT / name) for lang, name in LANGUAGES}
    seen = Counter(w.lower() for ws in lists.values() for w in ws)
    rng = random.Random(seed)
    for d in ("gen", "cls"):
        (out / d).mkdir(parents=True, exist_ok=True)
    for lang, _ in LANGUAGES:
        own = sorted(w for w in lists[lang] if seen[w.lower()] == 1)
        picked = rng.sample(own, min(2 * words, len(own)))
        half = len(picked) // 2
        (out / "gen" / f"{lang}.txt").write_text("".join(w + "\n" for w in picked[:half]), encoding="utf-8")
        (out / "cls" / f"{lang}.txt").write_text("".join(w + "\n" for w in picked[half:]), encoding="utf-8")


def val_words(corpus: Corpus) -> tuple[list[str], list[str]]:
    """The real words of the val split, with their labels."""
    ids = corpus.split("val")
    labels = corpus.label_reader("val")[0 : len(ids)]
    words, langs, start = [], [], 0
    text = corpus.vocab.decode(ids)
    for i, ch in enumerate(text):
        if ch == EOD:
            if i > start:
                words.append(text[start:i])
                langs.append(corpus.labels[int(labels[i])])
            start = i + 1
    return words, langs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="Build the word sets here (default: a temporary directory).")
    ap.add_argument(
        "--words", type=int, default=3000, help="Words a language for the models, and as many for the classifier."
    )
    ap.add_argument("--steps", type=int, default=3000, help="Training steps of each language model.")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--samples", type=int, default=200, help="Words generated a language.")
    ap.add_argument("--temp", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=1337)
    args = ap.parse_args()

    root = args.data or Path(tempfile.mkdtemp(prefix="charrnn-labels-"))
    if not (root / "gen").is_dir():
        build(root, args.words, args.seed)
    cond_corpus = api.preprocess([root / "gen"], out=root / "corpus-labels", doc_sep="\n", labels="from-file")
    plain_dir = root / "corpus-plain"  # the same corpus without its labels
    shutil.rmtree(plain_dir, ignore_errors=True)
    shutil.copytree(cond_corpus.path, plain_dir)
    (plain_dir / "labels.bin").unlink()
    meta = json.loads((plain_dir / "meta.json").read_text(encoding="utf-8"))
    meta.pop("labels")
    (plain_dir / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    m = cond_corpus.meta
    print(
        f"data: {m['documents']:,} words of {len(cond_corpus.labels)} languages, {m['chars']:,} symbols; "
        f"val {m['split_sizes']['val']:,} symbols",
        file=sys.stderr,
    )

    runs = {}
    for name, corpus in (("conditional", cond_corpus.path), ("unconditional", plain_dir)):
        out = root / f"run-{name}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        result = api.train(corpus, out=out, preset=args.preset, max_steps=args.steps, seed=args.seed, eval_every=500)
        runs[name] = (result, time.perf_counter() - t0)
        print(f"{name}: val {result.best_val_loss:.4f} in {runs[name][1]:.0f} s", file=sys.stderr)

    t0 = time.perf_counter()
    clf_run = train_classifier(root / "cls", ClassifierSettings(max_epochs=5), out=root / "run-classifier")
    clf_seconds = time.perf_counter() - t0
    clf = load_classifier(clf_run.checkpoint)

    def attributed(words: list[str], wanted: list[str]) -> float:
        predicted = clf.predict(words, unknown="skip")
        return sum(p[0][0] == w for p, w in zip(predicted, wanted, strict=True)) / len(words)

    real, real_langs = val_words(cond_corpus)
    real_share = attributed(real, real_langs)

    model = api.load(runs["conditional"][0].run_dir)
    known = {w for f in (root / "gen").glob("*.txt") for w in f.read_text(encoding="utf-8").split()}
    per_lang, generated, wanted = [], [], []
    for i, lang in enumerate(model.labels):
        config = SampleConfig(
            label=lang, documents=args.samples, doc_separator="\n", temp=args.temp, seed=args.seed + i, max_length=40
        )
        words = [w for w in "".join(p[0] for p in model.pieces(config)).split("\n") if w]
        share = attributed(words, [lang] * len(words))
        copied = sum(w in known for w in words) / len(words)
        per_lang.append((lang, len(words), share, copied, words[:6]))
        generated += words
        wanted += [lang] * len(words)
    gen_share = attributed(generated, wanted)

    cond, plain = runs["conditional"][0], runs["unconditional"][0]
    print(f"\n{args.steps} steps of preset {args.preset} each; {m['documents']:,} words, {len(model.labels)} languages")
    print(f"{'model':<15} {'val nats/char':>14} {'seconds':>8}")
    for name, (result, seconds) in runs.items():
        print(f"{name:<15} {result.best_val_loss:>14.4f} {seconds:>8.0f}")
    print(
        f"conditional - unconditional: {cond.best_val_loss - plain.best_val_loss:+.4f} nats/char "
        f"({100 * (1 - cond.best_val_loss / plain.best_val_loss):.1f}% lower)"
    )
    print(f"\nclassifier ({clf_seconds:.0f} s, its own val accuracy {clf_run.val_accuracy:.3f}) on:")
    print(f"  real val words of the corpus:      {real_share:.3f} attributed to their language ({len(real):,} words)")
    print(
        f"  words written with --label:        {gen_share:.3f} attributed to the label asked for "
        f"({len(generated):,} words); chance {1 / len(model.labels):.3f}"
    )
    print(f"\n{'label':<12} {'words':>6} {'to label':>9} {'copied':>7}  examples")
    for lang, n, share, copied, examples in per_lang:
        print(f"{lang:<12} {n:>6} {share:>9.3f} {copied:>7.3f}  {' '.join(examples)}")


if __name__ == "__main__":
    main()
