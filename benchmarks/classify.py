"""Classifying words by language: `charrnn classify` against the PyTorch tutorial "NLP From
Scratch: Classifying Names with a Character-Level RNN" (the classic version), side by side.

    python benchmarks/classify.py                          # builds the data in a temp dir, 100,000 iterations
    python benchmarks/classify.py --data /tmp/wordlang     # builds it there once, then reuses it
    python benchmarks/classify.py --data /tmp/wordlang --iters 3000 --skip-charrnn

The data is the language of a word, from Debian's word lists (/usr/share/dict), sampled to the
tutorial's size and skew: its 18 class sizes, biggest first, go to the languages in LANGUAGES
order, so English plays the part of the tutorial's Russian. Words found in more than one
language's list (ignoring case) are dropped as ambiguous. 10% of each language is held out
for the test, in the tutorial's layout: train/<Language>.txt and test/<Language>.txt.

The baseline is the tutorial's code, written again here: ASCII letters only, one-hot input,
the two-Linear RNN with 128 hidden units, NLLLoss, plain SGD at 0.005 on one random example
per iteration. charrnn runs `python -m charrnn classify train` with its defaults in a child
process. Prints the training wall-clock time, test accuracy and macro-F1 of each, of always
guessing the biggest class, and the time ratio.
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
from collections import Counter
from pathlib import Path

import torch
from torch import nn

DICT = Path("/usr/share/dict")
APT = (
    "apt-get install -y wamerican wngerman wfrench witalian wspanish wportuguese wdutch wpolish wdanish "
    "wswedish wnorwegian"
)

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
# The tutorial's 18 class sizes, biggest first (Russian 9408 ... Vietnamese 73).
SIZES = [9408, 3668, 2000, 991, 724, 709, 519, 298, 297, 277, 268, 232, 203, 139, 100, 94, 74, 73]

ALL_LETTERS = string.ascii_letters + " .,;'"
N_LETTERS = len(ALL_LETTERS)  # 57
N_HIDDEN = 128


def read_list(path: Path) -> list[str]:
    """The words of one list. Most are UTF-8; swedish and bokmaal are ISO-8859-1."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    words = {}
    for w in text.splitlines():
        w = w.strip()
        if len(w) < 2 or w.endswith("'s") or any(c.isdigit() or c.isspace() for c in w):
            continue
        if not all(c.isalpha() or c in "'-" for c in w):
            continue  # abbreviations and symbols: "a.s.", "C++", "m²"
        words.setdefault(w.lower(), w)  # the first spelling of each, so "a" and "A" are one word
    return list(words.values())


def build_dataset(out_dir: Path, seed: int) -> None:
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


def read_split(d: Path) -> dict[str, list[str]]:
    return {f.stem: f.read_text(encoding="utf-8").split() for f in sorted(d.glob("*.txt"))}


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


def charrnn_classify(train_dir: Path, test_dir: Path, work_dir: Path) -> tuple[float, float, float, float]:
    """(training seconds, seconds of the whole command, test accuracy, test macro-F1) of
    `charrnn classify` with its defaults. The training seconds are the ones the command reports
    for its training loop, as the baseline's time is its loop's; the whole command adds
    starting Python and torch and reading the data."""
    run = work_dir / "run"
    t0 = time.perf_counter()
    train = [sys.executable, "-m", "charrnn", "classify", "train", str(train_dir), "--out", str(run), "--quiet"]
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


def majority(train_dir: Path, test_dir: Path) -> tuple[float, float]:
    """(accuracy, macro-F1) of always guessing the biggest training class."""
    biggest = max(read_split(train_dir).items(), key=lambda kv: len(kv[1]))[0]
    gold = [lang for lang, words in read_split(test_dir).items() for _ in words]
    return gold.count(biggest) / len(gold), macro_f1(gold, [biggest] * len(gold))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="the data set's folder, built there if empty (default a temp dir)")
    ap.add_argument("--iters", type=int, default=100_000, help="the baseline's training iterations")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--skip-charrnn", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="charrnn-classify-"))
    data = (a.data or work / "data").resolve()
    train_dir, test_dir = data / "train", data / "test"
    if list(train_dir.glob("*.txt")) and list(test_dir.glob("*.txt")):
        print(f"reusing the data set in {data}")
    else:
        build_dataset(data, a.seed)
        print(f"built the data set in {data}")
    train, test = read_split(train_dir), read_split(test_dir)
    print(f"{'language':12}{'train':>7}{'test':>6}")
    for lang in sorted(train, key=lambda k: -len(train[k])):
        print(f"{lang:12}{len(train[lang]):>7,}{len(test.get(lang, [])):>6,}")
    print(f"{'all':12}{sum(map(len, train.values())):>7,}{sum(map(len, test.values())):>6,}")

    rows = []
    acc, f1 = majority(train_dir, test_dir)
    rows.append(("majority class", None, None, acc, f1))
    if not a.skip_baseline:
        print(f"training the tutorial's RNN, {a.iters:,} iterations", file=sys.stderr)
        seconds, acc, f1 = tutorial_baseline(train_dir, test_dir, a.iters, a.seed)
        rows.append((f"tutorial RNN, {a.iters:,} iters", seconds, seconds, acc, f1))
    if not a.skip_charrnn:
        print("training charrnn classify", file=sys.stderr)
        rows.append(("charrnn classify", *charrnn_classify(train_dir, test_dir, work)))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'':30}{'train s':>9}{'command s':>11}{'accuracy':>10}{'macro-F1':>10}")
    for name, seconds, whole, acc, f1 in rows:
        t, w = ("", "") if seconds is None else (f"{seconds:.1f}", f"{whole:.1f}")
        print(f"{name:30}{t:>9}{w:>11}{acc:>10.3f}{f1:>10.3f}")
    if not a.skip_baseline and not a.skip_charrnn:
        print(f"time ratio tutorial / charrnn: {rows[1][1] / rows[2][1]:.1f}x training, "
              f"{rows[1][1] / rows[2][2]:.1f}x with the whole command")  # fmt: skip


if __name__ == "__main__":
    main()
