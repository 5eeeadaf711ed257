"""Ctrl-C and SIGTERM during training: finish the step, save last.pt, then stop.

    stop = StopFlag(on_signal=lambda: print("stopping after this step"))
    with stop.installed():
        train(..., should_stop=stop)
    if stop.signum: ...   # which signal asked

A second Ctrl-C raises KeyboardInterrupt at once.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator


class StopFlag:
    """A `should_stop` callable for the training loop, set by SIGINT or SIGTERM."""

    def __init__(self, on_signal: Callable[[], None] | None = None):
        self.signum: int | None = None
        self.on_signal = on_signal  # told when a signal asks to stop

    def __call__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        if self.on_signal is not None:
            self.on_signal()

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopFlag]:
        old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def exit_code(self) -> int:
        """The exit code of a run this flag stopped: 143 for SIGTERM, 130 for Ctrl-C."""
        return 143 if self.signum == signal.SIGTERM else 130
