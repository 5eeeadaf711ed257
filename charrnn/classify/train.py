"""Training a classifier: batches of texts of similar length, padded and packed, AdamW, and
the weights with the best validation accuracy kept in `RUN/best.pt` (with `RUN/classifier.json`,
its labels and scores).

    result = train_classifier(Path("data/names"), ClassifierSettings(), out=Path("checkpoints/names"))
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from charrnn.classify import checkpoint
from charrnn.classify.config import ClassifierConfig, ClassifierSettings
from charrnn.classify.data import Examples, load_examples, stratified_split
from charrnn.classify.model import CharClassifier, batch, batches, encode
from charrnn.classify.scores import Scores, scores
from charrnn.config import CorpusOptions
from charrnn.corpus.vocab import Vocab
from charrnn.errors import BadValueError, TrainingError
from charrnn.runtime import pick_device, seed_everything
from charrnn.training import checkpoint as files
from charrnn.training import runs

VAL_BATCH = 256  # texts validated at once


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
    stopped: str  # max-epochs | patience | time-limit | interrupted
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


@dataclass
class _Data:
    """The examples as the network reads them: ids, label ids, and the split."""

    examples: Examples
    labels: list[str]
    vocab: Vocab
    encoded: list[list[int]]
    y: list[int]
    train: list[int]
    val: list[int]

    @classmethod
    def of(cls, examples: Examples, s: ClassifierSettings) -> _Data:
        train_idx, val_idx = stratified_split(examples, s.val_frac, s.seed)
        labels = examples.label_set
        label_id = {label: i for i, label in enumerate(labels)}
        vocab = Vocab.from_text("".join(examples.texts))
        encoded = encode(vocab, examples.texts, "error", "the data")
        return cls(examples, labels, vocab, encoded, [label_id[x] for x in examples.labels], train_idx, val_idx)


def train_classifier(
    data: Path,
    settings: ClassifierSettings = ClassifierSettings(),
    *,
    out: Path | None = None,
    text_col: str = "text",
    label_col: str = "label",
    opts: CorpusOptions = CorpusOptions(),
    on_start: Callable[[TrainStart], None] | None = None,
    on_batch: Callable[[float, float], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ClassifyResult:
    """Train a classifier on labelled examples (see `charrnn.classify.data`) and write
    `RUN/best.pt` (and `RUN/classifier.json`, its labels and scores). The data, the options and
    the device are all checked before the run directory is made; a run that fails before its
    first checkpoint leaves none behind. `should_stop` (Ctrl-C, say) ends the epoch early,
    validates, keeps the better weights and stops."""
    device = pick_device(settings.device)
    examples = load_examples(data, text_col=text_col, label_col=label_col, opts=opts, max_length=settings.max_length)
    prepared = _Data.of(examples, settings)
    run_dir, created = _new_run_dir(out, Path(data))
    with _kept_only_once_saved(run_dir, created):
        run = _Run(prepared, settings, device, run_dir, str(data))
        if on_start:
            on_start(run.start())
        return run.train(on_batch, on_epoch, should_stop or (lambda: False))


class _Run:
    """One classifier's network, optimizer and data; `train` is the loop over epochs."""

    def __init__(self, d: _Data, s: ClassifierSettings, device: torch.device, run_dir: Path, source: str):
        self.d, self.s, self.device, self.run_dir, self.source = d, s, device, run_dir, source
        seed_everything(s.seed)
        self.cfg = ClassifierConfig(
            len(d.vocab), len(d.labels), s.model, s.hidden, s.layers, s.bidirectional, s.dropout
        )
        self.net = CharClassifier(self.cfg).to(device)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=s.lr, weight_decay=0.0)
        self.weight = None
        if s.balance:
            counts = Counter(d.y[i] for i in d.train)
            weight = [len(d.train) / (len(d.labels) * counts.get(k, 1)) for k in range(len(d.labels))]
            self.weight = torch.tensor(weight).to(device)
        self.rng = random.Random(s.seed)
        self.steps_per_epoch = math.ceil(len(d.train) / s.batch_size)
        self.val_batches = [d.val[i : i + VAL_BATCH] for i in range(0, len(d.val), VAL_BATCH)]
        self.t0 = 0.0

    def start(self) -> TrainStart:
        d, params = self.d, sum(p.numel() for p in self.net.parameters())
        return TrainStart(d.examples, len(d.train), len(d.val), d.labels, len(d.vocab), params, self.device.type,
                          self.run_dir, self.steps_per_epoch)  # fmt: skip

    def train(self, on_batch, on_epoch, should_stop: Callable[[], bool]) -> ClassifyResult:
        s, d = self.s, self.d
        self.t0 = time.monotonic()
        best_acc, best_f1, stale, stopped, epoch = -1.0, 0.0, 0, "max-epochs", 0
        for epoch in range(1, s.max_epochs + 1):
            loss, why = self._epoch(epoch, on_batch, should_stop)
            sc = scores(d.labels, [d.y[i] for i in d.val], self._predicted())
            better = sc.accuracy > best_acc
            if better:
                best_acc, best_f1, stale = sc.accuracy, sc.macro_f1, 0
                self._save(epoch, sc)
            else:
                stale += 1
            if on_epoch:
                on_epoch(EpochStats(epoch, loss, sc.accuracy, sc.macro_f1, time.monotonic() - self.t0, better))
            stopped = why or ("patience" if stale >= s.patience else "")
            if stopped:
                break
        return ClassifyResult(self.run_dir, self.run_dir / "best.pt", epoch, best_acc, best_f1,
                              time.monotonic() - self.t0, stopped or "max-epochs", d.labels, len(d.examples),
                              d.examples.truncated)  # fmt: skip

    def _epoch(self, epoch: int, on_batch, should_stop: Callable[[], bool]) -> tuple[float, str]:
        """One pass over the training texts: its mean loss, and why it ended early ("" if it did not)."""
        s, d = self.s, self.d
        self.net.train()
        total, n = 0.0, 0
        for b, rows in enumerate(batches(d.train, d.encoded, s.batch_size, self.rng)):
            ids, lengths = batch([d.encoded[i] for i in rows], self.device)
            target = torch.tensor([d.y[i] for i in rows], device=self.device)
            loss = F.cross_entropy(self.net(ids, lengths), target, weight=self.weight)
            if not torch.isfinite(loss):
                kept = (
                    f"; {self.run_dir / 'best.pt'} holds the best weights so far"
                    if (self.run_dir / "best.pt").exists()
                    else ""
                )
                raise TrainingError(
                    f"training diverged in epoch {epoch} (the loss is not finite); try a lower --lr{kept}"
                )
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
            self.opt.step()
            total += float(loss.detach()) * len(rows)
            n += len(rows)
            if on_batch:
                on_batch(epoch - 1 + (b + 1) / self.steps_per_epoch, total / n)
            if s.time_limit is not None and time.monotonic() - self.t0 >= s.time_limit:
                return total / max(1, n), "time-limit"
            if should_stop():
                return total / max(1, n), "interrupted"
        return total / max(1, n), ""

    def _diverged(self, epoch: int):
        best = self.run_dir / "best.pt"
        kept = f"; {best} holds the best weights so far" if best.exists() else ""
        raise TrainingError(f"training diverged in epoch {epoch} (the loss is not finite); try a lower --lr{kept}")

    @torch.no_grad()
    def _predicted(self) -> list[int]:
        self.net.eval()
        out = []
        for rows in self.val_batches:
            ids, lengths = batch([self.d.encoded[i] for i in rows], self.device)
            out += self.net(ids, lengths).argmax(dim=-1).tolist()
        return out

    def _save(self, epoch: int, sc: Scores) -> None:
        d = self.d
        data = {"source": self.source, "examples": len(d.examples), "train": len(d.train), "val": len(d.val),
                "counts": dict(sorted(d.examples.counts().items())), "truncated": d.examples.truncated}  # fmt: skip
        ckpt = checkpoint.ClassifierCheckpoint(
            self.cfg, d.labels, d.vocab, self.net.state_dict(), asdict(self.s), data, epoch, sc.accuracy,
            sc.macro_f1, time.monotonic() - self.t0, self.device.type,
        )  # fmt: skip
        checkpoint.write(ckpt, self.run_dir / "best.pt")
        summary = {"labels": d.labels, "epoch": epoch, "val_accuracy": sc.accuracy, "val_macro_f1": sc.macro_f1}
        files.write_atomic(self.run_dir / checkpoint.MARK, (json.dumps(summary, indent=1) + "\n").encode())


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
