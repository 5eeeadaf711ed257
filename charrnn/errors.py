"""Errors a user can cause or meet, each with its own exit code.

The CLI prints `charrnn: error: <message>` on one line of stderr and exits with
`exit_code`; library callers catch `CharRNNError`.
"""

from __future__ import annotations

import errno


class CharRNNError(Exception):
    exit_code = 1


class BadValueError(CharRNNError, ValueError):
    """An option value that makes no sense (same code as click's usage errors). Every config
    refuses its values with it; it is a ValueError too, for callers that catch those."""

    exit_code = 2


class InputError(CharRNNError):
    """A text file or corpus that cannot be used: missing, empty, not UTF-8, binary, too short."""

    exit_code = 3


class CheckpointError(CharRNNError):
    """A checkpoint that is missing, corrupt, unsafe, from a newer format, or mismatched."""

    exit_code = 4


class DeviceError(CharRNNError):
    """A device or precision that this machine does not have."""

    exit_code = 5


class TrainingError(CharRNNError):
    """Training cannot go on: the loss diverged, or a checkpoint could not be written."""

    exit_code = 6


class PeerLostError(TrainingError):
    """Another process of a data-parallel run stopped, and this one cannot go on without it."""

    exit_code = 8


# Set for the processes that `charrnn train --nproc N` starts: the launcher, not rank 0, then
# reports a process that stopped first.
LAUNCHED_ENV = "CHARRNN_LAUNCHED"
ERROR_PREFIX = "charrnn: error: "  # how the CLI prints every error, on one line


class UnknownCharacterError(CharRNNError):
    """Text holds characters the model's vocabulary lacks."""

    exit_code = 7

    def __init__(self, chars: list[str], context: str = "text", unit: str = "character"):
        self.chars = chars
        shown = ", ".join(repr(c) for c in chars[:10]) + (" ..." if len(chars) > 10 else "")
        super().__init__(
            f"{context} has {len(chars)} {unit}(s) not in the model's vocabulary: {shown} "
            "(--unknown skip leaves them out)"
        )

    @classmethod
    def no_unk(cls) -> UnknownCharacterError:
        e = cls([])
        e.args = ("--unknown unk needs a model with a capped vocabulary (one that holds <unk>); use error or skip",)
        return e


def first_line(e: BaseException) -> str:
    """An exception's message cut to its first line, at most 200 characters (its type's name
    when it has none)."""
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def os_reason(e: OSError) -> str:
    """What an OSError from a write means, in a few words."""
    return "the disk is full" if e.errno == errno.ENOSPC else e.strerror or str(e)
