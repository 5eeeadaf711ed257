"""A plain progress report for Python callers: `charrnn.train(..., progress=True)` writes a line
to stderr every few seconds (step, losses, speed) and one at each evaluation, through the
loop's callbacks. Libraries stay silent unless asked; the command line has its own view.

    charrnn.train("poems.txt", max_steps=500, progress=True)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from charrnn.training.loop import Callbacks, RunStart

EVERY_S = 5.0  # seconds between step lines


class TextProgress(Callbacks):
    def __init__(self, stream: TextIO | None = None, every_s: float = EVERY_S):
        self.stream, self.every_s = stream or sys.stderr, every_s
        self.total: int | None = None
        self.last = 0.0

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def on_start(self, run: RunStart) -> None:
        mc, tc = run.model_config, run.train_config
        self.total = run.total_steps
        self._say(f"{'resuming' if run.resumed else 'training'} {mc.layers}x{mc.hidden} {mc.model} "
                  f"({run.params:,} parameters) on {run.corpus['name']} · {run.device} {run.precision} · "
                  f"batch {tc.batch_size}x{tc.seq_len} · run {run.run_dir}")  # fmt: skip
        self.last = time.monotonic()

    def on_step(self, record: dict, logged: bool) -> None:
        now = time.monotonic()
        if not logged or now - self.last < self.every_s:
            return
        self.last = now
        of = f"/{self.total}" if self.total else ""
        self._say(f"step {record['step']}{of}: train loss {record['train_loss']:.3f} · "
                  f"{record['chars_per_sec']:,.0f} chars/s · {record['elapsed_s']:.0f} s")  # fmt: skip

    def on_eval(self, record: dict) -> None:
        self._say(f"step {record['step']}: val loss {record['val_loss']:.4f} (best {record['best_val_loss']:.4f})")

    def on_sample(self, step: int, text: str, record: dict) -> None: ...

    def on_checkpoint(self, path: Path, kind: str) -> None: ...

    def on_warning(self, message: str) -> None:
        self._say(f"charrnn: warning: {message}")
