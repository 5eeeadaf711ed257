"""`--help` as plain text that reads well in an 80-column terminal: the usage line, the
description re-wrapped to the terminal's width, the examples each on a line of its own (a
comment that does not fit goes below its command), and the options in panels, common ones
first, each with its whole default. Long option names put their description on the next
line rather than squeeze it into a narrow column.

    Command.format_help -> render_command(command, ctx, width)
"""

from __future__ import annotations

import inspect
import re
import shutil
import textwrap
import typing
from pathlib import Path
from typing import Literal

MAX_WIDTH = 100  # wider terminals still get lines a reader can follow
FLAG_COLUMN = 26  # where descriptions start when the flag fits before it
MARKUP = re.compile(r"\[/?(bold|dim|italic|red|green|yellow|cyan)\]")
DEFAULT_PANEL = "Options"
# the panels of --help in this order (others after them, then the options of no panel)
PANEL_ORDER = ("Arguments", "Run", "Model", "Optimization", "Evaluation and output", "Sampling", "Documents and labels",
               "Text", "Limits", "Device")  # fmt: skip


def width() -> int:
    return max(40, min(MAX_WIDTH, shutil.get_terminal_size((80, 24)).columns))


def plain(text: str) -> str:
    """Text without rich markup."""
    return MARKUP.sub("", text)


def paragraphs(doc: str) -> list[str]:
    """A docstring's paragraphs, dedented, markup removed, with their own line breaks."""
    return [plain(p.strip("\n")) for p in re.split(r"\n\s*\n", inspect.cleandoc(doc)) if p.strip()]


def wrapped(text: str, w: int, indent: str = "", hanging: str | None = None) -> list[str]:
    """One paragraph joined and wrapped to `w` columns."""
    joined = " ".join(text.split())
    return textwrap.wrap(
        joined,
        w,
        initial_indent=indent,
        subsequent_indent=indent if hanging is None else hanging,
        break_on_hyphens=False,
        break_long_words=False,
    ) or [indent.rstrip()]


def example_lines(block: str, w: int) -> list[str]:
    """An example: the command on one line (however long, so it can be copied); its comment
    after it where both fit, else on the next line."""
    out = []
    for line in block.splitlines():
        if not line.strip():
            continue
        command, _, comment = line.strip().partition("  # ")
        command = command.strip()
        if "#" in line and not comment:
            command, _, comment = line.strip().partition("# ")
            command = command.strip()
        comment = comment.strip()
        if comment and len(f"  {command}   # {comment}") <= w:
            out.append(f"  {command}   # {comment}")
        else:
            out.append(f"  {command}")
            if comment:
                out.append(f"      # {comment}")
    return out


def describe(doc: str, w: int) -> list[str]:
    """The description and examples of a command, from its docstring (paragraphs re-wrapped;
    after a paragraph "Examples" or "Example", one example a line)."""
    lines: list[str] = []
    examples = False
    for p in paragraphs(doc or ""):
        if lines and not examples:
            lines.append("")
        if p.strip() in ("Examples", "Example"):
            lines.append(f"{p.strip()}:")
            examples = True
            continue
        lines += example_lines(p, w) if examples else wrapped(p, w)
    return lines


# --------------------------------------------------------------------------- options


def _annotation(param):
    """The Python type an option takes (its Literal's choices, or int, float, Path, str...)."""
    t = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    args = [a for a in typing.get_args(t) if a is not type(None)] if typing.get_origin(t) is not Literal else []
    return args[0] if len(args) == 1 else t


def metavar(param) -> str:
    """The placeholder of an option's value: its choices where they are few, else its kind."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    if param.metavar is not None:
        return f"<{param.metavar}>" if param.metavar and not param.metavar.startswith("<") else param.metavar
    t = _annotation(param)
    if typing.get_origin(t) is Literal:
        choices = "|".join(map(str, typing.get_args(t)))
        return f"<{choices}>" if len(choices) <= 32 else "<CHOICE>"
    return {int: "<N>", float: "<X>", Path: "<PATH>"}.get(t, "<TEXT>")


def flags(param) -> str:
    if param.param_type_name == "argument":
        name = (param.metavar or param.name.upper()).strip("<>")
        many = "..." if param.nargs == -1 else ""
        return f"[{name}]{many}" if not param.required else f"{name}{many}"
    names = sorted(param.opts, key=lambda o: (not o.startswith("--"), o))
    shorts = [o for o in param.opts if not o.startswith("--")]
    longs = [o for o in names if o.startswith("--")]
    text = ", ".join(shorts + longs)
    if param.secondary_opts:
        text += " / " + ", ".join(param.secondary_opts)
    mv = metavar(param)
    return f"{text} {mv}" if mv else text


def option_help(param, ctx) -> str:
    """An option's help with its whole default (a value out of range is refused with its range)."""
    text = plain(getattr(param, "help", None) or "")
    notes = []
    if param.param_type_name == "option" and param.show_default and not getattr(param, "is_flag", False):
        default = param.get_default(ctx, call=False)
        if default not in (None, "", ()) and not callable(default):
            shown = (
                default if not isinstance(default, str) else repr(default) if default.strip() != default else default
            )
            notes.append(f"default: {shown}")
    return text + (f" [{'; '.join(notes)}]" if notes else "")


def option_lines(param, ctx, w: int) -> list[str]:
    left = "  " + flags(param)
    text = option_help(param, ctx)
    if not text:
        return [left]
    if len(left) <= FLAG_COLUMN - 2:
        first = left.ljust(FLAG_COLUMN)
        return wrapped(text, w, indent=first, hanging=" " * FLAG_COLUMN)
    return [left] + wrapped(text, w, indent=" " * 8)


def panels(command, ctx) -> dict[str, list]:
    """The command's visible parameters by panel, panels and parameters in the order the
    command declares them (arguments first)."""
    out: dict[str, list] = {}
    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    for p in sorted(params, key=lambda p: p.param_type_name != "argument"):
        panel = "Arguments" if p.param_type_name == "argument" else getattr(p, "rich_help_panel", None) or DEFAULT_PANEL
        out.setdefault(panel, []).append(p)
    rank = {name: i for i, name in enumerate(PANEL_ORDER)}
    order = sorted(out, key=lambda name: (name == DEFAULT_PANEL, rank.get(name, len(rank))))
    return {name: out[name] for name in order}


def render_command(command, ctx, w: int | None = None) -> str:
    w = w or width()
    pieces = " ".join(command.collect_usage_pieces(ctx))
    lines = [f"Usage: {ctx.command_path} {pieces}", ""]
    lines += describe(command.help or "", w)
    for panel, params in panels(command, ctx).items():
        lines += ["", f"{panel}:"]
        for p in params:
            lines += option_lines(p, ctx, w)
    if command.epilog:
        lines += [""] + epilog_lines(command.epilog, w)
    return "\n".join(line.rstrip() for line in lines) + "\n"


def epilog_lines(epilog: str, w: int) -> list[str]:
    """The epilog's paragraphs; lines that start with two spaces are rows, wrapped under themselves."""
    lines = []
    for p in re.split(r"\n\s*\n", plain(epilog)):
        if not lines:
            pass
        else:
            lines.append("")
        rows = p.splitlines()
        if all(r.startswith("  ") for r in rows):
            for r in rows:
                name, _, rest = r.strip().partition(" ")
                indent = "  " + name.ljust(8)
                lines += wrapped(rest, w, indent=indent, hanging=" " * len(indent))
        else:
            lines += wrapped(p, w)
    return lines


def render_group(group, ctx, w: int | None = None) -> str:
    w = w or width()
    lines = [f"Usage: {ctx.command_path} [OPTIONS] COMMAND [ARGS]...", ""]
    lines += describe(group.help or "", w)
    commands = [(name, group.get_command(ctx, name)) for name in group.list_commands(ctx)]
    commands = [(n, c) for n, c in commands if c is not None and not c.hidden]
    if commands:
        lines += ["", "Commands:"]
        col = max(len(n) for n, _ in commands) + 4
        for name, cmd in commands:
            summary = (paragraphs(cmd.help or "") or [""])[0]
            lines += wrapped(summary, w, indent=f"  {name}".ljust(col), hanging=" " * col)
    params = [p for p in group.get_params(ctx) if not getattr(p, "hidden", False)]
    if params:
        lines += ["", "Options:"]
        for p in params:
            lines += option_lines(p, ctx, w)
    return "\n".join(line.rstrip() for line in lines) + "\n"
