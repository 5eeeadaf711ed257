"""Checks of plain values read from files a user may have edited or damaged (meta.json,
metrics.jsonl, a checkpoint's descriptive fields), and the one unit conversion the
figures need.

    >>> is_int(True), is_count(3), is_number(float("nan")), round(bits(1.0), 4)
    (False, True, True, 1.4427)
"""

from __future__ import annotations

import math

LN2 = math.log(2)


def bits(nats: float) -> float:
    """A loss in nats per character as bits per character."""
    return nats / LN2


def is_int(v) -> bool:
    """An integer that is not a bool (JSON and Python both let True pass as 1)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_count(v) -> bool:
    return is_int(v) and v >= 0


def is_number(v) -> bool:
    """A number that float() takes: not a bool, not an integer beyond a float's range."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        float(v)
    except OverflowError:
        return False
    return True


def as_dict(v) -> dict:
    """`v` where it is a dict, else an empty one: for descriptive fields that nothing checks."""
    return v if isinstance(v, dict) else {}


def number(value, spec: str = "") -> str:
    """A number formatted by `spec`, or "?" for a missing or damaged one."""
    return format(value, spec) if is_number(value) else "?"
