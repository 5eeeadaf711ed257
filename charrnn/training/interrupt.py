"""Ctrl-C and SIGTERM during training: finish the step, save last.pt, then stop.

    stop = StopFlag(on_stop=lambda: print("stopping: saving last.pt"))
    with stop.installed():
        train(..., should_stop=stop)
    if stop.signum: ...   # which signal asked

A second Ctrl-C raises KeyboardInterrupt at once; a second SIGTERM changes nothing (a rank of
`--nproc` whose launcher is killed can get several: PR_SET_PDEATHSIG fires when the thread that
started it exits, and again when the launcher's thread it was handed to exits).

The handler only sets the flag. It runs between any two bytecodes of the main thread, in the
middle of a print or of an import (rich imports its emoji table on its first print), where
printing again fails; so the notice is given by the loop's own call that first sees the flag.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator


class StopFlag:
    """A `should_stop` callable for the training loop, set by SIGINT or SIGTERM."""

    def __init__(self, on_stop: Callable[[], None] | None = None):
        self.signum: int | None = None
        self.on_stop = on_stop  # told once, by the first call that sees a signal's request
        self._told = False

    def __call__(self) -> bool:
        if self.signum is None:
            return False
        if not self._told:
            self._told = True
            if self.on_stop is not None:
                self.on_stop()
        return True

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum

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
