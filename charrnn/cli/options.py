"""The commands' options: those of the config groups derived from their fields (`with_options`),
and the few arguments and options the commands share.

A command names the groups it takes and receives one `Given`; Typer sees one option per
field, with the field's flag, help, bounds, choices and default:

    @with_options(CorpusOptions)
    def preprocess_cmd(inputs: Inputs = None, opts: Given = None):
        corpus = opts.of(CorpusOptions)

So a new field of a group is a new option of every command that takes the group, checked by
Typer with the same bounds that the dataclass checks (`charrnn.config.check`).
"""

from __future__ import annotations

import inspect
import math
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from charrnn.config import DEVICES, SAME, Opt, SampleConfig, kind, options
from charrnn.errors import BadValueError

# --------------------------------------------------------------------------- from a field to an option


def in_range(lo: float | None, hi: float | None, *, lo_open: bool = False, hi_open: bool = False):
    """An option callback for bounds that may be open (typer's min/max are closed)."""

    def check(value):
        if value is None:
            return value
        bad = (lo is not None and (value < lo or (lo_open and value == lo))) or (
            hi is not None and (value > hi or (hi_open and value == hi))
        )
        if bad or value != value or math.isinf(value):
            left = "(" if lo_open else "["
            right = ")" if hi_open or hi is None else "]"
            raise typer.BadParameter(
                f"{value} is not in {left}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{right}"
            )
        return value

    return check


def _parsed(parse):
    """An option callback from a field's `Opt.parse`: its BadValueError is a usage error."""

    def callback(value):
        try:
            return parse(value)
        except BadValueError as e:
            raise typer.BadParameter(str(e)) from None

    return callback


# The --help panel of each group's options, and of the fields that go elsewhere
PANELS = {"ModelConfig": "Model", "TrainConfig": "Optimization", "CorpusOptions": "Text", "SampleConfig": "Sampling",
          "ServeLimits": "Limits", "ClassifierSettings": "Optimization"}  # fmt: skip
FIELD_PANELS = {
    "Run": ("max_steps", "max_epochs", "time_limit", "patience"),
    "Evaluation and output": ("eval_every", "checkpoint_every", "sample_every", "sample_length", "sample_temp",
                              "log_every"),
    "Device": ("device", "precision", "seed"),
    "Documents and labels": ("documents", "min_length", "max_length", "label"),
    "Model": ("model", "hidden", "layers", "bidirectional", "dropout"),
}  # fmt: skip


def panel_of(cls, name: str) -> str:
    if cls.__name__ == "ServeLimits":
        return PANELS["ServeLimits"]
    if cls.__name__ == "SampleConfig" and name == "precision":
        return PANELS["SampleConfig"]
    return next((p for p, names in FIELD_PANELS.items() if name in names), PANELS.get(cls.__name__, "Options"))


def option_of(f, o: Opt, panel: str | None = None) -> tuple[Any, Any]:
    """(Annotated type with its typer.Option, default) of a config field."""
    base, optional = kind(f)
    py: Any = {"int": int, "float": float, "bool": bool}.get(base, str)
    if o.choices:
        py = Literal[o.choices]
    if optional:
        py = py | None
    name = o.name(f.name)
    decls = [f"{name}/{o.off}" if o.off else name] + ([o.short] if o.short else [])
    kw: dict[str, Any] = {"help": o.help, "show_default": o.show_default, "rich_help_panel": panel}
    if base == "bool":
        kw["metavar"] = ""
    if o.metavar:
        kw["metavar"] = o.metavar
    if base in ("int", "float") and not o.choices:
        number = int if base == "int" else float
        if o.lo_open or o.hi_open:
            kw["callback"] = in_range(o.lo, o.hi, lo_open=o.lo_open, hi_open=o.hi_open)
        else:
            kw.update({k: number(v) for k, v in (("min", o.lo), ("max", o.hi)) if v is not None})
    if o.parse is not None:
        kw["callback"] = _parsed(o.parse)
    default = f.default if o.shown is SAME else o.shown
    return Annotated[py, typer.Option(*decls, **kw)], default


@dataclass(frozen=True)
class Given:
    """What a command was given of its groups' options: every value, and which of them were on
    the command line (the rest are the fields' defaults, or the command's own)."""

    values: dict[str, Any]
    explicit: frozenset[str]

    def of(self, cls, **over: Any):
        """An instance of `cls` from the values of its fields (and `over`)."""
        return cls(**{f.name: self.values[f.name] for f in fields(cls) if f.name in self.values} | over)

    def settings(self, *classes) -> dict[str, Any]:
        """The values of the classes' options that were given explicitly."""
        names = {f.name for cls in classes for f, o in options(cls) if o.flag != ""}
        return {k: v for k, v in self.values.items() if k in names and k in self.explicit}


def with_options(*groups, only: tuple[str, ...] = (), skip: tuple[str, ...] = ()):
    """Give the command, in place of its `opts: Given` parameter, one option per field (with an
    `Opt` and a flag) of each group: only those named in `only`, if given, and not those in `skip`."""

    def wrap(command):
        hints = typing.get_type_hints(command, include_extras=True)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(command).parameters.values()
        ]
        added = []
        for cls in groups:
            for f, o in options(cls):
                if o.flag == "" or f.name in skip or (only and f.name not in only):
                    continue
                annotation, default = option_of(f, o, panel_of(cls, f.name))
                added.append(
                    inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
                )
        at = next(i for i, p in enumerate(own) if p.name == "opts")
        ctx_name = next((p.name for p in own if p.annotation is typer.Context), None)
        context = (
            [] if ctx_name else [inspect.Parameter("_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)]
        )
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in context + own[:at] + added + own[at + 1 :]]
        names = [p.name for p in added]

        def run(**kwargs):
            ctx = kwargs[ctx_name] if ctx_name else kwargs.pop("_ctx")
            values = {n: kwargs.pop(n) for n in names}
            explicit = frozenset(n for n in names if given(ctx, n))
            return command(**kwargs, opts=Given(values, explicit))

        run.__name__, run.__doc__, run.__module__ = command.__name__, command.__doc__, command.__module__
        run.__signature__ = inspect.Signature(params)
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return wrap


def given(ctx: typer.Context, name: str) -> bool:
    """Whether option `name` was on the command line (or in the environment), not its default."""
    return getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"


# --------------------------------------------------------------------------- shared arguments and options

# Path arguments are declared readable=False: the library checks files itself, so an unreadable
# file gets its own message and exit code (3 for text, 4 for a checkpoint), not a usage error.
CheckpointArg = Annotated[
    Path,
    typer.Argument(
        metavar="CHECKPOINT_OR_RUN_DIR",
        help="A checkpoint file or run directory (its best.pt).",
        show_default=False,
        readable=False,
    ),
]
NewestCheckpointArg = Annotated[
    Path | None,
    typer.Argument(
        metavar="CHECKPOINT_OR_RUN_DIR",
        readable=False,
        show_default=False,
        help="A checkpoint file or run directory (its best.pt); default: the newest run in checkpoints/.",
    ),
]
DeviceOpt = Annotated[
    Literal[DEVICES], typer.Option("--device", help="auto picks cuda, then mps, then cpu.", rich_help_panel="Device")
]
LabelOpt = Annotated[
    str | None,
    typer.Option("--label", show_default=False, help="A labelled model: the label of the text (see charrnn info)."),
]
QuietOpt = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        metavar="",
        help="No progress bar or samples on the console.",
        rich_help_panel="Evaluation and output",
    ),
]


def inputs(help: str):
    """The INPUT... argument of preprocess and train: files, directories or patterns."""
    return Annotated[list[Path] | None, typer.Argument(metavar="INPUT", readable=False, show_default=False, help=help)]


def field_option(cls, name: str) -> Any:
    """The option of one field of a group, for a command that takes that field alone."""
    f = next(f for f in fields(cls) if f.name == name)
    return option_of(f, f.metadata["opt"])[0]


UnknownOpt = field_option(SampleConfig, "unknown")  # as `charrnn sample` takes it, for eval and visualize
