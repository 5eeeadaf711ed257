"""Every failure of a command ends as one line on stderr, `charrnn: error: ...`, and a distinct
exit code (see `charrnn.errors`): never a traceback. The one stderr console lives here too.

    app = typer.Typer(cls=OneLineErrors, ...)
    @app.command("train", cls=Command)
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from charrnn.errors import ERROR_PREFIX, LAUNCHED_ENV, CharRNNError, PeerLostError

# What to make smaller when a command runs out of memory, by command: each names its own options
OUT_OF_MEMORY = {
    "train": "a smaller --batch-size, --seq-len or --hidden",
    "sample": "fewer --num-samples, or a shorter prime",
    "eval": "a shorter --file, or a smaller model",
    "visualize": "a smaller --max-chars",
    "classify train": "a smaller --batch-size, --hidden or --max-length",
    "classify predict": "fewer or shorter texts at a time",
    "classify eval": "fewer or shorter texts",
}


def out_of_memory(args: list[str]) -> str:
    """The out-of-memory line for the command `args` ran."""
    words = [a for a in args if not a.startswith("-")]
    command = " ".join(words[:2]) if words[:1] == ["classify"] else (words[0] if words else "")
    hint = OUT_OF_MEMORY.get(command)
    return "out of memory" + (f"; try {hint}" if hint else "")


err = Console(stderr=True, highlight=False)  # progress, logs and errors: stdout is for the product


class _NoHelpPlaceholder:
    """--help shows no value placeholder after the flag itself."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class OneLineErrors(_NoHelpPlaceholder, TyperGroup):
    """Every failure ends as one line on stderr and an exit code; never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(
                args=args, prog_name=prog_name or "charrnn", complete_var=complete_var, standalone_mode=False, **extra
            )
        except typer.TyperException as e:  # usage errors: bad option values, missing arguments
            if type(e).__name__ == "NoArgsIsHelpError":  # `charrnn` alone: the help is the answer
                typer.echo(e.format_message(), nl=False)
                sys.exit(e.exit_code)
            fail(e.format_message(), e.exit_code)
        except typer.Abort:
            fail("aborted", 130)
        except PeerLostError as e:
            if not os.environ.get(LAUNCHED_ENV):  # else the launcher names the process that stopped first
                print_error(str(e))
            exit_with(e.exit_code)
        except CharRNNError as e:
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:
            quiet_broken_pipe()
            sys.exit(0)
        except MemoryError:
            fail(out_of_memory(sys.argv[1:] if args is None else list(args)), 1)
        except RuntimeError as e:  # torch's allocators report a failed allocation as a RuntimeError
            if not _out_of_memory(e):
                raise
            fail(out_of_memory(sys.argv[1:] if args is None else list(args)), 1)
        except OSError as e:
            fail(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}", 1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def format_help(self, ctx, formatter) -> None:
        from charrnn.cli.help import render_group

        formatter.write(render_group(self, ctx))


class Command(_NoHelpPlaceholder, TyperCommand):
    def format_help(self, ctx, formatter) -> None:
        from charrnn.cli.help import render_command

        formatter.write(render_command(self, ctx))


def _out_of_memory(e: RuntimeError) -> bool:
    text = str(e)
    return type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in text or "out of memory" in text


def fail(message: str, code: int):
    print_error(message)
    exit_with(code)


def exit_with(code: int):
    if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1"):
        # a failed rank of a data-parallel run ends at once: the interpreter's own shutdown
        # tears down the process group, which can abort while a peer is still in a collective
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


def print_error(message: str) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    try:
        err.print(Text(ERROR_PREFIX + first), soft_wrap=True)
    except BrokenPipeError:
        pass


def quiet_broken_pipe() -> None:
    # The reader went away (`| head`): point stdout at /dev/null so the final flush is silent.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
