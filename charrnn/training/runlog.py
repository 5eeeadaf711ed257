"""The one owner of a run's logs: metrics.jsonl and samples.txt, written and read here.

    log = RunLog(run_dir)                 # the training loop, on rank 0
    log.metric({"step": 10, "train_loss": 2.31, ...})
    log.sample(step=500, train_loss=1.9, val_loss=2.0, text="ROMEO: ...")
    train, evals = read_metrics(run_dir)  # the report
    samples = read_samples(run_dir)

metrics.jsonl holds one JSON object per line: train lines carry `train_loss`, evaluation
lines `val_loss`. samples.txt holds each progress sample under a header line
`===== step N | train loss X | val loss Y =====`. Readers skip what does not parse (a line
cut short by a crash, or damaged) instead of failing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from charrnn.errors import TrainingError, os_reason
from charrnn.training import checkpoint
from charrnn.values import is_int, is_number

METRICS = "metrics.jsonl"
SAMPLES = "samples.txt"
# loose on purpose: a header whose numbers do not parse is still a header (of a sample to skip)
SAMPLE_HEADER = re.compile(r"^===== step (\S+) \| train loss (\S+) \| val loss (\S+) =====$")
# The numbers a metrics line may hold; the charts and the summary do arithmetic on them.
METRIC_NUMBERS = (
    "step",
    "epoch",
    "lr",
    "elapsed_s",
    "train_loss",
    "chars_per_sec",
    "grad_norm",
    "val_loss",
    "val_bpc",
    "best_val_loss",
)


class RunLog:
    """Appends to a run's metrics.jsonl and samples.txt; a failed write stops training with one
    line (TrainingError) that says which checkpoints hold the last good weights."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / METRICS
        self.samples_path = self.run_dir / SAMPLES
        self._metrics = open(self.metrics_path, "a", encoding="utf-8")

    def metric(self, record: dict) -> None:
        try:
            self._metrics.write(json.dumps(record) + "\n")
            self._metrics.flush()
        except OSError as e:
            raise _write_failed(self.metrics_path, e) from None

    def sample(self, *, step: int, train_loss: float, val_loss: float, text: str) -> None:
        try:
            with open(self.samples_path, "a", encoding="utf-8") as f:
                f.write(f"===== step {step} | train loss {train_loss:.4f} | val loss {val_loss:.4f} =====\n")
                f.write(text.lstrip("\n") + "\n\n")
        except OSError as e:
            raise _write_failed(self.samples_path, e) from None

    def close(self) -> None:
        try:
            self._metrics.close()
        except OSError:
            pass  # the write that failed has already been reported


def _write_failed(path: Path, e: OSError) -> TrainingError:
    return TrainingError(f"could not write {path}: {os_reason(e)}; {checkpoint.kept(path.parent)}")


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop the lines logged after `step` (the checkpoint being resumed), so steps are not
    repeated; the rewrite is atomic, so a crash or a full disk half-way leaves the old lines."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = metric_record(line)
        if m is not None and m["step"] <= step:
            keep.append(line)
    try:
        checkpoint.write_atomic(path, "".join(line + "\n" for line in keep).encode("utf-8"))
    except OSError as e:
        raise TrainingError(
            f"could not rewrite {path} to resume: {os_reason(e)}; it and the checkpoint are intact"
        ) from None


def metric_record(line: str) -> dict | None:
    """One metrics.jsonl line as a record, or None for a line that is not one: cut short by a
    crash, or damaged so that it is not an object with an integer step and numbers for numbers."""
    try:
        m = json.loads(line)
    except ValueError:  # JSONDecodeError, or an integer of thousands of digits
        return None
    if not isinstance(m, dict) or not (is_int(m.get("step")) and is_number(m["step"])):
        return None
    if not all(is_number(m[k]) for k in METRIC_NUMBERS if k in m):
        return None
    return m


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(train records, evaluation records) of a run's metrics.jsonl, damaged lines left out."""
    train, evals = [], []
    # errors="replace": a damaged byte spoils only its own line, which then fails to parse
    for line in (Path(run_dir) / METRICS).read_text(encoding="utf-8", errors="replace").splitlines():
        m = metric_record(line)
        if m is None:
            continue
        if "train_loss" in m:
            train.append(m)
        elif "val_loss" in m:
            evals.append(m)
    return train, evals


def read_samples(run_dir: Path) -> list[dict]:
    """The progress samples of a run's samples.txt, each {"step", "train_loss", "val_loss",
    "text"}. A sample whose header is damaged is left out, text and all, rather than glued
    onto the sample before it."""
    path = Path(run_dir) / SAMPLES
    if not path.is_file():
        return []
    samples: list[dict] = []
    current: list[str] | None = None  # the text lines of the sample being read; None while skipping
    for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
        head = SAMPLE_HEADER.match(line)
        if head:
            sample = _sample_header(head)
            if sample:
                samples.append(sample)
            current = sample["lines"] if sample else None
        elif current is not None:
            current.append(line)
    for s in samples:
        s["text"] = "\n".join(s.pop("lines")).rstrip("\n")  # the writer ends each sample with a blank line
    return samples


def _sample_header(head: re.Match) -> dict | None:
    try:
        return {"step": int(head[1]), "train_loss": float(head[2]), "val_loss": float(head[3]), "lines": []}
    except ValueError:
        return None
