"""The `charrnn` command: one thin function per subcommand over the plain library.

    charrnn train corpus.txt --time-limit 600
    echo "ROMEO:" | charrnn sample --length 500 | tee out.txt

stdout carries only the product (generated text, eval figures, info tables); progress,
logs and errors go to stderr. Every error is one line, `charrnn: error: ...`, with a
distinct exit code (see `charrnn.errors`).
"""

from __future__ import annotations

import math
import os
import re
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from charrnn import __version__
from charrnn.config import (
    MODEL_FIELDS, PRESET_NAMES, PRESETS, ModelConfig, TrainConfig, auto_preset,
)
from charrnn.data import Corpus, TextOptions, cached_corpus, check_text_file, iter_text, preprocess
from charrnn.errors import ERROR_PREFIX, LAUNCHED_ENV, BadValueError, CharRNNError, CheckpointError, InputError, PeerLostError

LN2 = math.log(2)
DeviceName = Literal["auto", "cpu", "cuda", "mps"]
PresetName = Literal["auto", "tiny", "small", "medium", "large"]
CORPORA = Path("corpora")
CHECKPOINTS = Path("checkpoints")
MAX_SEED = 2**63 - 1  # torch seeds are signed 64-bit

err = Console(stderr=True, highlight=False)
# Path arguments are declared readable=False: the library checks files itself, so an unreadable
# file gets its own message and exit code (3 for text, 4 for a checkpoint), not a usage error.


class OneLineErrors(TyperGroup):
    """Every failure ends as one line on stderr and an exit code; never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name or "charrnn", complete_var=complete_var,
                              standalone_mode=False, **extra)
        except typer.TyperException as e:  # usage errors: bad option values, missing arguments
            if type(e).__name__ == "NoArgsIsHelpError":  # `charrnn` alone: the help was the answer
                sys.exit(e.exit_code)
            _fail(e.format_message(), e.exit_code)
        except typer.Abort:
            _fail("aborted", 130)
        except PeerLostError as e:
            if not os.environ.get(LAUNCHED_ENV):  # else the launcher names the process that stopped first
                _print_error(str(e))
            _exit(e.exit_code)
        except CharRNNError as e:
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:
            _quiet_broken_pipe()
            sys.exit(0)
        except MemoryError:
            _fail(OUT_OF_MEMORY, 1)
        except RuntimeError as e:  # torch's allocators report a failed allocation as a RuntimeError
            if not _out_of_memory(e):
                raise
            _fail(OUT_OF_MEMORY, 1)
        except OSError as e:
            _fail(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}", 1)
        sys.exit(rv if isinstance(rv, int) else 0)


OUT_OF_MEMORY = "out of memory; try a smaller --batch-size, --seq-len, --hidden or --num-samples"


def _out_of_memory(e: RuntimeError) -> bool:
    text = str(e)
    return type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in text or "out of memory" in text


def _fail(message: str, code: int):
    _print_error(message)
    _exit(code)


def _exit(code: int):
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


def _print_error(message: str) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    try:
        err.print(Text(ERROR_PREFIX + first), soft_wrap=True)
    except BrokenPipeError:
        pass


def _quiet_broken_pipe() -> None:
    # The reader went away (`| head`): point stdout at /dev/null so the final flush is silent.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def in_range(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False):
    """An option callback for bounds that may be open (typer's min/max are closed)."""
    def check(value):
        if value is None:
            return value
        bad = (lo is not None and (value < lo or (lo_open and value == lo))) or (
            hi is not None and (value > hi or (hi_open and value == hi)))
        if bad or value != value or math.isinf(value):
            left = "(" if lo_open else "["
            right = ")" if hi_open or hi is None else "]"
            raise typer.BadParameter(f"{value} is not in {left}{lo if lo is not None else '-inf'}, "
                                     f"{hi if hi is not None else 'inf'}{right}")
        return value
    return check


app = typer.Typer(
    cls=OneLineErrors,
    name="charrnn",
    help="Character-level RNN text generator: learn any UTF-8 text and write more of it.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        typer.echo(f"charrnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
):
    """Character-level RNN text generator: learn any UTF-8 text and write more of it.

    [bold]Examples[/bold]

      charrnn train corpus.txt --preset auto --time-limit 600

      charrnn sample --prime "ROMEO:" --temp 0.8 --length 500

      echo "ROMEO:" | charrnn sample --length 500 | tee out.txt
    """


# --------------------------------------------------------------------------- preprocess

EncodingErrors = Annotated[Literal["strict", "replace", "ignore"], typer.Option(
    "--encoding-errors", help="What to do with bytes that are not UTF-8: strict (refuse), replace (U+FFFD), ignore.")]
Newline = Annotated[Literal["keep", "lf"], typer.Option(
    "--newline", help="keep line endings as they are, or lf to turn CRLF into LF.")]
Force = Annotated[bool, typer.Option("--force", help="Accept a file that looks binary.")]
ValFrac = Annotated[float, typer.Option("--val-frac", callback=in_range(0, 1, hi_open=True),
                                        help="Fraction of the text, at its end, held out for validation.")]
TestFrac = Annotated[float, typer.Option("--test-frac", callback=in_range(0, 1, hi_open=True),
                                         help="Fraction held out for testing, just before the validation split.")]


@app.command("preprocess")
def preprocess_cmd(
    input: Annotated[Path, typer.Argument(help="A UTF-8 text file.", show_default=False, readable=False)],
    out: Annotated[Optional[Path], typer.Option("--out", help="Output directory [default: corpora/<input stem>].")] = None,
    val_frac: ValFrac = 0.1,
    test_frac: TestFrac = 0.0,
    encoding_errors: EncodingErrors = "strict",
    newline: Newline = "keep",
    force: Force = False,
):
    """Encode a text file as ids over its vocabulary of code points, with train/val/test splits.

    Writes DIR/ids.bin (memory-mappable, smallest unsigned dtype), DIR/vocab.json and
    DIR/meta.json. Splits are contiguous: val is the last --val-frac of the text.

    [bold]Examples[/bold]

      charrnn preprocess tinyshakespeare.txt

      charrnn preprocess poems.txt --out corpora/poems --val-frac 0.05 --test-frac 0.05
    """
    opts = TextOptions(encoding_errors, newline, force)
    out = (out or CORPORA / input.stem).absolute()  # `--out .` has no name to build a temporary one from
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not (out / "meta.json").is_file()):
        raise BadValueError(f"--out {out} exists and is not a corpus directory; choose another --out "
                            "(preprocess replaces only its own output)")
    corpus = preprocess(input, out, val_frac, test_frac, opts)
    _corpus_table(corpus)


def _corpus_table(corpus: Corpus) -> None:
    m = corpus.meta
    t = Table(title=f"corpus {corpus.path}", show_header=False, title_justify="left")
    t.add_row("source", f"{m['source']} ({m['source_bytes']:,} bytes)")
    t.add_row("sha256", m["source_sha256"])
    t.add_row("characters", f"{m['chars']:,}")
    t.add_row("vocabulary", f"{m['vocab_size']} code points, stored as {m['dtype']}")
    sizes = m["split_sizes"]
    t.add_row("splits", "  ".join(f"{k} {sizes[k]:,}" for k in ("train", "val", "test") if sizes[k]))
    err.print(t)


# --------------------------------------------------------------------------- train

def _preset_help() -> str:
    rows = ["[bold]Presets[/bold] (explicit flags override them; auto picks large on CUDA or without --time-limit, "
            "else small up to 120 s, medium up to 3600 s, large beyond):", ""]
    for name, p in PRESETS.items():
        rows.append(f"  {name:<7} {p['layers']}x{p['hidden']} {p.get('model', 'lstm')}, dropout {p['dropout']}, "
                    f"batch {p['batch_size']} x seq {p['seq_len']}, lr {p['lr']}, weight decay {p.get('weight_decay', 0.0)}")
    return "\n\n".join(["\n".join(rows[:1])] + ["\n".join(rows[2:])])


@app.command("train", epilog=_preset_help())
def train_cmd(
    input: Annotated[Optional[Path], typer.Argument(
        readable=False,
        help="A UTF-8 text file (preprocessed on the fly and cached in corpora/) or a preprocessed directory. "
             "Optional with --resume.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run directory [default: checkpoints/<corpus>-<time>, or the resumed run's].")] = None,
    preset: Annotated[Optional[PresetName], typer.Option("--preset", help="Named size and recipe; see the table below.")] = None,
    model: Annotated[Optional[Literal["lstm", "gru", "rnn"]], typer.Option("--model", help="Recurrent cell [default: lstm].")] = None,
    hidden: Annotated[Optional[int], typer.Option("--hidden", min=1, help="Hidden units per layer [default: 512].")] = None,
    layers: Annotated[Optional[int], typer.Option("--layers", min=1, help="Recurrent layers [default: 3].")] = None,
    dropout: Annotated[Optional[float], typer.Option("--dropout", callback=in_range(0, 1, hi_open=True), help="Dropout between layers [default: 0].")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Contiguous streams per batch [default: 64].")] = None,
    seq_len: Annotated[Optional[int], typer.Option("--seq-len", min=1, help="Characters per truncated-BPTT window [default: 128].")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", callback=in_range(0, None, lo_open=True), help="Peak learning rate [default: 0.002].")] = None,
    warmup_steps: Annotated[Optional[int], typer.Option("--warmup-steps", min=0, help="Linear warm-up steps [default: 100].")] = None,
    decay_steps: Annotated[Optional[int], typer.Option("--decay-steps", min=1, help="Cosine schedule horizon in steps [default: the run's --max-steps or --time-limit].")] = None,
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", min=0.0, help="AdamW weight decay on matrices [default: 0].")] = None,
    grad_clip: Annotated[Optional[float], typer.Option("--grad-clip", min=0.0, help="Max global gradient norm, 0 = off [default: 1].")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Total optimizer steps (counted across resumes).")] = None,
    max_epochs: Annotated[Optional[float], typer.Option("--max-epochs", callback=in_range(0, None, lo_open=True), help="Total passes over the training split [default: 20 when no limit is set].")] = None,
    time_limit: Annotated[Optional[float], typer.Option("--time-limit", callback=in_range(0, None, lo_open=True), help="Stop after this many seconds of training (counted across resumes), then evaluate and save.")] = None,
    eval_every: Annotated[Optional[int], typer.Option("--eval-every", min=0, help="Steps between full validation passes, 0 = only at the end [default: 500].")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option("--checkpoint-every", min=0, help="Steps between writes of last.pt [default: 500].")] = None,
    sample_every: Annotated[Optional[int], typer.Option("--sample-every", min=0, help="Steps between progress samples, 0 = never [default: 0].")] = None,
    sample_length: Annotated[Optional[int], typer.Option("--sample-length", min=1, help="Characters per progress sample [default: 200].")] = None,
    sample_temp: Annotated[Optional[float], typer.Option("--sample-temp", min=0.0, help="Temperature of progress samples [default: 0.8].")] = None,
    patience: Annotated[Optional[int], typer.Option("--patience", min=0, help="Stop after this many evals without a better val loss, 0 = never.")] = None,
    log_every: Annotated[Optional[int], typer.Option("--log-every", min=1, help="Steps between metrics.jsonl lines [default: 10].")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", readable=False, help="Continue a run: its directory (last.pt) or a checkpoint file.")] = None,
    device: Annotated[Optional[DeviceName], typer.Option("--device", help="auto picks cuda, then mps, then cpu.")] = None,
    precision: Annotated[Optional[Literal["auto", "fp32", "bf16", "fp16"]], typer.Option("--precision", help="auto: bf16 where the hardware is fast at it, else fp32.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, max=MAX_SEED, help="Seed for weights, dropout and samples [default: 1337].")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or samples on the console.")] = False,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="Data-parallel processes on this machine (one per GPU; gloo on the CPU).")] = 1,
    val_frac: ValFrac = 0.1,
    test_frac: TestFrac = 0.0,
    encoding_errors: EncodingErrors = "strict",
    newline: Newline = "keep",
    force: Force = False,
):
    """Train a model on a text file; writes last.pt, best.pt, metrics.jsonl and samples.txt.

    Runs on the GPU when there is one (cuDNN LSTM, bf16 autocast), else on the CPU (bf16
    autocast where the CPU has AMX or AVX512-BF16). Ctrl-C saves last.pt and tells how to
    resume; --resume continues exactly where the run stopped.

    [bold]Examples[/bold]

      charrnn train tinyshakespeare.txt --preset auto --time-limit 600

      charrnn train tinyshakespeare.txt --hidden 128 --layers 2 --max-steps 500 --sample-every 100

      charrnn train --resume checkpoints/tinyshakespeare-20261128-101500 --max-steps 5000
    """
    from charrnn import checkpoint, distributed
    from charrnn.train import train

    rank = int(os.environ.get("RANK", "0"))
    quiet = quiet or rank != 0
    distributed.die_with_launcher()

    explicit = {k: v for k, v in dict(
        model=model, hidden=hidden, layers=layers, dropout=dropout, batch_size=batch_size, seq_len=seq_len,
        lr=lr, warmup_steps=warmup_steps, decay_steps=decay_steps, weight_decay=weight_decay, grad_clip=grad_clip, max_steps=max_steps,
        max_epochs=max_epochs, time_limit=time_limit, eval_every=eval_every, checkpoint_every=checkpoint_every,
        sample_every=sample_every, sample_length=sample_length, sample_temp=sample_temp, patience=patience,
        log_every=log_every, device=device, precision=precision, seed=seed,
    ).items() if v is not None}
    opts = TextOptions(encoding_errors, newline, force)

    ckpt = None
    if resume is not None:
        ckpt_path = checkpoint.resolve(resume, prefer="last.pt")
        ckpt = checkpoint.load(ckpt_path)
        checkpoint.check_resumable(ckpt, ckpt_path)
        fixed = checkpoint.model_config(ckpt)
        for name in MODEL_FIELDS:
            if name in explicit and explicit[name] != getattr(fixed, name):
                raise BadValueError(f"--{name.replace('_', '-')} cannot change on resume: the architecture comes from the checkpoint")
        if preset is not None:
            raise BadValueError("--preset cannot be used with --resume: the run's configuration comes from the checkpoint")
        cfg = checkpoint.train_config(ckpt).with_overrides(explicit)
        if input is None:
            input = _checkpoint_corpus(ckpt, "name the corpus file or directory")
        run_dir = out or (resume if resume.is_dir() else ckpt_path.parent)
    else:
        if input is None:
            raise BadValueError("name a text file or preprocessed corpus to train on (or --resume a run)")
        cfg = None
        run_dir = out
    if rank == 0 and run_dir is not None:  # before anything is written, the corpus cache included
        _check_run_dir(run_dir, ckpt_path if ckpt is not None else None, ckpt)

    corpus = _open_corpus(input, val_frac, test_frac, opts)
    if ckpt is None:
        from charrnn.runtime import pick_device
        chosen = preset
        if preset == "auto":
            chosen = auto_preset(time_limit, pick_device(explicit.get("device", "auto")).type)
            if rank == 0:
                err.print(f"preset auto -> {chosen}")
        settings = {**(PRESETS[chosen] if chosen else {}), **explicit}
        model_cfg = ModelConfig.from_dict({"vocab_size": len(corpus.vocab), **settings})
        cfg = TrainConfig().with_overrides(settings)
        if rank == 0 and pick_device(cfg.device).type == "cpu":  # a GPU's own OOM error is one line too
            _check_training_memory(model_cfg, cfg)
        run_dir = run_dir or _new_run_dir(corpus.name)
    else:
        model_cfg = None

    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        # the corpus is cached and the run directory named here, once, before the processes start
        distributed.Dist(0, nproc).share(cfg.batch_size)  # refused here, not once by each process
        code, message = distributed.launch(nproc, [*_without_nproc(sys.argv[1:]), "--out", str(run_dir)])
        if message:
            _fail(message, code)
        raise typer.Exit(code)
    view = ConsoleView(quiet)
    stop = StopFlag(speak=rank == 0)
    with stop.installed():
        try:
            result = train(corpus, model_cfg, cfg, run_dir, view, resume=ckpt, should_stop=stop)
        finally:
            view.close()

    if rank:
        raise typer.Exit(0 if result.stopped != "interrupted" else 143 if stop.signum == signal.SIGTERM else 130)
    if result.stopped == "interrupted":
        # soft_wrap: a long path must stay on one line to be copied
        err.print(f"interrupted at step {result.step}; saved {run_dir / 'last.pt'}", soft_wrap=True)
        err.print(f"resume with: charrnn train --resume {run_dir}", soft_wrap=True)
        raise typer.Exit(143 if stop.signum == signal.SIGTERM else 130)
    _report_after_training(run_dir)
    best = result.best_val_loss
    if math.isfinite(best):
        val = f"best val loss {best:.4f} nats/char ({best / LN2:.4f} bits/char) at step {result.best_step}"
    elif not corpus.meta.get("split_sizes", {}).get("val"):
        val = "no val loss (the corpus has no validation split)"
    else:
        val = "no finite val loss"
    err.print(f"done: {result.step} steps in {result.elapsed_s:.1f} s ({result.stopped.replace('_', '-')}); "
              f"{val}; checkpoint {run_dir / 'best.pt'}", soft_wrap=True)


def _check_run_dir(run_dir: Path, ckpt_path: Path | None, ckpt: dict | None) -> None:
    """Refuse a run directory whose checkpoints this run would overwrite by mistake: another
    run's, or a newer last.pt than the checkpoint being resumed."""
    from charrnn import checkpoint

    held = [n for n in ("last.pt", "best.pt", "metrics.jsonl", "samples.txt") if (run_dir / n).exists()]
    if not held:
        return
    if ckpt_path is None or run_dir.resolve() != ckpt_path.parent.resolve():
        if "last.pt" in held or "best.pt" in held:
            raise BadValueError(f"--out {run_dir} already holds a run ({', '.join(held)}); continue it with "
                                f"--resume {run_dir}, or choose another --out")
        raise BadValueError(f"--out {run_dir} holds the logs of an earlier run ({', '.join(held)}); "
                            "choose another --out, or remove them")
    last = run_dir / "last.pt"
    if not last.exists() or last.resolve() == ckpt_path.resolve():
        return
    try:
        newer = checkpoint.load(last)["step"] > ckpt["step"]
    except (CheckpointError, KeyError, TypeError):
        return  # a damaged last.pt is what resuming from best.pt is for
    if newer:
        raise BadValueError(f"{last} is ahead of {ckpt_path.name} (step {ckpt['step']}) and resuming here would "
                            f"overwrite it; add --out DIR to go on from {ckpt_path.name} in a new run directory")


def _without_nproc(argv: list[str]) -> list[str]:
    args, skip = [], False
    for a in argv:
        if skip or a == "--nproc":
            skip = not skip
            continue
        if not a.startswith("--nproc="):
            args.append(a)
    return args


def _open_corpus(path: Path, val_frac: float, test_frac: float, opts: TextOptions) -> Corpus:
    if path.is_dir():
        return Corpus.load(path)
    return cached_corpus(path, CORPORA, val_frac, test_frac, opts)


def _checkpoint_corpus(ckpt: dict, instead: str) -> Path:
    """The preprocessed corpus a checkpoint was trained on, where it is still on this machine."""
    path = ckpt.get("corpus", {}).get("path")
    if not path or not (Path(path) / "meta.json").is_file():
        raise InputError(f"the checkpoint's corpus is not on this machine; {instead}")
    return Path(path)


def _new_run_dir(name: str) -> Path:
    # The name comes from the corpus's meta.json: keep it to one plain path component.
    name = re.sub(r"[^\w.-]+", "_", Path(name).name).lstrip(".") or "run"
    base = CHECKPOINTS / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


class StopFlag:
    """SIGINT / SIGTERM ask the loop to stop after the current step; a second Ctrl-C stops at once."""

    def __init__(self, speak: bool = True):
        self.signum = None
        self.speak = speak  # only rank 0 of a data-parallel run: the others' stderr may be gone

    def __call__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        if self.speak:
            err.print("stopping after this step to save last.pt (Ctrl-C again to quit at once)")

    def installed(self):
        flag = self

        class _Ctx:
            def __enter__(self):
                self.old = {s: signal.signal(s, flag._handle) for s in (signal.SIGINT, signal.SIGTERM)}

            def __exit__(self, *exc):
                for s, h in self.old.items():
                    signal.signal(s, h)

        return _Ctx()


class ConsoleView:
    """Training callbacks -> a rich progress bar and samples on stderr (or plain lines off a terminal)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task = None
        self.by_time = False

    def on_start(self, info: dict) -> None:
        if self.quiet:
            return
        mc, tc = info["model_config"], info["train_config"]
        err.print(
            f"{'resuming' if info['resumed'] else 'training'} {mc.layers}x{mc.hidden} {mc.model} "
            f"({info['params']:,} parameters) on {info['corpus']['name']} · {info['device']} {info['precision']} · "
            f"batch {tc.batch_size}x{tc.seq_len} · run {info['run_dir']}",
            soft_wrap=True,
        )
        self.by_time = info["total_steps"] is None
        total = info["time_limit"] if self.by_time else info["total_steps"]
        self.progress = Progress(
            TextColumn("[bold]step {task.fields[step]}"),
            BarColumn(),
            MofNCompleteColumn() if not self.by_time else TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val {task.fields[val]}"),
            TextColumn("{task.fields[cps]} chars/s"),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )
        self.task = self.progress.add_task("train", total=total, step=info["start_step"], loss="-", val="-", cps="-")
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
        err.rule(f"sample at step {step} · train {m['train_loss']:.3f} · val {val}")
        err.print(Text(text.strip("\n")), soft_wrap=True)
        err.rule()

    def on_checkpoint(self, path: Path, kind: str) -> None: ...

    def on_warning(self, message: str) -> None:
        err.print(Text(f"charrnn: warning: {message}"), soft_wrap=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


# --------------------------------------------------------------------------- sample

@app.command("sample")
def sample_cmd(
    checkpoint_path: Annotated[Optional[Path], typer.Argument(
        readable=False,
        metavar="[CHECKPOINT_OR_RUN_DIR]",
        help="A checkpoint file or run directory (its best.pt) [default: the newest run in checkpoints/].",
        show_default=False)] = None,
    temp: Annotated[float, typer.Option("--temp", "-t", min=0.0, help="Temperature; 0 = always the likeliest character.")] = 0.8,
    prime: Annotated[Optional[str], typer.Option("--prime", "-p", help="Text to start from [default: stdin when it is not a terminal].")] = None,
    length: Annotated[int, typer.Option("--length", "-n", min=0, help="New characters to generate per sample.")] = 1000,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, max=MAX_SEED, help="Same seed, same text [default: random].")] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", min=1, help="Sample only among the K likeliest characters.")] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", callback=in_range(0, 1, lo_open=True), help="Sample from the smallest set of characters whose probability reaches P.")] = None,
    stop: Annotated[Optional[str], typer.Option("--stop", help="End a sample when this string appears (it is not printed).")] = None,
    num_samples: Annotated[int, typer.Option("--num-samples", min=1, help="Independent samples, generated together.")] = 1,
    separator: Annotated[str, typer.Option("--separator", help="Printed between samples.")] = "\n\n",
    unknown: Annotated[Literal["error", "skip"], typer.Option("--unknown", help="A prime character outside the vocabulary: error, or skip it.")] = "error",
    precision: Annotated[Literal["fp32", "bf16"], typer.Option("--precision", help="fp32: exact, the same text on every machine; bf16: matrix products in bfloat16, much faster for many --num-samples on CPUs with AVX512-BF16/AMX and on GPUs, but different text.")] = "fp32",
    device: Annotated[DeviceName, typer.Option("--device", help="auto picks cuda, then mps, then cpu.")] = "cpu",
):
    """Generate text from a trained model to stdout, streamed as it is written.

    [bold]Examples[/bold]

      charrnn sample --prime "ROMEO:" --temp 0.8 --length 500 --seed 7

      echo "ROMEO:" | charrnn sample checkpoints/my-run --length 500 | tee out.txt

      charrnn sample --temp 0 --length 200            [dim]# greedy: always the likeliest character[/dim]

      charrnn sample --num-samples 4 --stop $'\\n\\n'   [dim]# four paragraphs[/dim]

      charrnn sample --num-samples 32 --precision bf16 --length 2000 > many.txt
    """
    from charrnn import checkpoint
    from charrnn.runtime import pick_device, pick_precision
    from charrnn.sample import generate

    path = checkpoint.resolve(checkpoint_path or checkpoint.latest_run(CHECKPOINTS))
    dev = pick_device(device)
    pick_precision(precision, dev)  # refuses what the device cannot do
    model, vocab, _ = checkpoint.load_model(path, dev)
    if prime is None:
        prime = _read_stdin_prime()
    _check_sampling_memory(model.config, num_samples, len(prime), length, dev)
    out = _utf8_stdout()
    rest: list[list[str]] = [[] for _ in range(num_samples - 1)]
    try:
        for pieces in generate(model, vocab, prime=prime, length=length, temp=temp, top_k=top_k, top_p=top_p,
                               stop=stop, seed=seed, num_samples=num_samples, unknown=unknown,
                               precision=precision):
            if pieces[0]:
                out.write(pieces[0])
                out.flush()
            for buf, piece in zip(rest, pieces[1:]):
                buf.append(piece)
        for buf in rest:
            out.write(separator + "".join(buf))
        out.write("\n")
        out.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()


def _check_sampling_memory(mc: ModelConfig, num_samples: int, prime_len: int, length: int, device) -> None:
    """Refuse a --num-samples that cannot fit, rather than meet the kernel's OOM killer: per
    stream, the prime's pass through the model, the states and gates of a step, the float64
    arithmetic of picking a character, and the text of every stream but the first, held back."""
    import torch

    p = max(prime_len, 1)
    per_stream = (4 * (2 * p * (mc.hidden * (mc.layers + 1) + mc.vocab_size) + 16 * mc.layers * mc.hidden)
                  + 48 * mc.vocab_size + 8 * length)
    available = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else _memory_available()
    _check_memory(num_samples * per_stream, available, f"--num-samples {num_samples}", "generate fewer at a time")


def _check_training_memory(mc: ModelConfig, cfg: TrainConfig) -> None:
    """Refuse a model that cannot fit before minutes are spent building it: four float32 copies
    of the weights (weights, gradients, AdamW's two moments) and, per character of a batch, the
    activations every layer keeps for the backward pass."""
    g = 4 if mc.model == "lstm" else 3 if mc.model == "gru" else 1  # gates per layer
    params = mc.vocab_size * mc.hidden * 2 + mc.layers * g * mc.hidden * (2 * mc.hidden + 2)
    activations = cfg.batch_size * cfg.seq_len * (mc.layers * (g + 2) * mc.hidden + 2 * mc.vocab_size)
    _check_memory(4 * (4 * params + activations), _memory_available(), f"a {mc.layers}x{mc.hidden} {mc.model}",
                  "lower --hidden, --layers, --batch-size or --seq-len")


def _check_memory(need: int, available: int | None, what: str, instead: str) -> None:
    if available is not None and need > available:
        raise BadValueError(f"{what} would need about {need / 2**30:,.1f} GiB of memory, more than the "
                            f"{available / 2**30:,.1f} GiB available; {instead}")


def _memory_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None  # not Linux: no check


def _read_stdin_prime() -> str:
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
        raise InputError(f"the prime text on stdin is not UTF-8 (byte {e.start})") from None


def _utf8_stdout():
    out = sys.stdout
    if out is None:  # started with stdout closed (`>&-`)
        raise CharRNNError("stdout is closed: there is nowhere to write the text")
    if hasattr(out, "reconfigure") and (out.encoding or "").lower().replace("-", "") != "utf8":
        try:
            out.reconfigure(encoding="utf-8")
        except (ValueError, OSError):
            pass
    return out


# --------------------------------------------------------------------------- eval

@app.command("eval")
def eval_cmd(
    checkpoint_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT_OR_RUN_DIR", help="A checkpoint file or run directory (its best.pt).", show_default=False, readable=False)],
    split: Annotated[Literal["val", "test", "train"], typer.Option("--split", help="Split of the checkpoint's corpus to evaluate.")] = "val",
    file: Annotated[Optional[Path], typer.Option("--file", help="Evaluate on this UTF-8 file instead.", readable=False)] = None,
    unknown: Annotated[Literal["error", "skip"], typer.Option("--unknown", help="Characters of --file outside the vocabulary: error, or skip them.")] = "error",
    device: Annotated[DeviceName, typer.Option("--device", help="auto picks cuda, then mps, then cpu.")] = "auto",
):
    """Loss of a model on a split of its corpus, or on any UTF-8 file, in nats and bits per character.

    [bold]Examples[/bold]

      charrnn eval checkpoints/my-run

      charrnn eval checkpoints/my-run/best.pt --file holdout.txt
    """
    import numpy as np

    from charrnn import checkpoint
    from charrnn.runtime import pick_device, pick_precision
    from charrnn.train import evaluate

    path = checkpoint.resolve(checkpoint_path)
    dev = pick_device(device)
    model, vocab, ckpt = checkpoint.load_model(path, dev)
    tc = checkpoint.train_config(ckpt)
    if file is not None:
        text = "".join(iter_text(check_text_file(file)))
        ids = np.asarray(vocab.encode(text, unknown=unknown, context=str(file)), dtype=np.int64)
        what = str(file)
    else:
        cpath = _checkpoint_corpus(ckpt, "use --file to evaluate on a text file")
        corpus = Corpus.load(cpath)
        if corpus.vocab != vocab:
            raise CheckpointError(f"corpus {cpath} has a different vocabulary than the checkpoint")
        ids = corpus.split(split)
        what = f"{split} split of {corpus.name}"
    if len(ids) < 2:
        raise InputError(f"{what} has fewer than 2 characters: nothing to evaluate")
    loss = evaluate(model, ids, tc.eval_batch_size, tc.seq_len, dev, pick_precision("fp32", dev))
    typer.echo(f"{what}: {loss:.4f} nats/char, {loss / LN2:.4f} bits/char over {len(ids) - 1:,} predictions")


# --------------------------------------------------------------------------- info

@app.command("info")
def info_cmd(
    checkpoint_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT_OR_RUN_DIR", help="A checkpoint file or run directory (its best.pt).", show_default=False, readable=False)],
):
    """Show what a checkpoint holds: model, sizes, training state, corpus, provenance.

    [bold]Example[/bold]

      charrnn info checkpoints/my-run/best.pt
    """
    from charrnn import checkpoint

    path = checkpoint.resolve(checkpoint_path)
    model, vocab, ckpt = checkpoint.load_model(path)
    mc, tc = model.config, checkpoint.train_config(ckpt)
    from charrnn.report import as_dict, is_number

    # the record fields are shown, not used: a damaged one shows as "?" instead of failing
    corpus = as_dict(ckpt.get("corpus"))
    best = ckpt.get("best_val_loss")
    best_bits = best / LN2 if is_number(best) else None
    t = Table(title=str(path), show_header=False, title_justify="left")
    t.add_row("model", f"{mc.model} {mc.layers} x {mc.hidden}, dropout {mc.dropout}")
    t.add_row("parameters", f"{model.num_params():,}")
    t.add_row("vocabulary", f"{len(vocab)} characters")
    t.add_row("step", f"{_number(ckpt.get('step'), ',')} (epoch {_number(ckpt.get('epoch'))})")
    t.add_row("best val loss", f"{_number(best, '.4f')} nats/char, {_number(best_bits, '.4f')} bits/char "
                               f"(step {_number(ckpt.get('best_step'))})")
    t.add_row("train loss", _loss_sparkline(ckpt.get("history")) or "-")  # it skips damaged entries
    t.add_row("training", f"batch {tc.batch_size} x seq {tc.seq_len}, lr {tc.lr}, seed {tc.seed}, "
                          f"{_number(ckpt.get('elapsed_s'), '.1f')} s")
    t.add_row("precision", f"{ckpt.get('precision', '?')} on {ckpt.get('device', '?')}")
    t.add_row("corpus", f"{corpus.get('name', '?')} ({_number(corpus.get('chars'), ',')} characters)")
    t.add_row("corpus sha256", str(corpus.get("sha256")))
    t.add_row("created", f"{ckpt.get('created', '?')} by charrnn {ckpt.get('charrnn_version', '?')}, "
                         f"torch {ckpt.get('torch_version', '?')}")
    t.add_row("format", f"{ckpt['format']} v{ckpt['version']}, {path.stat().st_size:,} bytes")
    Console(highlight=False).print(t)


def _number(value, spec: str = ""):
    """A number formatted by `spec`, or "?" for a missing or damaged one."""
    from charrnn.report import is_number

    return format(value, spec) if is_number(value) else "?"


# --------------------------------------------------------------------------- visualize, report

def _loss_sparkline(history: list) -> str:
    from charrnn.report import loss_sparkline
    return loss_sparkline(history)


def _report_after_training(run_dir: Path) -> None:
    from charrnn.report import load_run, write_report

    try:
        run = load_run(run_dir)  # reads last.pt once, for the sparkline and the report
        spark = _loss_sparkline((run.ckpt or {}).get("history", []))
        if spark:
            err.print(f"train loss {spark}")
        err.print(f"report: {write_report(run_dir, run=run)}", soft_wrap=True)
    except (CharRNNError, OSError) as e:  # the model is saved; a report that fails must not fail the run
        err.print(Text(f"charrnn: warning: no report written: {e}"))


@app.command("visualize")
def visualize_cmd(
    checkpoint_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT_OR_RUN_DIR", help="A checkpoint file or run directory (its best.pt).", show_default=False, readable=False)],
    text: Annotated[Optional[Path], typer.Option("--text", readable=False, help="A UTF-8 file to run through the model [default: the start of the checkpoint's validation split].")] = None,
    prime: Annotated[Optional[str], typer.Option("--prime", help="Text to run through the model, given on the command line.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="The HTML page to write [default: visualize.html beside the checkpoint].")] = None,
    max_chars: Annotated[int, typer.Option("--max-chars", min=2, help="Characters of the text to show (the page grows with it).")] = 3000,
    unknown: Annotated[Literal["error", "skip"], typer.Option("--unknown", help="Characters outside the vocabulary: error, or skip them.")] = "error",
):
    """Write one self-contained HTML page showing what the model sees in a text.

    Each character is shaded by the probability the model gave it; hovering or tapping it
    shows the five likeliest next characters. A picker recolours the text by any hidden or
    cell-state unit, and "interesting cells" lists the units that track features of the
    text (inside quotes, position in line, start of word, ...). Works offline.

    [bold]Examples[/bold]

      charrnn visualize checkpoints/my-run

      charrnn visualize checkpoints/my-run/best.pt --text act1.txt --out act1.html --max-chars 2000

      charrnn visualize checkpoints/my-run --prime "ROMEO: (aside) \"Is she not down so late?\""
    """
    from charrnn import checkpoint
    from charrnn.visualize import write_page

    if text is not None and prime is not None:
        raise BadValueError("give --text or --prime, not both")
    path = checkpoint.resolve(checkpoint_path)
    model, vocab, ckpt = checkpoint.load_model(path)
    if prime is not None:
        content, what = prime, "--prime"
    elif text is not None:
        content, what = "".join(iter_text(check_text_file(text))), str(text)
    else:
        corpus = Corpus.load(_checkpoint_corpus(ckpt, "give --text FILE or --prime TEXT"))
        content, what = corpus.vocab.decode(corpus.split("val")[:max_chars]), f"val split of {corpus.name}"
    ids = vocab.encode(content, unknown=unknown, context=what)
    content = vocab.decode(ids[:max_chars])
    page = write_page(model, vocab, content, out or path.parent / "visualize.html", title=f"{path.parent.name}/{path.name} on {what}")
    err.print(f"wrote {page} ({page.stat().st_size / 1e6:.1f} MB, {len(content):,} characters)", soft_wrap=True)


@app.command("report")
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A directory written by `charrnn train`.", show_default=False, readable=False)],
    out: Annotated[Optional[Path], typer.Option("--out", help="The HTML page to write [default: RUN_DIR/report.html].")] = None,
):
    """Write one self-contained HTML page about a training run.

    Train and val loss by step and by time, learning rate and speed as charts; the run's
    configuration; and the progress samples as a timeline from noise to words (train with
    --sample-every to have them). Works offline. `charrnn train` writes one at the end.

    [bold]Examples[/bold]

      charrnn report checkpoints/my-run

      charrnn report checkpoints/my-run --out ~/my-run.html
    """
    from charrnn.report import write_report

    err.print(f"wrote {write_report(run_dir, out)}", soft_wrap=True)


def main() -> None:
    app()
