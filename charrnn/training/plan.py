"""A run's plan, settled in one pass before anything is written but the corpus cache: read the
checkpoint it goes on from (if any), read the corpus, then settle the configs and the run
directory. `charrnn train` and `charrnn.train` both plan, then train:

    plan = plan_training(["poems.txt"], preset="small", settings={"max_steps": 500})
    result = run_training(plan)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from charrnn import memory
from charrnn.config import LABEL_SOURCES, SETTINGS, CorpusOptions, ModelConfig, TrainConfig
from charrnn.corpus.store import Corpus
from charrnn.corpus.tokens import chosen_tokens
from charrnn.errors import BadValueError
from charrnn.runtime import pick_device
from charrnn.training import autopreset, checkpoint, distributed, runs
from charrnn.training.finetune import Parent
from charrnn.training.loop import Callbacks, TrainResult
from charrnn.training.loop import train as train_loop
from charrnn.training.presets import auto_preset, configs, finetune_config

AUTO_ENV = "CHARRNN_AUTO_PRESET"  # the choice of --preset auto, passed to the processes of --nproc


@dataclass
class TrainPlan:
    """A run ready to start: its configs settled and its directory named, with nothing written
    but the corpus cache. The trainer checks what needs the model (the vocabulary and batch
    size of a resumed run, the precision) before it writes anything."""

    corpus: Corpus
    model_config: ModelConfig | None  # None when resuming: the checkpoint's
    train_config: TrainConfig
    run_dir: Path
    resumed: checkpoint.Checkpoint | None = None  # the checkpoint being resumed
    preset: str | None = None  # the preset used, "auto" resolved
    parent: Parent | None = None  # the model a fine-tuning run starts from
    auto: dict | None = None  # how --preset auto chose, with a time limit on the CPU (autopreset.Choice.record)


@dataclass
class _From:
    """What a run goes on from: the checkpoint it resumes (and its path and train config), or
    the trained model it starts from."""

    ckpt: checkpoint.Checkpoint | None = None
    path: Path | None = None
    config: TrainConfig | None = None
    parent: checkpoint.Checkpoint | None = None


def plan_training(
    input: Path | list[Path] | None = None,
    *,
    out: Path | None = None,
    preset: str | None = None,
    resume: Path | None = None,
    init_from: Path | None = None,
    settings: dict[str, Any] | None = None,
    corpus: CorpusOptions = CorpusOptions(),
) -> TrainPlan:
    """Check a run's inputs and settle its configs and directory. `settings` are ModelConfig
    and TrainConfig fields; they override the preset, the resumed checkpoint's config, or the
    fine-tuning recipe (`init_from`: a new run from a trained model's weights). Text is read as
    `corpus` says; a run resumed or fine-tuned on text reads it as its model did, unless told
    otherwise."""
    settings = dict(settings or {})
    _check_request(settings, preset, resume, init_from)
    if input is None and corpus.labels is not None and str(corpus.labels) not in LABEL_SOURCES:
        input = [Path(corpus.labels)]  # a text<TAB>label file is the corpus
    if init_from is not None and input is None:
        raise BadValueError("name the text file or preprocessed corpus to fine-tune on")
    source = _going_on_from(resume, init_from, settings, preset)
    if source.ckpt is not None and input is None:
        input = runs.checkpoint_corpus(source.ckpt, "name the corpus file or directory")
    if input is None:
        raise BadValueError("name a text file or preprocessed corpus to train on (or --resume a run)")
    run_dir = _run_dir(out, resume, source)
    if distributed.from_env().is_main and run_dir is not None:  # before anything is written, the cache included
        runs.check_run_dir(run_dir, source.path, source.ckpt)
    data = _open_corpus(input, corpus, source)
    if source.ckpt is not None:
        return TrainPlan(data, None, source.config, run_dir, resumed=source.ckpt)
    return _new_run(data, settings, preset, init_from, source.parent, run_dir)


def _check_request(settings: dict, preset: str | None, resume, init_from) -> None:
    unknown = sorted(settings.keys() - SETTINGS)
    if unknown:
        raise BadValueError(f"unknown setting(s) {', '.join(unknown)}; the settings are {', '.join(sorted(SETTINGS))}")
    if init_from is not None and resume is not None:
        raise BadValueError("--init-from starts a new run and --resume goes on with one: give one of them")
    if init_from is not None and preset is not None:
        raise BadValueError("--preset cannot be used with --init-from: the model comes from the checkpoint")


def _going_on_from(resume, init_from, settings: dict, preset: str | None) -> _From:
    if resume is not None:
        path = runs.resolve_checkpoint(resume, prefer="last.pt")
        ckpt = checkpoint.read(path)
        return _From(ckpt, path, checkpoint.resume_config(ckpt, path, settings=settings, preset=preset))
    if init_from is not None:
        return _From(parent=checkpoint.read(runs.resolve_checkpoint(init_from, prefer="best.pt")))
    return _From()


def _run_dir(out, resume, source: _From) -> Path | None:
    if out is not None:
        return Path(out)
    if source.ckpt is not None:
        return Path(resume) if Path(resume).is_dir() else source.path.parent
    return None  # a new run's: named after its corpus


def _open_corpus(input, options: CorpusOptions, source: _From) -> Corpus:
    """The corpus, its text read as the options say, or else as the model going on read it."""
    given = options.given_tokens
    like = like_cap = None
    if source.parent is not None:
        like = source.parent.vocab.tokenizer
    elif source.ckpt is not None:
        like, like_cap = source.ckpt.vocab.tokenizer, source.ckpt.vocab_cap
    if given and runs.is_preprocessed(input):
        raise BadValueError(
            "--tokens, --lowercase, --max-vocab and --min-count are for text: a preprocessed corpus has its symbols"
        )
    tokens = chosen_tokens(options, like, like_cap) if given or like else None
    return runs.open_corpus(input, options, tokens=tokens)


def _new_run(data: Corpus, settings: dict, preset, init_from, parent_ckpt, run_dir) -> TrainPlan:
    """The configs of a run that starts from a preset, or from a trained model's weights."""
    parent = auto = None
    if init_from is not None:
        parent = Parent.open(init_from, data.vocab, parent_ckpt)
        model_cfg = parent.model_config(settings)
        if model_cfg.labels != tuple(data.labels):
            raise BadValueError(
                f"--init-from {init_from} was trained with {len(model_cfg.labels) or 'no'} labels and the corpus has "
                f"{len(data.labels) or 'none'}: fine-tuning keeps the model's labels, so the new documents "
                "need the same ones"
            )
        cfg = finetune_config(parent.train_config, settings)
    else:
        if preset == "auto":
            preset, auto = _auto(data, settings)
        model_cfg, cfg = configs(len(data.vocab), preset, settings)
    model_cfg = replace(model_cfg, labels=tuple(data.labels), label_counts=tuple(data.label_counts))
    if distributed.from_env().is_main and pick_device(cfg.device).type == "cpu":  # a GPU's own OOM is one line
        memory.check_training_memory(model_cfg, cfg)
    run_dir = run_dir or runs.new_run_dir(data.name)
    return TrainPlan(data, model_cfg, cfg, run_dir, preset=preset, parent=parent, auto=auto)


def _auto(corpus: Corpus, settings: dict[str, Any]) -> tuple[str, dict | None]:
    """The preset `--preset auto` means: with a time limit on the CPU, the one whose measured
    speed here buys the lowest val loss in that time (`autopreset.choose`); else by the rule of
    `auto_preset`. The processes of a data-parallel run take the choice their launcher made, so
    all train one model."""
    time_limit, device = settings.get("time_limit"), pick_device(settings.get("device", "auto"))
    if AUTO_ENV in os.environ:
        record = json.loads(os.environ[AUTO_ENV])
        return record["preset"], record
    if time_limit is None or device.type != "cpu" or distributed.from_env().enabled:
        return auto_preset(time_limit, device.type), None
    return (choice := autopreset.choose(corpus, time_limit, settings, device)).preset, choice.record()


def run_training(
    plan: TrainPlan, *, callbacks: Callbacks | None = None, should_stop: Callable[[], bool] | None = None
) -> TrainResult:
    """Train the planned run; `should_stop` is asked before every step (Ctrl-C, say)."""
    return train_loop(
        plan.corpus,
        plan.model_config,
        plan.train_config,
        run_dir=plan.run_dir,
        callbacks=callbacks,
        resume=plan.resumed,
        parent=plan.parent,
        should_stop=should_stop,
        auto=plan.auto,
    )
