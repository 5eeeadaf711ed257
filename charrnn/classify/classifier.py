"""`charrnn classify`: a character-level RNN that reads a text and names its label (many-to-one).

    result = train_classifier(Path("data/names"), ClassifierSettings(), out=Path("checkpoints/names"))
    clf = load_classifier(result.checkpoint)
    clf.predict(["Dostoevsky", "Nakamura"], top=3)      # [[("Russian", 0.97), ...], ...]
    report = evaluate_classifier(result.checkpoint, Path("data/names-test"))

The model embeds each character, runs an LSTM (or GRU, or plain RNN; bidirectional if
asked) over the text, and reads the label from the last hidden state of each direction.
Training takes batches of texts of similar length, padded and packed, with AdamW; it keeps
the weights with the best validation accuracy in `best.pt`, a checkpoint like the language
models' (atomic, loaded with `weights_only=True`) marked `kind: classifier` and holding the
label set, so that neither kind of command can take the other's checkpoint by mistake.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from charrnn.classify.data import Examples, load_examples, stratified_split
from charrnn.config import MODEL_TYPES, ClassifierSettings
from charrnn.corpus.text import TextOptions
from charrnn.corpus.vocab import Vocab
from charrnn.errors import BadValueError, CheckpointError, InputError, TrainingError, first_line
from charrnn.runtime import pick_device, seed_everything
from charrnn.training import checkpoint, runs
from charrnn.values import as_dict, number

KIND = "classifier"
MARK = "classifier.json"  # in a classifier's run directory: its labels and scores (`charrnn sample` skips such runs)
BUCKET = 32  # batches of similar length are cut from this many batches' worth of shuffled texts


@dataclass(frozen=True)
class ClassifierConfig:
    vocab_size: int
    labels: int
    model: str = "lstm"  # lstm | gru | rnn
    hidden: int = 64
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # between layers and before the output layer

    def __post_init__(self):
        if self.model not in MODEL_TYPES:
            raise ValueError(f"model must be one of {', '.join(MODEL_TYPES)}, not {self.model!r}")
        for name in ("vocab_size", "labels", "hidden", "layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class CharClassifier(nn.Module):
    """Embedding, a (bi)directional recurrent stack, and a linear layer on the last states."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[config.model]
        # id 0 is padding: character i of the vocabulary is id i + 1
        self.embed = nn.Embedding(config.vocab_size + 1, config.hidden, padding_idx=0)
        self.rnn = rnn(
            config.hidden,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden * (2 if config.bidirectional else 1), config.labels)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, T), 0-padded on the right; lengths (B,) -> logits (B, labels)."""
        packed = pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)
        if isinstance(h, tuple):  # LSTM: (h, c)
            h = h[0]
        last = torch.cat([h[-2], h[-1]], dim=-1) if self.config.bidirectional else h[-1]  # the top layer
        return self.head(self.drop(last))


def _encode(vocab: Vocab, texts: list[str], unknown: str, context: str) -> list[list[int]]:
    out = []
    for i, t in enumerate(texts):
        ids = vocab.encode(t, unknown=unknown, context=context if len(texts) == 1 else f"{context} (text {i + 1})")
        out.append([j + 1 for j in ids] or [0])  # an empty text reads as one padding character
    return out


def _batch(encoded: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(e) for e in encoded])
    ids = torch.zeros(len(encoded), int(lengths.max()), dtype=torch.long)
    for row, e in enumerate(encoded):
        ids[row, : len(e)] = torch.tensor(e)
    return ids.to(device), lengths


def _batches(order: list[int], encoded: list[list[int]], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of texts of similar length: little padding, and still a random order."""
    order = order[:]
    rng.shuffle(order)
    batches = []
    span = batch_size * BUCKET
    for start in range(0, len(order), span):
        bucket = sorted(order[start : start + span], key=lambda i: len(encoded[i]))
        batches += [bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size)]
    rng.shuffle(batches)
    return batches


# --------------------------------------------------------------------------- scores


@dataclass
class Scores:
    labels: list[str]
    confusion: list[list[int]]  # [true][predicted] counts

    @property
    def total(self) -> int:
        return sum(map(sum, self.confusion))

    @property
    def accuracy(self) -> float:
        return sum(self.confusion[i][i] for i in range(len(self.labels))) / max(1, self.total)

    def per_label(self) -> list[dict]:
        rows = []
        for i, label in enumerate(self.labels):
            tp = self.confusion[i][i]
            predicted = sum(row[i] for row in self.confusion)
            support = sum(self.confusion[i])
            p = tp / predicted if predicted else 0.0
            r = tp / support if support else 0.0
            f1 = 2 * p * r / (p + r) if p + r else 0.0
            rows.append({"label": label, "precision": p, "recall": r, "f1": f1, "support": support})
        return rows

    @property
    def macro_f1(self) -> float:
        """The mean F1 over the labels that occur in the data or the predictions."""
        rows = [r for i, r in enumerate(self.per_label()) if r["support"] or any(row[i] for row in self.confusion)]
        return sum(r["f1"] for r in rows) / max(1, len(rows))


def scores(labels: list[str], truth: list[int], predicted: list[int]) -> Scores:
    confusion = [[0] * len(labels) for _ in labels]
    for t, p in zip(truth, predicted, strict=True):
        confusion[t][p] += 1
    return Scores(labels, confusion)


# --------------------------------------------------------------------------- a trained classifier


@dataclass
class Classifier:
    path: Path
    net: CharClassifier
    vocab: Vocab
    labels: list[str]
    ckpt: dict = field(repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def probabilities(self, texts: list[str], *, unknown: str = "error", batch_size: int = 256) -> torch.Tensor:
        """(N, labels) probabilities. Characters outside the vocabulary raise
        UnknownCharacterError (exit 7) unless `unknown="skip"`."""
        encoded = _encode(self.vocab, texts, unknown, "the text")
        out = []
        for start in range(0, len(encoded), batch_size):
            ids, lengths = _batch(encoded[start : start + batch_size], self.device)
            out.append(torch.softmax(self.net(ids, lengths).float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.labels))

    def predict(self, texts: list[str], *, top: int = 1, unknown: str = "error") -> list[list[tuple[str, float]]]:
        """For each text, its `top` likeliest labels with their probabilities, likeliest first."""
        probs = self.probabilities(texts, unknown=unknown)
        k = min(top, len(self.labels))
        values, idx = probs.topk(k, dim=-1) if len(texts) else (probs, probs.long())
        return [
            [(self.labels[j], float(v)) for v, j in zip(vs, js, strict=True)]
            for vs, js in zip(values, idx, strict=True)
        ]


def load_classifier(path: Path, device: str = "cpu") -> Classifier:
    """A classifier checkpoint (or a run directory: its best.pt), on `device`."""
    path = runs.resolve_checkpoint(path)
    dev = pick_device(device)
    ckpt = checkpoint.load(path, kind=KIND)
    try:
        cfg = ClassifierConfig.from_dict(ckpt["model_config"])
        labels = ckpt["labels"]
        if not isinstance(labels, list) or len(labels) != cfg.labels or not all(isinstance(x, str) for x in labels):
            raise ValueError("its label set does not match the model")
        net = CharClassifier(cfg)
        net.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"{path}: a damaged classifier checkpoint ({first_line(e)})") from None
    vocab = checkpoint.vocab(ckpt)
    if len(vocab) != cfg.vocab_size:
        raise CheckpointError(f"{path}: vocabulary of {len(vocab)} characters does not match the model's")
    return Classifier(path, net.to(dev).eval(), vocab, labels, ckpt)


# --------------------------------------------------------------------------- training


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    val_accuracy: float
    val_macro_f1: float
    elapsed_s: float
    best: bool


@dataclass
class ClassifyResult:
    run_dir: Path
    checkpoint: Path
    epochs: int
    val_accuracy: float
    val_macro_f1: float
    elapsed_s: float
    stopped: str  # max-epochs | patience | time-limit
    labels: list[str]
    examples: int
    truncated: int


@dataclass
class TrainStart:
    examples: Examples
    train: int
    val: int
    labels: list[str]
    vocab_size: int
    parameters: int
    device: str
    run_dir: Path
    batches_per_epoch: int


def train_classifier(
    data: Path,
    settings: ClassifierSettings = ClassifierSettings(),
    *,
    out: Path | None = None,
    text_col: str = "text",
    label_col: str = "label",
    opts: TextOptions = TextOptions(),
    on_start: Callable[[TrainStart], None] | None = None,
    on_batch: Callable[[int, float], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ClassifyResult:
    """Train a classifier on labelled examples (see `charrnn.classify.data`) and write
    `RUN/best.pt` (and `RUN/classifier.json`, its labels and scores). The data, the options and
    the device are all checked before the run directory is made; a run that fails before its
    first checkpoint leaves none behind. `should_stop` (Ctrl-C, say) ends the epoch early,
    validates, keeps the better weights and stops."""
    s = settings
    device = pick_device(s.device)
    examples = load_examples(data, text_col=text_col, label_col=label_col, opts=opts, max_length=s.max_length)
    train_idx, val_idx = stratified_split(examples, s.val_frac, s.seed)
    labels = examples.label_set
    label_id = {label: i for i, label in enumerate(labels)}
    y = [label_id[label] for label in examples.labels]
    vocab = Vocab.from_text("".join(examples.texts))
    encoded = _encode(vocab, examples.texts, "error", "the data")
    run_dir, created = _new_run_dir(out, Path(data))
    with _kept_only_once_saved(run_dir, created):
        seed_everything(s.seed)
        cfg = ClassifierConfig(len(vocab), len(labels), s.model, s.hidden, s.layers, s.bidirectional, s.dropout)
        net = CharClassifier(cfg).to(device)
        opt = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=0.0)
        weight = None
        if s.balance:
            counts = Counter(y[i] for i in train_idx)
            weight = torch.tensor([len(train_idx) / (len(labels) * counts.get(k, 1)) for k in range(len(labels))])
            weight = weight.to(device)
        rng = random.Random(s.seed)
        steps_per_epoch = math.ceil(len(train_idx) / s.batch_size)
        if on_start:
            params = sum(p.numel() for p in net.parameters())
            on_start(
                TrainStart(
                    examples,
                    len(train_idx),
                    len(val_idx),
                    labels,
                    len(vocab),
                    params,
                    device.type,
                    run_dir,
                    steps_per_epoch,
                )
            )
        val_batches = [val_idx[i : i + 256] for i in range(0, len(val_idx), 256)]
        meta = {
            "labels": labels,
            "vocab": vocab.chars,
            "model_config": asdict(cfg),
            "train_config": asdict(s),
            "data": {
                "source": str(data),
                "examples": len(examples),
                "train": len(train_idx),
                "val": len(val_idx),
                "counts": dict(sorted(examples.counts().items())),
                "truncated": examples.truncated,
            },
        }

        t0 = time.monotonic()
        best_acc, best_f1, stale, stopped, epoch = -1.0, 0.0, 0, "max-epochs", 0
        for epoch in range(1, s.max_epochs + 1):
            net.train()
            total, n = 0.0, 0
            out_of_time = interrupted = False
            for b, batch in enumerate(_batches(train_idx, encoded, s.batch_size, rng)):
                ids, lengths = _batch([encoded[i] for i in batch], device)
                target = torch.tensor([y[i] for i in batch], device=device)
                loss = F.cross_entropy(net(ids, lengths), target, weight=weight)
                if not torch.isfinite(loss):
                    kept = (
                        f"; {run_dir / 'best.pt'} holds the best weights so far"
                        if (run_dir / "best.pt").exists()
                        else ""
                    )
                    raise TrainingError(
                        f"training diverged in epoch {epoch} (the loss is not finite); try a lower --lr{kept}"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                total += float(loss.detach()) * len(batch)
                n += len(batch)
                if on_batch:
                    on_batch(epoch - 1 + (b + 1) / steps_per_epoch, total / n)
                if s.time_limit is not None and time.monotonic() - t0 >= s.time_limit:
                    out_of_time = True
                    break
                if should_stop is not None and should_stop():
                    interrupted = True
                    break
            predicted = _predict_ids(net, encoded, val_batches, device)
            sc = scores(labels, [y[i] for i in val_idx], predicted)
            better = sc.accuracy > best_acc
            if better:
                best_acc, best_f1, stale = sc.accuracy, sc.macro_f1, 0
                elapsed = time.monotonic() - t0
                checkpoint.save(
                    {
                        "kind": KIND,
                        **meta,
                        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                        "epoch": epoch,
                        "val_accuracy": sc.accuracy,
                        "val_macro_f1": sc.macro_f1,
                        "elapsed_s": elapsed,
                        "device": device.type,
                        **checkpoint.provenance(),
                        "python_version": platform.python_version(),
                    },
                    run_dir / "best.pt",
                )
                summary = {"labels": labels, "epoch": epoch, "val_accuracy": sc.accuracy, "val_macro_f1": sc.macro_f1}
                checkpoint.write_atomic(run_dir / MARK, (json.dumps(summary, indent=1) + "\n").encode())
            else:
                stale += 1
            if on_epoch:
                on_epoch(EpochStats(epoch, total / max(1, n), sc.accuracy, sc.macro_f1, time.monotonic() - t0, better))
            if interrupted:
                stopped = "interrupted"
                break
            if out_of_time:
                stopped = "time-limit"
                break
            if stale >= s.patience:
                stopped = "patience"
                break
        return ClassifyResult(
            run_dir,
            run_dir / "best.pt",
            epoch,
            best_acc,
            best_f1,
            time.monotonic() - t0,
            stopped,
            labels,
            len(examples),
            examples.truncated,
        )


@contextlib.contextmanager
def _kept_only_once_saved(run_dir: Path, created: bool):
    """A run that fails before its first checkpoint leaves no run directory behind (or, in an
    empty one the user named, nothing inside it)."""
    try:
        yield
    except BaseException:
        if not (run_dir / "best.pt").exists():
            if created:
                shutil.rmtree(run_dir, ignore_errors=True)
            else:
                for child in run_dir.iterdir():
                    child.unlink() if child.is_file() else shutil.rmtree(child, ignore_errors=True)
        raise


@torch.no_grad()
def _predict_ids(net: CharClassifier, encoded, batches: list[list[int]], device) -> list[int]:
    net.eval()
    out = []
    for batch in batches:
        ids, lengths = _batch([encoded[i] for i in batch], device)
        out += net(ids, lengths).argmax(dim=-1).tolist()
    return out


def _new_run_dir(out: Path | None, data: Path) -> tuple[Path, bool]:
    """The run directory, new or empty (never one that holds something already), and whether
    it was made here."""
    if out is None:  # checkpoints/classify/DATA-TIME: not a run `charrnn sample` picks
        out = runs.new_run_dir(data.stem or "data", runs.CHECKPOINTS / "classify")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadValueError(f"--out {out}: already exists and is not empty; choose a new directory")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    return out, created


# --------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    path: Path
    data: str
    scores: Scores
    confused: list[tuple[str, str, int, list[str]]]  # (true, predicted, count, examples), commonest first
    skipped_chars: int
    truncated: int

    def to_json(self) -> dict:
        return {
            "checkpoint": str(self.path),
            "data": self.data,
            "examples": self.scores.total,
            "accuracy": self.scores.accuracy,
            "macro_f1": self.scores.macro_f1,
            "per_label": self.scores.per_label(),
            "confusion": {"labels": self.scores.labels, "counts": self.scores.confusion},
            "most_confused": [{"true": t, "predicted": p, "count": n, "examples": ex} for t, p, n, ex in self.confused],
        }


def evaluate_classifier(
    path: Path,
    data: Path,
    *,
    text_col: str = "text",
    label_col: str = "label",
    opts: TextOptions = TextOptions(),
    unknown: str = "skip",
    device: str = "cpu",
) -> Evaluation:
    """Accuracy, macro-F1, per-label precision and recall, and the confusion matrix of a
    classifier on labelled examples; labels the classifier does not know are an error."""
    clf = load_classifier(path, device)
    max_length = (
        clf.ckpt.get("train_config", {}).get("max_length") if isinstance(clf.ckpt.get("train_config"), dict) else None
    )
    examples = load_examples(
        data, text_col=text_col, label_col=label_col, opts=opts, max_length=max_length, min_labels=1
    )
    unknown_labels = sorted(set(examples.labels) - set(clf.labels))
    if unknown_labels:
        shown = ", ".join(map(repr, unknown_labels[:5]))
        raise InputError(f"{data}: holds labels the classifier was not trained on: {shown}")
    skipped = sum(1 for t in examples.texts for c in t if c not in clf.vocab)
    probs = clf.probabilities(examples.texts, unknown=unknown)
    predicted = probs.argmax(dim=-1).tolist()
    index = {label: i for i, label in enumerate(clf.labels)}
    truth = [index[label] for label in examples.labels]
    sc = scores(clf.labels, truth, predicted)
    pairs: dict[tuple[int, int], list[str]] = {}
    for text, t, p in zip(examples.texts, truth, predicted, strict=True):
        if t != p:
            pairs.setdefault((t, p), []).append(text)
    confused = sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:12]
    return Evaluation(
        clf.path,
        str(data),
        sc,
        [(clf.labels[t], clf.labels[p], len(ex), ex[:6]) for (t, p), ex in confused],
        skipped,
        examples.truncated,
    )


def describe(ckpt: dict) -> list[tuple[str, str]]:
    """(label, text) rows for `charrnn info` on a classifier checkpoint."""
    mc, data = as_dict(ckpt.get("model_config")), as_dict(ckpt.get("data"))
    labels = ckpt.get("labels") if isinstance(ckpt.get("labels"), list) else []
    weights = ckpt.get("model")
    params = sum(t.numel() for t in weights.values()) if isinstance(weights, dict) else 0

    shown = ", ".join(map(str, labels[:12])) + (f", ... ({len(labels)} in all)" if len(labels) > 12 else "")
    direction = "bidirectional " if mc.get("bidirectional") else ""
    return [
        ("kind", "classifier (charrnn classify)"),
        ("model", f"{direction}{mc.get('model', '?')} {mc.get('layers', '?')} x {mc.get('hidden', '?')}"),
        ("parameters", number(params, ",")),
        ("labels", f"{len(labels)}: {shown}"),
        ("vocabulary", f"{number(len(ckpt['vocab']) if isinstance(ckpt.get('vocab'), list) else None)} characters"),
        (
            "val accuracy",
            f"{number(ckpt.get('val_accuracy'), '.4f')} (macro-F1 {number(ckpt.get('val_macro_f1'), '.4f')})",
        ),
        ("epoch", f"{number(ckpt.get('epoch'))}, {number(ckpt.get('elapsed_s'), '.1f')} s"),
        ("data", f"{data.get('source', '?')} ({number(data.get('examples'), ',')} examples)"),
        *checkpoint.provenance_rows(ckpt),
    ]
