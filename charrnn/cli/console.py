"""What the commands show on the terminal and read from it: the training progress view (the
loop's callbacks as a rich progress bar and samples on stderr), the one-line notices, and
stdin and stdout as the product's text streams (UTF-8, a closed pipe ended quietly).

    view = ConsoleView(quiet=False)                # train(..., callbacks=view)
    out = utf8_stdout()
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from charrnn.cli.errors import err
from charrnn.corpus.vocab import shown
from charrnn.errors import CharRNNError, InputError
from charrnn.values import Units


def say_skipped(meta: dict) -> None:
    """The one-line summary of the files a collection of documents left out as binary."""
    count = meta.get("skipped_count") or 0
    if count:
        named = ", ".join(meta.get("skipped", []))
        more = f" and {count - len(meta.get('skipped', []))} more" if count > len(meta.get("skipped", [])) else ""
        err.print(Text(f"charrnn: warning: skipped {count} file(s) that look binary: {named}{more}"), soft_wrap=True)


def say_stopping() -> None:
    err.print("stopping: saving last.pt (Ctrl-C again to quit at once)")


def report_after_training(run_dir: Path) -> None:
    """The train loss as a sparkline, and the run's report page, written at the end of training."""
    from charrnn.api import write_report
    from charrnn.pages.report import load_run, loss_sparkline

    try:
        run = load_run(run_dir)  # reads last.pt once, for the sparkline and the report
        spark = loss_sparkline(run.ckpt.history if run.ckpt is not None else [])
        if spark:
            err.print(f"train loss {spark}")
        err.print(f"report: {write_report(run_dir, run)}", soft_wrap=True)
    except (CharRNNError, OSError) as e:  # the model is saved; a report that fails must not fail the run
        err.print(Text(f"charrnn: warning: no report written: {e}"))


class ConsoleView:
    """The training loop's `Callbacks` as a rich progress bar and samples on stderr (or plain
    lines off a terminal)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task = None
        self.by_time = False

    def on_start(self, run) -> None:
        if self.quiet:
            return
        mc, tc = run.model_config, run.train_config
        err.print(
            f"{'resuming' if run.resumed else 'training'} {mc.layers}x{mc.hidden} {mc.model} "
            f"({run.params:,} parameters) on {run.corpus['name']} · {run.device} {run.precision} · "
            f"batch {tc.batch_size}x{tc.seq_len} · run {run.run_dir}",
            soft_wrap=True,
        )
        if run.parent and not run.resumed:
            p = run.parent
            new = f"{p['new_chars']} character(s) new to the model" + (
                f": {shown(p['new'], total=p['new_chars'])}" if p["new"] else ""
            )
            err.print(f"starting from {p['path']} (step {p['step']}) · {new} · lr {tc.lr:g}", soft_wrap=True)
        self.by_time = run.total_steps is None
        total = tc.time_limit if self.by_time else run.total_steps
        self.progress = Progress(
            TextColumn("[bold]step {task.fields[step]}"),
            BarColumn(),
            MofNCompleteColumn() if not self.by_time else TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val {task.fields[val]}"),
            TextColumn("{task.fields[cps]} " + ("tokens/s" if Units.of(run.corpus).word else "chars/s")),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )
        self.task = self.progress.add_task("train", total=total, step=run.start_step, loss="-", val="-", cps="-")
        self.progress.start()

    def on_step(self, m: dict, logged: bool) -> None:
        if self.progress is None:
            return
        fields = {"step": m["step"]}
        if logged:
            fields.update(loss=f"{m['train_loss']:.3f}", cps=f"{m['chars_per_sec']:,.0f}")
        if m["val_loss"] == m["val_loss"]:
            fields["val"] = f"{m['val_loss']:.3f}"
        completed = min(m["elapsed_s"], self.progress.tasks[0].total) if self.by_time else m["step"]
        self.progress.update(self.task, completed=completed, **fields)

    def on_eval(self, m: dict) -> None:
        if self.progress is not None:
            self.progress.update(self.task, val=f"{m['val_loss']:.3f}")
        if self.progress is not None and not err.is_terminal:
            err.print(f"step {m['step']}: val loss {m['val_loss']:.4f} (best {m['best_val_loss']:.4f})")

    def on_sample(self, step: int, text: str, m: dict) -> None:
        if self.progress is None:
            return
        val = f"{m['val_loss']:.3f}" if m["val_loss"] == m["val_loss"] else "-"  # nan: no eval yet
        train = f"{m['train_loss']:.3f}" if m["train_loss"] == m["train_loss"] else "-"  # nan: before the first step
        err.rule(f"sample at step {step} · train {train} · val {val}")
        err.print(Text(text.strip("\n")), soft_wrap=True)
        err.rule()

    def on_checkpoint(self, path: Path, kind: str) -> None: ...

    def on_warning(self, message: str) -> None:
        err.print(Text(f"charrnn: warning: {message}"), soft_wrap=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def warn_unk(vocab, text: str, unknown: str, what: str) -> None:
    """The warning that `text`'s symbols outside a capped vocabulary are read as <unk>."""
    if text and vocab.unknown_rule(unknown) == "unk":
        missing = vocab.unknown(text)
        if missing:
            err.print(
                Text(f"charrnn: warning: {what} has {len(missing)} {vocab.unit}(s) not in the model's vocabulary, "
                     f"read as <unk>: {shown(missing)} (--unknown error refuses them)"),
                soft_wrap=True,
            )  # fmt: skip


def read_stdin(what: str = "the prime text on stdin", verb: str = "is") -> str:
    stdin = sys.stdin
    if stdin is None or stdin.closed:
        return ""
    try:
        if stdin.isatty():
            return ""
        data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode("utf-8")
    except (OSError, ValueError):
        return ""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{what} {verb} not UTF-8 (byte {e.start})") from None


def utf8_stdout():
    out = sys.stdout
    if out is None:  # started with stdout closed (`>&-`)
        raise CharRNNError("stdout is closed: there is nowhere to write the text")
    if hasattr(out, "reconfigure") and (out.encoding or "").lower().replace("-", "") != "utf8":
        try:
            out.reconfigure(encoding="utf-8")
        except (ValueError, OSError):
            pass
    return out
