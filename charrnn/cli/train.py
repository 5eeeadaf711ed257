"""`charrnn train`: plan the run, start the processes of --nproc, train with the progress on
stderr, then write the report and say how it ended."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from charrnn.cli.console import ConsoleView, report_after_training, say_skipped, say_stopping
from charrnn.cli.errors import err, fail
from charrnn.cli.options import Given, QuietOpt, inputs, with_options
from charrnn.config import CorpusOptions, ModelConfig, TrainConfig
from charrnn.training.presets import FINETUNE_LR_FRAC, FINETUNE_WARMUP_STEPS, PRESETS, preset_settings
from charrnn.values import Units

Inputs = inputs(
    "A UTF-8 text file (preprocessed on the fly, cached in corpora/), a preprocessed directory, or files, "
    "directories and glob patterns (a document each: see preprocess --help). Optional with --resume."
)
Out = Annotated[
    Path | None,
    typer.Option(
        "--out",
        show_default=False,
        help="Run directory (default: checkpoints/<corpus>-<time>, or the resumed run's).",
        rich_help_panel="Run",
    ),
]
Preset = Annotated[
    Literal[("auto", *PRESETS)] | None,
    typer.Option("--preset", help="Named size and recipe; see the table below.", rich_help_panel="Run"),
]
Resume = Annotated[
    Path | None,
    typer.Option(
        "--resume",
        readable=False,
        help="Continue a run: its directory (last.pt) or a checkpoint file.",
        rich_help_panel="Run",
    ),
]
InitFrom = Annotated[
    Path | None,
    typer.Option(
        "--init-from",
        readable=False,
        help="Fine-tune: start a new run from a trained model's weights (its run directory, best.pt, or a "
        "checkpoint file). See the recipe below.",
        rich_help_panel="Run",
    ),
]
Nproc = Annotated[
    int,
    typer.Option(
        "--nproc",
        min=1,
        help="Data-parallel processes on this machine (one per GPU; gloo on the CPU).",
        rich_help_panel="Device",
    ),
]


def preset_help() -> str:
    """The presets table and the fine-tuning recipe, below train's options."""
    rows = []
    for name in PRESETS:
        p = preset_settings(name)
        extras = [
            f"wd {p['weight_decay']:g}" if p["weight_decay"] else "",
            "tied" if p["tie_embeddings"] else "",
            f"ema {p['ema']:g}" if p["ema"] else "",
            f"locked {p['locked_dropout']:g}" if p["locked_dropout"] else "",
            f"weight dropout {p['weight_dropout']:g}" if p["weight_dropout"] else "",
            f"<= {p['max_epochs']:g} epochs" if p["max_epochs"] else "",
        ]
        rows.append(
            f"  {name:<7} {p['layers']}x{p['hidden']} {p['model']}, batch {p['batch_size']}x{p['seq_len']}, "
            f"lr {p['lr']:g}, dropout {p['dropout']:g}" + "".join(f", {e}" for e in extras if e)
        )
    return (
        "[bold]Presets[/bold] (flags override them). auto with --time-limit on the CPU trains each preset a few "
        "steps first (within 3% of the limit) and picks the one whose characters in that time reach the lowest "
        "val loss measured on tiny-shakespeare (the console says why); on CUDA it picks xl, and without "
        "--time-limit large. wd: weight decay, tied: tied embeddings, ema: weight average, locked: locked dropout."
        "\n\n" + "\n".join(rows) + "\n\n[bold]Fine-tuning[/bold] (--init-from RUN): a new run starts from RUN's "
        "weights and architecture (--model, --hidden and --layers may only repeat it). Characters RUN knows keep "
        "their ids; new ones get fresh rows, their output bias set from their frequency in the new text. The "
        f"recipe is RUN's, with --lr at {FINETUNE_LR_FRAC} of RUN's and {FINETUNE_WARMUP_STEPS} --warmup-steps, and "
        "the model is evaluated before the first step; explicit flags override the recipe."
    )


@with_options(CorpusOptions, ModelConfig, TrainConfig)
def train_cmd(
    inputs: Inputs = None,
    preset: Preset = None,
    opts: Given = None,
    out: Out = None,
    resume: Resume = None,
    init_from: InitFrom = None,
    quiet: QuietOpt = False,
    nproc: Nproc = 1,
):
    """Train a model on a text file; writes last.pt, best.pt, metrics.jsonl and samples.txt.

    Runs on the GPU when there is one (cuDNN LSTM, bf16 autocast), else on the CPU (bf16
    autocast where the CPU has AMX or AVX512-BF16). Ctrl-C saves last.pt and tells how to
    resume; --resume continues exactly where the run stopped. Options left out come from
    --preset, or when resuming from the run itself.

    [bold]Examples[/bold]

      charrnn train tinyshakespeare --preset auto --time-limit 600        [dim]# the bundled corpus[/dim]

      charrnn train poems.txt --hidden 128 --max-steps 500 --sample-every 100

      charrnn train --resume checkpoints/shakespeare --max-steps 5000

      charrnn train jokes.txt --init-from checkpoints/shakespeare --time-limit 120

      charrnn train names/ --doc-sep '\\n' --labels from-file --out checkpoints/names   [dim]# sample --label[/dim]

      charrnn train comments.txt --tokens word --max-vocab 8000 --doc-sep '\\n'   [dim]# words; a comment a line[/dim]
    """
    from charrnn.training import distributed  # see the note on lazy imports in charrnn.cli.app
    from charrnn.training.plan import plan_training

    is_main = distributed.from_env().is_main  # the other processes of --nproc stay silent
    distributed.die_with_launcher()
    plan = plan_training(
        inputs or None,
        out=out,
        preset=preset,
        resume=resume,
        init_from=init_from,
        settings=opts.settings(ModelConfig, TrainConfig),
        corpus=opts.of(CorpusOptions),
    )
    if is_main:
        say_skipped(plan.corpus.meta)
        if preset == "auto":
            err.print(f"preset auto -> {plan.preset}{_auto_reason(plan.auto, plan.preset)}", soft_wrap=True)
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        _launch(plan, nproc)
    result = _train(plan, quiet or not is_main, is_main)
    if is_main:
        report_after_training(plan.run_dir)
        err.print(_done(plan, result), soft_wrap=True)


def _launch(plan, nproc: int) -> None:
    """Run this same command in `nproc` processes, one rank each, and end with their outcome."""
    from charrnn.training import distributed
    from charrnn.training.plan import AUTO_ENV

    if plan.auto is not None:  # the processes train what was chosen here, not a choice of their own
        os.environ[AUTO_ENV] = json.dumps(plan.auto)
    code, message = distributed.relaunch(
        nproc, sys.argv[1:], run_dir=plan.run_dir, batch_size=plan.train_config.batch_size
    )
    if message:
        fail(message, code)
    raise typer.Exit(code)


def _train(plan, quiet: bool, is_main: bool):
    """Train with the progress view; Ctrl-C or SIGTERM saves last.pt, says how to resume, and
    ends with the signal's exit code."""
    from charrnn.training.interrupt import StopFlag
    from charrnn.training.plan import run_training

    view = ConsoleView(quiet)
    stop = StopFlag(on_stop=say_stopping if is_main else None)
    with stop.installed():
        try:
            result = run_training(plan, callbacks=view, should_stop=stop)
        finally:
            view.close()
    if result.stopped == "interrupted":
        if is_main:  # soft_wrap: a long path must stay on one line to be copied
            err.print(f"interrupted at step {result.step}; saved {plan.run_dir / 'last.pt'}", soft_wrap=True)
            err.print(f"resume with: charrnn train --resume {plan.run_dir}", soft_wrap=True)
        raise typer.Exit(stop.exit_code())
    return result


def _done(plan, result) -> str:
    """The last line: how many steps, why it stopped, the best val loss, where the model is."""
    best = result.best_val_loss
    if math.isfinite(best):
        val = f"best val loss {Units.of(plan.corpus.meta).describe(best)} at step {result.best_step}"
    elif not plan.corpus.meta.get("split_sizes", {}).get("val"):
        val = "no val loss (the corpus has no validation split)"
    else:
        val = "no finite val loss"
    return (
        f"done: {result.step} steps in {result.elapsed_s:.1f} s ({result.stopped.replace('_', '-')}); "
        f"{val}; checkpoint {plan.run_dir / 'best.pt'}"
    )


def _auto_reason(auto: dict | None, chosen: str) -> str:
    """Why --preset auto chose its preset: what the budget buys here, and the speeds measured."""
    if auto is None:
        return " (on CUDA: the preset tuned there)" if chosen == "xl" else " (no time limit: the design default)"
    speeds = ", ".join(f"{k} {v / 1e3:.1f}k" for k, v in auto["chars_per_sec"].items())
    skipped = f"; not measured: {', '.join(auto['not_measured'])}" if auto["not_measured"] else ""
    measured = f"measured in {auto['measure_s']:.1f} s after {auto.get('startup_s', 0):.1f} s of start-up"
    return f": {auto['reason']} ({measured}, chars/s: {speeds}{skipped})"
