"""The server's request bodies, derived from the option groups: `/v1/generate` takes the
fields of `SampleConfig` (but the precision, which the server chooses, and the separator of
documents, which is the command's) with the same bounds, and `stream`.

    GenerateBody.model_validate_json(b'{"prime": "ROMEO:", "length": 200}')
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Literal

from pydantic import ConfigDict, Field, create_model

from charrnn.config import SampleConfig, kind

NOT_IN_BODY = ("precision", "doc_separator")  # chosen by the server, and a command-line option


_SAME = object()


def _field(f, default: Any = _SAME) -> tuple[Any, Any]:
    """(type, pydantic Field) of a config field, with its Opt's bounds (and its default, or
    `default`)."""
    o = f.metadata["opt"]
    base, optional = kind(f)
    py: Any = {"int": int, "float": float, "bool": bool}.get(base, str)
    if o.choices:
        py = Literal[o.choices]
    if optional:
        py = py | None
    bounds: dict[str, Any] = {}
    if base in ("int", "float") and not o.choices:
        if o.lo is not None:
            bounds["gt" if o.lo_open else "ge"] = o.lo
        if o.hi is not None:
            bounds["lt" if o.hi_open else "le"] = o.hi
        if base == "float":
            bounds["allow_inf_nan"] = False
    if base == "str" and o.nonempty:
        bounds["min_length"] = 1
    return py, Field(f.default if default is _SAME else default, **bounds)


def body_of(name: str, cls, *, only=(), exclude=(), before=None, after=None):
    """A strict pydantic model of the fields of `cls` (those in `only`, if given, and not in
    `exclude`), with the fields `before` and `after` them ({name: (type, default)})."""
    own = {
        f.name: _field(f)
        for f in fields(cls)
        if "opt" in f.metadata
        and f.metadata["opt"].flag != ""
        and f.name not in exclude
        and (not only or f.name in only)
    }
    config = ConfigDict(extra="forbid", strict=True)
    return create_model(name, __config__=config, **(before or {}), **own, **(after or {}))


def renamed(name: str, default=None) -> tuple[Any, Any]:
    """A SampleConfig field's type and bounds, for a body that names it otherwise (OpenAI's
    `temperature` is `temp`), with that body's own default."""
    py, spec = _field(next(f for f in fields(SampleConfig) if f.name == name), default)
    return py | None, spec


GenerateBody = body_of("GenerateBody", SampleConfig, exclude=NOT_IN_BODY, after={"stream": (bool, False)})
ScoreBody = body_of("ScoreBody", SampleConfig, only=("unknown", "label"), before={"text": (str, ...)})
