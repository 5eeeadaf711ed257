"""`charrnn classify` side by side with a character n-gram baseline on data sets a Debian
machine has, and, on the names set, with the PyTorch tutorial "NLP From Scratch: Classifying
Names with a Character-Level RNN" (the classic version).

    python benchmarks/classify.py                          # every set, in a temp dir
    python benchmarks/classify.py --data /tmp/classify     # builds the sets there once, then reuses them
    python benchmarks/classify.py --data /tmp/classify --sets names --tutorial-iters 0 -- --hidden 128

It needs Debian's word lists and fortunes (one line says so when they are missing):

    apt-get install -y wamerican wngerman wfrench witalian wspanish wportuguese wdutch wpolish \
        wdanish wswedish wnorwegian fortunes fortunes-min fortunes-de fortunes-es fortunes-it

The sets, each written as train/<Label>.txt and test/<Label>.txt, one example a line:
- names: the language of a word, from the word lists (/usr/share/dict), sampled to the
  tutorial's size and skew: its 18 class sizes, biggest first, go to the languages in LANGUAGES
  order, so English plays the part of the tutorial's Russian. Words found in more than one
  language's list (ignoring case) are dropped as ambiguous. 10% of each language is the test.
- fortune-topics: the category of an English fortune (TOPICS: the file of `fortunes` it is in),
  one fortune per example, its line breaks made spaces; 20% of each category is the test.
- fortune-languages: the language of a fortune (English from `fortunes`, German, Spanish and
  Italian from `fortunes-de`, `-es`, `-it`), as above.

On every set, the same training lines and test lines go to:
- majority: always the biggest training label;
- naive Bayes: multinomial, over the character 1-4-grams of the text (with a space at each
  end), its smoothing picked on 10% of the training lines held out, as charrnn picks its epoch;
- linear: a fastText-style model, the mean of hashed 1-4-gram embeddings and a linear layer,
  trained with Adam, its epoch picked on those held-out lines;
- charrnn: `python -m charrnn classify train` in a child process with its defaults and
  `--time-limit 60` (arguments after `--` are added), then `classify eval --json` on the test;
- on names only, the tutorial's recipe written again here: ASCII letters only, one-hot input,
  the two-Linear RNN with 128 hidden units, NLLLoss, plain SGD at 0.005 on one random example
  per iteration (`--tutorial-iters 0` leaves it out).

The baselines are written here with numpy and torch; charrnn does not depend on them. Prints,
per set, the training seconds (charrnn's are the ones its loop reports; "command" adds starting
Python and torch and reading the data), test accuracy and macro-F1 of each.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import subprocess
import sys
import tempfile
import time
import unicodedata
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

DICT = Path("/usr/share/dict")
FORTUNES = Path("/usr/share/games/fortunes")
APT = (
    "apt-get install -y wamerican wngerman wfrench witalian wspanish wportuguese wdutch wpolish wdanish "
    "wswedish wnorwegian fortunes fortunes-min fortunes-de fortunes-es fortunes-it"
)
SETS = ("names", "fortune-topics", "fortune-languages")
TIME_LIMIT = 60  # charrnn's --time-limit

# Language and its list in /usr/share/dict, in the order the class sizes are given out.
LANGUAGES = [
    ("English", "american-english"),
    ("German", "ngerman"),
    ("French", "french"),
    ("Spanish", "spanish"),
    ("Italian", "italian"),
    ("Portuguese", "portuguese"),
    ("Dutch", "dutch"),
    ("Polish", "polish"),
    ("Swedish", "swedish"),
    ("Danish", "danish"),
    ("Norwegian", "bokmaal"),
]
# The categories of fortune-topics: files of Debian's `fortunes` with 500 fortunes or more,
# at most TOPIC_CAP of each (the biggest have twice that)
TOPICS = ["computers", "definitions", "men-women", "people", "politics", "science", "songs-poems", "work"]
TOPIC_CAP = 700
# fortune-languages: English from these files of `fortunes`, the rest from their folders
ENGLISH = ["computers", "cookie", "definitions", "people", "politics", "science", "work", "wisdom"]
LANGUAGE_DIRS = {"German": "de", "Spanish": "es", "Italian": "it"}
LANGUAGE_CAP = 1500
TEST_FRAC = 0.2  # of each label, in the fortune sets

# The tutorial's 18 class sizes, biggest first (Russian 9408 ... Vietnamese 73).
SIZES = [9408, 3668, 2000, 991, 724, 709, 519, 298, 297, 277, 268, 232, 203, 139, 100, 94, 74, 73]

ALL_LETTERS = string.ascii_letters + " .,;'"
N_LETTERS = len(ALL_LETTERS)  # 57
N_HIDDEN = 128


def decoded(path: Path) -> str:
    """A file's text: UTF-8, or ISO-8859-1 where it is not valid UTF-8."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_list(path: Path) -> list[str]:
    """The words of one list. Most are UTF-8; swedish and bokmaal are ISO-8859-1."""
    text = decoded(path)
    words = {}
    for w in text.splitlines():
        w = w.strip()
        if len(w) < 2 or w.endswith("'s") or any(c.isdigit() or c.isspace() for c in w):
            continue
        if not all(c.isalpha() or c in "'-" for c in w):
            continue  # abbreviations and symbols: "a.s.", "C++", "m²"
        words.setdefault(w.lower(), w)  # the first spelling of each, so "a" and "A" are one word
    return list(words.values())


def build_names(out_dir: Path, seed: int) -> None:
    """Write out_dir/train/<Language>.txt and out_dir/test/<Language>.txt."""
    missing = [name for _, name in LANGUAGES if not (DICT / name).exists()]
    if missing:
        raise SystemExit(f"missing word lists in {DICT} ({', '.join(missing)}): run `{APT}`")
    lists = {}
    for lang, name in LANGUAGES:
        print(f"reading {DICT / name}", file=sys.stderr)
        lists[lang] = read_list(DICT / name)
    seen = Counter(w.lower() for words in lists.values() for w in words)
    rng = random.Random(seed)
    for d in ("train", "test"):
        (out_dir / d).mkdir(parents=True, exist_ok=True)
    for (lang, _), size in zip(LANGUAGES, SIZES, strict=False):
        words = sorted(w for w in lists[lang] if seen[w.lower()] == 1)
        words = rng.sample(words, min(size, len(words)))
        n_test = max(1, round(len(words) / 10))
        test, train = words[:n_test], words[n_test:]
        (out_dir / "train" / f"{lang}.txt").write_text("".join(w + "\n" for w in train), encoding="utf-8")
        (out_dir / "test" / f"{lang}.txt").write_text("".join(w + "\n" for w in test), encoding="utf-8")


def read_fortunes(path: Path) -> list[str]:
    """The fortunes of one file, each on one line (its line breaks and tabs made spaces)."""
    text = decoded(path)
    out = []
    for entry in re.split(r"^%$", text, flags=re.M):
        one = " ".join(entry.split())
        if len(one) >= 10:
            out.append(one)
    return out


def fortune_files(label_dirs: dict[str, list[Path]]) -> None:
    missing = sorted({str(p) for paths in label_dirs.values() for p in paths if not p.exists()})
    if missing:
        raise SystemExit(f"missing fortunes ({', '.join(missing[:3])}): run `{APT}`")


def build_fortunes(out_dir: Path, seed: int, files: dict[str, list[Path]], cap: int) -> None:
    """Write out_dir/train/<Label>.txt and out_dir/test/<Label>.txt: at most `cap` fortunes of each
    label, fortunes in two labels' files dropped, TEST_FRAC of each label held out."""
    fortune_files(files)
    texts = {label: list(dict.fromkeys(t for p in paths for t in read_fortunes(p))) for label, paths in files.items()}
    seen = Counter(t for ts in texts.values() for t in ts)
    rng = random.Random(seed)
    for d in ("train", "test"):
        (out_dir / d).mkdir(parents=True, exist_ok=True)
    for label, ts in texts.items():
        ts = rng.sample([t for t in ts if seen[t] == 1], min(cap, sum(seen[t] == 1 for t in ts)))
        n_test = round(len(ts) * TEST_FRAC)
        (out_dir / "train" / f"{label}.txt").write_text("".join(t + "\n" for t in ts[n_test:]), encoding="utf-8")
        (out_dir / "test" / f"{label}.txt").write_text("".join(t + "\n" for t in ts[:n_test]), encoding="utf-8")


def build(name: str, out_dir: Path, seed: int) -> None:
    if name == "names":
        return build_names(out_dir, seed)
    if name == "fortune-topics":
        return build_fortunes(out_dir, seed, {t: [FORTUNES / t] for t in TOPICS}, TOPIC_CAP)
    files = {"English": [FORTUNES / f for f in ENGLISH]}
    for label, sub in LANGUAGE_DIRS.items():
        d = FORTUNES / sub
        kept = [p for p in d.iterdir() if p.is_file() and p.suffix not in (".dat", ".u8")] if d.is_dir() else [d]
        files[label] = sorted(kept)
    return build_fortunes(out_dir, seed, files, LANGUAGE_CAP)


def read_split(d: Path) -> dict[str, list[str]]:
    return {f.stem: f.read_text(encoding="utf-8").splitlines() for f in sorted(d.glob("*.txt"))}


def flat(split: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """(texts, labels) of a split."""
    return [t for ts in split.values() for t in ts], [label for label, ts in split.items() for _ in ts]


def ngrams(text: str, n_max: int = 4) -> list[str]:
    """The character 1..n_max-grams of a text, with a space at each end (so that a word's start
    and end are n-grams of their own)."""
    t = f" {text} "
    return [t[i : i + n] for n in range(1, n_max + 1) for i in range(len(t) - n + 1)]


def held_out(texts: list[str], labels: list[str], seed: int) -> tuple[list[int], list[int]]:
    """(fit, val) indices: 10% of each label for picking the baselines' one setting."""
    rng = random.Random(seed)
    fit, val = [], []
    for label in sorted(set(labels)):
        idx = [i for i, x in enumerate(labels) if x == label]
        rng.shuffle(idx)
        k = max(1, len(idx) // 10) if len(idx) > 1 else 0
        val += idx[:k]
        fit += idx[k:]
    return fit, val


def naive_bayes(train: tuple[list[str], list[str]], test: list[str], seed: int) -> tuple[float, list[str]]:
    """(training seconds, test predictions) of multinomial naive Bayes over character 1-4-grams;
    its additive smoothing is picked on held-out training lines, then it is fit on all of them."""
    t0 = time.perf_counter()
    texts, labels = train
    classes = sorted(set(labels))
    y = np.array([classes.index(x) for x in labels])

    def fit(rows: list[int], alpha: float):
        index: dict[str, int] = {}
        grams = [[index.setdefault(g, len(index)) for g in ngrams(texts[i])] for i in rows]
        counts = np.zeros((len(classes), len(index)))
        for r, g in zip(rows, grams, strict=True):
            np.add.at(counts[y[r]], g, 1)
        prior = np.log(np.bincount(y[rows], minlength=len(classes)) / len(rows))
        logp = np.log(counts + alpha) - np.log(counts.sum(1, keepdims=True) + alpha * len(index))
        return index, prior, logp

    def predict(model, items: list[str]) -> list[int]:
        index, prior, logp = model
        out = []
        for t in items:
            ids = [index[g] for g in ngrams(t) if g in index]  # n-grams it never saw say nothing
            out.append(int(np.argmax(prior + logp[:, ids].sum(1))))
        return out

    fit_rows, val_rows = held_out(texts, labels, seed)
    best = max(
        (0.01, 0.03, 0.1, 0.3, 1.0),
        key=lambda a: np.mean(np.array(predict(fit(fit_rows, a), [texts[i] for i in val_rows])) == y[val_rows]),
    )
    model = fit(list(range(len(texts))), best)
    seconds = time.perf_counter() - t0
    return seconds, [classes[k] for k in predict(model, test)]


class Linear(nn.Module):
    """fastText's model over character n-grams: each n-gram hashed into one of `buckets`
    embeddings, their mean, and a linear layer to the labels."""

    def __init__(self, buckets: int, dim: int, labels: int):
        super().__init__()
        self.embed = nn.EmbeddingBag(buckets, dim, mode="mean", sparse=True)  # a step updates only its rows
        self.out = nn.Linear(dim, labels)

    def forward(self, flat_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(flat_ids, offsets))  # (B, labels)


def hashed(texts: list[str], buckets: int) -> list[torch.Tensor]:
    # crc32: a hash that stays the same from one process to the next, as Python's does not
    return [torch.tensor([zlib.crc32(g.encode("utf-8")) % buckets for g in ngrams(t)]) for t in texts]


def linear_model(
    train: tuple[list[str], list[str]], test: list[str], seed: int, epochs: int = 20
) -> tuple[float, list[str]]:
    """(training seconds, test predictions) of the fastText-style model: trained on the lines
    `held_out` keeps for fitting, with the weights of its best epoch on the others."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    texts, labels = train
    classes = sorted(set(labels))
    y = torch.tensor([classes.index(x) for x in labels])
    buckets = 1 << 18
    ids = hashed(texts, buckets)
    model = Linear(buckets, 64, len(classes))
    opts = [torch.optim.SparseAdam(model.embed.parameters(), lr=0.02), torch.optim.Adam(model.out.parameters(), 0.02)]

    def logits(rows: list[int], tensors: list[torch.Tensor]) -> torch.Tensor:
        pieces = [tensors[i] for i in rows]
        offsets = torch.tensor([0] + [len(p) for p in pieces[:-1]]).cumsum(0)
        return model(torch.cat(pieces), offsets)

    fit_rows, val_rows = held_out(texts, labels, seed)
    rng = random.Random(seed)
    best, best_state = -1.0, None
    for _ in range(epochs):
        rng.shuffle(fit_rows)
        for k in range(0, len(fit_rows), 32):
            rows = fit_rows[k : k + 32]
            loss = nn.functional.cross_entropy(logits(rows, ids), y[rows])
            for opt in opts:
                opt.zero_grad()
            loss.backward()
            for opt in opts:
                opt.step()
        with torch.no_grad():
            acc = float((logits(val_rows, ids).argmax(1) == y[val_rows]).float().mean())
        if acc > best:
            best, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        test_ids = hashed(test, buckets)
        pred = logits(list(range(len(test))), test_ids).argmax(1).tolist() if test else []
    return seconds, [classes[k] for k in pred]


def macro_f1(gold: list[str], pred: list[str]) -> float:
    """The mean over the gold labels of each label's F1."""
    scores = []
    for label in sorted(set(gold)):
        tp = sum(g == label and p == label for g, p in zip(gold, pred, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, pred, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, pred, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def unicode_to_ascii(s: str) -> str:
    """The tutorial's unicodeToAscii: strip accents, keep only ALL_LETTERS."""
    return "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn" and c in ALL_LETTERS)


def line_to_tensor(line: str) -> torch.Tensor:
    tensor = torch.zeros(len(line), 1, N_LETTERS)
    for i, letter in enumerate(line):
        tensor[i][0][ALL_LETTERS.find(letter)] = 1
    return tensor


class TutorialRNN(nn.Module):
    """The tutorial's RNN: the next hidden state and the output both from input + hidden."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.i2h = nn.Linear(input_size + hidden_size, hidden_size)
        self.i2o = nn.Linear(input_size + hidden_size, output_size)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, input: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        combined = torch.cat((input, hidden), 1)
        hidden = self.i2h(combined)
        output = self.softmax(self.i2o(combined))
        return output, hidden

    def init_hidden(self) -> torch.Tensor:
        return torch.zeros(1, self.hidden_size)


def tutorial_baseline(train_dir: Path, test_dir: Path, iters: int, seed: int) -> tuple[float, float, float]:
    """(training seconds, test accuracy, test macro-F1) of the tutorial's recipe."""
    random.seed(seed)
    torch.manual_seed(seed)
    category_lines = {lang: [unicode_to_ascii(w) for w in words] for lang, words in read_split(train_dir).items()}
    categories = list(category_lines)
    rnn = TutorialRNN(N_LETTERS, N_HIDDEN, len(categories))
    criterion = nn.NLLLoss()
    learning_rate = 0.005

    t0 = time.perf_counter()
    for _ in range(iters):
        # randomTrainingExample: a category, then a line of it, each uniformly
        category = random.choice(categories)
        line = random.choice(category_lines[category])
        category_tensor = torch.tensor([categories.index(category)], dtype=torch.long)
        line_tensor = line_to_tensor(line)
        hidden = rnn.init_hidden()
        rnn.zero_grad()
        for i in range(line_tensor.size()[0]):
            output, hidden = rnn(line_tensor[i], hidden)
        loss = criterion(output, category_tensor)
        loss.backward()
        for p in rnn.parameters():
            p.data.add_(p.grad.data, alpha=-learning_rate)
    seconds = time.perf_counter() - t0

    gold, pred = [], []
    with torch.no_grad():
        for lang, words in read_split(test_dir).items():
            for w in words:
                line_tensor = line_to_tensor(unicode_to_ascii(w))
                hidden = rnn.init_hidden()
                for i in range(line_tensor.size()[0]):
                    output, hidden = rnn(line_tensor[i], hidden)
                gold.append(lang)
                pred.append(categories[output.argmax(1).item()])
    accuracy = sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)
    return seconds, accuracy, macro_f1(gold, pred)


def charrnn_classify(
    train_dir: Path, test_dir: Path, work_dir: Path, extra: list[str]
) -> tuple[float, float, float, float]:
    """(training seconds, seconds of the whole command, test accuracy, test macro-F1) of
    `charrnn classify train --time-limit 60` with its defaults (and `extra`). The training
    seconds are the ones the command reports for its training loop, as the baselines' are their
    loops'; the whole command adds starting Python and torch and reading the data."""
    run = work_dir / "run"
    t0 = time.perf_counter()
    train = [sys.executable, "-m", "charrnn", "classify", "train", str(train_dir), "--out", str(run), "--quiet",
             "--time-limit", str(TIME_LIMIT), *extra]  # fmt: skip
    done = subprocess.run(train, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(done.stderr)
    if done.returncode:
        raise SystemExit("`charrnn classify train` failed")
    whole = time.perf_counter() - t0
    m = re.search(r"done: \d+ epochs in ([\d.]+) s", done.stderr)
    if not m:
        raise SystemExit("`charrnn classify train` did not report its time")
    out = subprocess.run(
        [sys.executable, "-m", "charrnn", "classify", "eval", str(run), str(test_dir), "--json",
         "--out", str(work_dir / "eval.html")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    if out.returncode:
        raise SystemExit("`charrnn classify eval` failed")
    result = json.loads(out.stdout)
    return float(m[1]), whole, result["accuracy"], result["macro_f1"]


def scored(gold: list[str], pred: list[str]) -> tuple[float, float]:
    return sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold), macro_f1(gold, pred)


def run_set(name: str, data: Path, work: Path, a: argparse.Namespace) -> list[tuple]:
    """The rows of one set: (system, training s, command s, accuracy, macro-F1)."""
    train_dir, test_dir = data / "train", data / "test"
    if list(train_dir.glob("*.txt")) and list(test_dir.glob("*.txt")):
        print(f"reusing the {name} set in {data}", file=sys.stderr)
    else:
        build(name, data, a.seed)
        print(f"built the {name} set in {data}", file=sys.stderr)
    train, test = read_split(train_dir), read_split(test_dir)
    (texts, labels), (test_texts, gold) = flat(train), flat(test)
    chars = sum(map(len, texts)) / len(texts)
    print(f"\n## {name}: {len(train)} labels, {len(texts):,} train and {len(test_texts):,} test lines, "
          f"{chars:.0f} characters a line on average")  # fmt: skip
    for label in sorted(train, key=lambda k: -len(train[k])):
        print(f"  {label:14}{len(train[label]):>7,}{len(test.get(label, [])):>6,}")
    biggest = Counter(labels).most_common(1)[0][0]
    rows = [("majority class", None, None, *scored(gold, [biggest] * len(gold)))]
    if name == "names" and a.tutorial_iters:
        print(f"training the tutorial's RNN, {a.tutorial_iters:,} iterations", file=sys.stderr)
        seconds, acc, f1 = tutorial_baseline(train_dir, test_dir, a.tutorial_iters, a.seed)
        rows.append((f"tutorial RNN, {a.tutorial_iters:,} iters", seconds, seconds, acc, f1))
    for system, fn in (("naive Bayes, char 1-4-grams", naive_bayes), ("linear, char 1-4-grams", linear_model)):
        seconds, pred = fn((texts, labels), test_texts, a.seed)
        rows.append((system, seconds, None, *scored(gold, pred)))
    if not a.skip_charrnn:
        print(f"training charrnn classify on {name}", file=sys.stderr)
        (work / name).mkdir(parents=True, exist_ok=True)
        rows.append(
            (f"charrnn classify ({TIME_LIMIT} s)", *charrnn_classify(train_dir, test_dir, work / name, a.extra))
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="the sets' folder, each built there if empty (default a temp dir)")
    ap.add_argument("--sets", default=",".join(SETS), help=f"which sets, by name: {', '.join(SETS)}")
    ap.add_argument("--tutorial-iters", type=int, default=100_000, help="the tutorial's iterations (0: leave it out)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-charrnn", action="store_true")
    ap.add_argument("extra", nargs="*", help="after --: more options of `charrnn classify train`")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="charrnn-classify-"))
    root = (a.data or work / "data").resolve()
    names = [n.strip() for n in a.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        raise SystemExit(f"no set named {', '.join(unknown)}; the sets are {', '.join(SETS)}")
    tables = [(name, run_set(name, root / name, work, a)) for name in names]
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads; charrnn options: "
          f"--time-limit {TIME_LIMIT} {' '.join(a.extra)}")  # fmt: skip
    for name, rows in tables:
        print(f"\n{name:34}{'train s':>9}{'command s':>11}{'accuracy':>10}{'macro-F1':>10}")
        for system, seconds, whole, acc, f1 in rows:
            t = "" if seconds is None else f"{seconds:.1f}"
            w = "" if whole is None else f"{whole:.1f}"
            print(f"{system:34}{t:>9}{w:>11}{acc:>10.3f}{f1:>10.3f}")
        grams = [r for r in rows if "grams" in r[0]]
        ours = [r for r in rows if r[0].startswith("charrnn")]
        if grams and ours:
            best = max(grams, key=lambda r: (r[3], r[4]))  # the better baseline, by accuracy
            print(f"charrnn - {best[0]}: accuracy {ours[0][3] - best[3]:+.3f}, macro-F1 {ours[0][4] - best[4]:+.3f}")


if __name__ == "__main__":
    main()
