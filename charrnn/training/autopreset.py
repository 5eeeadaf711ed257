"""`--preset auto` with a time limit: the preset that reaches the lowest val loss in the
characters this machine trains in the time given.

    choice = choose(corpus, time_limit=600, settings={}, device=torch.device("cpu"))
    choice.preset, choice.reason          # "medium", "≈ 2.6 M chars in 600 s at 4.4k chars/s"

Each preset trains a few timed steps on the corpus itself, with the settings given (a few
hundredths of the budget in all); its speed times the time limit is the characters it would
train. `LOSS_BY_CHARS` says what val loss each preset reaches after so many characters
(measured on tiny-shakespeare with benchmarks/auto_table.py, as a function of characters
rather than time, so that it holds on any machine), and the preset lowest there is chosen.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from charrnn import memory
from charrnn.config import ModelConfig
from charrnn.corpus.bundled import CORPORA
from charrnn.corpus.store import Corpus
from charrnn.corpus.text import file_sha256
from charrnn.errors import CharRNNError
from charrnn.model.rnn import CharRNN
from charrnn.runtime import training_precision
from charrnn.training.batches import StreamBatcher
from charrnn.training.presets import configs
from charrnn.training.step import TrainStep

CANDIDATES = ("tiny", "small", "medium", "large")
MEASURE_SHARE = 0.03  # of the time limit, spent measuring at most
MEASURE_STEPS = 5  # timed steps a preset is measured over at most (after one untimed)
MIN_TIMED_S = 0.25  # seconds of timed steps that are enough (with two steps at least)

# Val loss (nats/char) on tiny-shakespeare after N characters trained: each preset trained once
# to 6 M characters (small to 9 M, large to 1.5 M) with its cosine schedule over that horizon,
# evaluated on the whole val split along the way (`python benchmarks/auto_table.py --python`,
# `--presets small --chars 9e6` and `--presets large --chars 1.5e6`; the table is in
# benchmarks/README.md). Past a curve's end its last value holds, so large, measured only as far
# as it gets in minutes here, is not chosen on the CPU. tiny and small are measured with their
# presets of today (tied embeddings and a weight average; small with dropout 0.1 and 16 x 64
# windows), medium and large with theirs.
LOSS_BY_CHARS: dict[str, list[tuple[int, float]]] = {
    "tiny": [
        (499712, 1.7915),
        (999424, 1.631),
        (1499136, 1.5969),
        (1998848, 1.5421),
        (2498560, 1.5307),
        (2998272, 1.5117),
        (3497984, 1.5089),
        (3997696, 1.4979),
        (4497408, 1.4952),
        (4997120, 1.4897),
        (5496832, 1.4891),
        (5996544, 1.4862),
        (5999616, 1.4862),
    ],
    "small": [
        (749568, 1.7161),
        (1499136, 1.6292),
        (2248704, 1.5199),
        (2998272, 1.478),
        (3747840, 1.4758),
        (4497408, 1.4571),
        (5246976, 1.4335),
        (5996544, 1.4277),
        (6746112, 1.4281),
        (7495680, 1.422),
        (8245248, 1.4173),
        (8994816, 1.4181),
        (8999936, 1.4181),
    ],
    "medium": [
        (499712, 1.8236),
        (999424, 1.6464),
        (1499136, 1.628),
        (1998848, 1.5462),
        (2498560, 1.5377),
        (2998272, 1.4855),
        (3497984, 1.4805),
        (3997696, 1.4462),
        (4497408, 1.4356),
        (4997120, 1.4136),
        (5496832, 1.4069),
        (5996544, 1.402),
        (6000640, 1.4018),
    ],
    "large": [
        (122880, 4.0374),
        (245760, 3.3817),
        (368640, 3.3369),
        (491520, 3.2018),
        (614400, 2.8164),
        (737280, 2.4943),
        (860160, 2.3443),
        (983040, 2.2322),
        (1105920, 2.1381),
        (1228800, 2.0778),
        (1351680, 2.016),
        (1474560, 1.9632),
        (1499136, 1.9537),
    ],
}


@dataclass
class Choice:
    preset: str
    reason: str
    time_limit: float
    chars_per_sec: dict[str, float] = field(default_factory=dict)  # measured here
    predicted: dict[str, float] = field(default_factory=dict)  # val loss at what the budget buys
    skipped: list[str] = field(default_factory=list)  # presets too slow to measure within the share
    measure_s: float = 0.0
    startup_s: float = 0.0  # the first step's set-up, before measuring (training would pay it)

    def record(self) -> dict:
        """What the run's checkpoint keeps of the choice."""
        return {
            "preset": self.preset,
            "reason": self.reason,
            "time_limit": self.time_limit,
            "chars_per_sec": self.chars_per_sec,
            "predicted_val_loss": {k: round(v, 4) for k, v in self.predicted.items()},
            "not_measured": self.skipped,
            "measure_s": round(self.measure_s, 2),
            "startup_s": round(self.startup_s, 2),
        }


def predicted_loss(preset: str, chars: float) -> float:
    """The val loss `preset` reaches after `chars` characters: the curve read at that point
    (linear in log characters between measured points; before the first, the first point;
    past the last, the last, as the curve is flat there)."""
    points = LOSS_BY_CHARS[preset]
    xs = np.log([c for c, _ in points])
    ys = [v for _, v in points]
    return float(np.interp(math.log(max(chars, 1.0)), xs, ys))


def chars(n: float) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


def measure(corpus: Corpus, preset: str, settings: dict, device: torch.device, deadline: float) -> float | None:
    """Characters per second that `preset` (with `settings` over it) trains on `corpus` here, from
    a few steps of the real thing: the model and the step training takes (`TrainStep`: AdamW
    with its parameter groups, autocast, loss scaling, clipping) on batches of the corpus. One untimed
    step sets up kernels and buffers; then at least one timed step, and more until the deadline,
    MIN_TIMED_S of timed steps, or MEASURE_STEPS. None when the corpus is too small for the
    preset's batch, or the preset too big for this machine's memory."""
    model_cfg, cfg = _configs(corpus, preset, settings)
    try:
        if device.type == "cpu":
            memory.check_training_memory(model_cfg, cfg)
        batcher = StreamBatcher(corpus.split_reader("train"), cfg.batch_size, cfg.seq_len)
    except CharRNNError:  # too big for this machine's memory, or its batch for the corpus
        return None
    labels = None
    if model_cfg.labels:
        labels = StreamBatcher(corpus.label_reader("train"), cfg.batch_size, cfg.seq_len)
    precision = training_precision(cfg.precision, device, model_cfg.model)
    step = TrainStep(CharRNN(model_cfg).to(device), cfg, device, precision)  # the step training takes
    timed, t0 = 0, 0.0
    for k in range(MEASURE_STEPS + 1):
        if k == 1:
            _sync(device)
            t0 = time.perf_counter()
        x, y = (torch.from_numpy(a).to(device) for a in batcher.batch(k % batcher.steps_per_epoch))
        lab = None if labels is None else torch.from_numpy(labels.batch(k % batcher.steps_per_epoch)[1]).to(device)
        step.backward(x, y, None, lab, cfg.lr)
        step.apply()
        if k == 0:
            continue
        _sync(device)
        timed += 1
        now = time.perf_counter()
        if now > deadline or (timed >= 2 and now - t0 >= MIN_TIMED_S):
            break
    return timed * cfg.batch_size * cfg.seq_len / (time.perf_counter() - t0)


def _configs(corpus: Corpus, preset: str, settings: dict):
    model_cfg, cfg = configs(len(corpus.vocab), preset, settings)
    return replace(model_cfg, labels=tuple(corpus.labels), label_counts=tuple(corpus.label_counts)), cfg


def params(config: ModelConfig) -> int:
    """The model's parameter count, from its config (without building it)."""
    v, h, gates = config.vocab_size, config.hidden, {"lstm": 4, "gru": 3, "rnn": 1}[config.model]
    recurrent = config.layers * gates * h * (2 * h + 2)  # W_ih, W_hh and both biases of each layer
    return v * h + len(config.labels) * h + recurrent + h * v + v


def _start_up(device: torch.device) -> None:
    """One step of a tiny LSTM with fused AdamW: the process's first such step sets up the
    thread pool and the kernel library (1.5 s on the 2-core CPU), whatever the sizes. Training
    would pay it at its first step; done first, it is not charged to the first preset measured."""
    lstm = torch.nn.LSTM(8, 8, num_layers=2, batch_first=True).to(device)
    opt = torch.optim.AdamW(lstm.parameters(), fused=device.type in ("cuda", "cpu"))
    out, _ = lstm(torch.zeros(2, 4, 8, device=device))
    out.sum().backward()
    opt.step()
    _sync(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def choose(corpus: Corpus, time_limit: float, settings: dict, device: torch.device) -> Choice:
    """The preset that reaches the lowest predicted val loss in `time_limit` seconds here. The
    presets are measured smallest first, each by the deadline of its share of what is left of
    MEASURE_SHARE of the budget. A preset is not measured (nor chosen) when there is nothing
    left, or when two of its steps would take longer than what is left, as estimated from the
    speed of the last one measured (time per character grows with the parameters)."""
    t0 = time.perf_counter()
    _start_up(device)
    start = time.perf_counter()
    share = MEASURE_SHARE * time_limit
    choice = Choice(preset="", reason="", time_limit=time_limit, startup_s=start - t0)
    last: tuple[float, int] | None = None  # the last measured preset's chars/s and parameters
    for i, preset in enumerate(CANDIDATES):
        left = share - (time.perf_counter() - start)
        model_cfg, cfg = _configs(corpus, preset, settings)
        size = params(model_cfg)
        if last is not None:
            estimated = last[0] * last[1] / size  # chars/s
            if left <= 0 or 2 * cfg.batch_size * cfg.seq_len / estimated > left:
                choice.skipped.append(preset)
                continue
        speed = measure(corpus, preset, settings, device, time.perf_counter() + left / (len(CANDIDATES) - i))
        if speed is None:
            choice.skipped.append(preset)
            continue
        last = (speed, size)
        choice.chars_per_sec[preset] = round(speed, 1)
        choice.predicted[preset] = predicted_loss(preset, speed * time_limit)
    choice.measure_s = time.perf_counter() - start
    best = min(choice.predicted, key=choice.predicted.get) if choice.predicted else None
    if best is None:  # no preset fits the corpus and the machine: the smallest, to fail as it does
        choice.preset, choice.reason = CANDIDATES[0], "no preset could be measured here"
        return choice
    speed = choice.chars_per_sec[best]
    choice.preset = best
    choice.reason = f"≈ {chars(speed * time_limit)} chars in {time_limit:g} s at {speed / 1e3:.1f}k chars/s, " + (
        f"predicted val {choice.predicted[best]:.2f}"
        if _is_the_table_corpus(corpus)
        else f"which reach val {choice.predicted[best]:.2f} on tiny-shakespeare (a guide; this corpus will differ)"
    )
    return choice


def _is_the_table_corpus(corpus: Corpus) -> bool:
    """Whether the corpus is the text LOSS_BY_CHARS was measured on: only there is it a prediction."""
    return corpus.meta.get("source_sha256") == file_sha256(CORPORA["tinyshakespeare"].path)
