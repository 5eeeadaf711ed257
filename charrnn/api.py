"""The plain functions behind the commands: what `charrnn preprocess`, `train`, `sample`,
`eval` and `info` do, callable from Python. None of them prints; each raises the
`charrnn.errors` exception that the CLI maps to an exit code, with the same message.

    from charrnn import api
    result = api.train("poems.txt", hidden=128, layers=2, max_steps=500)
    for pieces in api.sample(result.run_dir, SampleConfig(prime="The ", length=200, seed=7)):
        print(pieces[0], end="")
    print(api.evaluate(result.run_dir, file="holdout.txt").loss)

Training is two steps where the CLI needs a moment between them (to start the processes
of `--nproc`): `plan_training` checks everything and names the run directory,
`run_training` trains; `train` does both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charrnn import memory
from charrnn.config import (
    SETTINGS,
    TEST_FRAC,
    VAL_FRAC,
    ModelConfig,
    SampleConfig,
    TrainConfig,
    auto_preset,
    configs,
    finetune_config,
)
from charrnn.corpus.documents import EOD_TEXT, LABEL_SOURCES
from charrnn.corpus.preprocess import check_fractions
from charrnn.corpus.preprocess import preprocess as preprocess_source
from charrnn.corpus.source import Source
from charrnn.corpus.store import Corpus
from charrnn.corpus.text import TextOptions, check_text_file, iter_text
from charrnn.corpus.tokens import settings as token_settings
from charrnn.corpus.vocab import Vocab
from charrnn.errors import BadValueError, CheckpointError, InputError
from charrnn.generation.sample import generate
from charrnn.model.rnn import CharRNN
from charrnn.runtime import pick_device, pick_precision
from charrnn.training import autopreset, checkpoint, distributed, runs
from charrnn.training.finetune import Parent
from charrnn.training.loop import Callbacks, TrainResult
from charrnn.training.loop import train as train_loop
from charrnn.training.scoring import char_logprobs, mean_loss
from charrnn.values import Units, perplexity


def preprocess(
    input: Path | list[Path],
    *,
    out: Path | None = None,
    val_frac: float = VAL_FRAC,
    test_frac: float = TEST_FRAC,
    text: TextOptions = TextOptions(),
    doc_sep: str | None = None,
    labels: str | Path | None = None,
    tokens: str | None = None,
    lowercase: bool | None = None,
    max_vocab: int | None = None,
    min_count: int | None = None,
) -> Corpus:
    """Encode a text file (or a bundled corpus, by name), or a collection of documents (several
    files, directories, patterns, or a file split at `doc_sep`), as a corpus directory (default
    corpora/<name>). `labels` gives the documents labels: "from-dir" (their directory's name),
    "from-file" (their file's stem), or the path of a text<TAB>label file (then the input).
    `tokens` is "char" (the default) or "word", and `max_vocab` and `min_count` cap the
    vocabulary (see `charrnn.corpus.tokens`)."""
    check_fractions(val_frac, test_frac)
    tokenizer, cap = token_settings(tokens, lowercase, max_vocab, min_count)
    source = Source.of(input, doc_sep, force=text.force, labels=labels)
    out = (Path(out) if out is not None else runs.CORPORA / source.name).absolute()  # `--out .` has a name
    runs.check_corpus_out(out)
    return preprocess_source(
        source, out, val_frac=val_frac, test_frac=test_frac, opts=text, tokenizer=tokenizer, cap=cap
    )


# --------------------------------------------------------------------------- train


@dataclass
class TrainPlan:
    """A run ready to start: its configs settled and its directory named, with nothing written
    but the corpus cache. The trainer checks what needs the model (the vocabulary and batch
    size of a resumed run, the precision) before it writes anything."""

    corpus: Corpus
    model_config: ModelConfig | None  # None when resuming: the checkpoint's
    train_config: TrainConfig
    run_dir: Path
    resumed: dict | None = None  # the checkpoint being resumed
    preset: str | None = None  # the preset used, "auto" resolved
    parent: Parent | None = None  # the model a fine-tuning run starts from
    auto: dict | None = None  # how --preset auto chose, with a time limit on the CPU (autopreset.Choice.record)


def plan_training(
    input: Path | list[Path] | None = None,
    *,
    out: Path | None = None,
    preset: str | None = None,
    resume: Path | None = None,
    init_from: Path | None = None,
    settings: dict[str, Any] | None = None,
    val_frac: float = VAL_FRAC,
    test_frac: float = TEST_FRAC,
    text: TextOptions = TextOptions(),
    doc_sep: str | None = None,
    labels: str | Path | None = None,
    tokens: str | None = None,
    lowercase: bool | None = None,
    max_vocab: int | None = None,
    min_count: int | None = None,
) -> TrainPlan:
    """Check a run's inputs and settle its configs and directory. `settings` are ModelConfig
    and TrainConfig fields; they override the preset, the resumed checkpoint's config, or the
    fine-tuning recipe (`init_from`: a new run from a trained model's weights). A text is
    read as `tokens` (char or word) with the vocabulary cap `max_vocab`, `min_count`; a run
    resumed or fine-tuned on text reads it as its model did, unless told otherwise."""
    settings = dict(settings or {})
    unknown = sorted(settings.keys() - SETTINGS)
    if unknown:
        raise BadValueError(f"unknown setting(s) {', '.join(unknown)}; the settings are {', '.join(sorted(SETTINGS))}")
    main = distributed.from_env().is_main  # the other processes of a data-parallel run write nothing
    if init_from is not None and resume is not None:
        raise BadValueError("--init-from starts a new run and --resume goes on with one: give one of them")
    if init_from is not None and preset is not None:
        raise BadValueError("--preset cannot be used with --init-from: the model comes from the checkpoint")
    if input is None and labels is not None and str(labels) not in LABEL_SOURCES:
        input = [Path(labels)]  # a text<TAB>label file is the corpus
    if init_from is not None and input is None:
        raise BadValueError("name the text file or preprocessed corpus to fine-tune on")
    ckpt = ckpt_path = None
    if resume is not None:
        ckpt_path = runs.resolve_checkpoint(resume, prefer="last.pt")
        ckpt = checkpoint.load(ckpt_path)
        cfg = _checked(checkpoint.resume_config, ckpt, ckpt_path, settings=settings, preset=preset)
        if input is None:
            input = runs.checkpoint_corpus(ckpt, "name the corpus file or directory")
        run_dir = Path(out) if out is not None else Path(resume) if Path(resume).is_dir() else ckpt_path.parent
    elif input is None:
        raise BadValueError("name a text file or preprocessed corpus to train on (or --resume a run)")
    else:
        run_dir = Path(out) if out is not None else None
    if main and run_dir is not None:  # before anything is written, the corpus cache included
        runs.check_run_dir(run_dir, ckpt_path, ckpt)
    given = tokens is not None or bool(lowercase) or max_vocab is not None or min_count is not None
    # a run going on from a model reads text as the model did, unless told otherwise
    like = like_cap = parent_ckpt = None
    if init_from is not None:
        parent_ckpt = checkpoint.load(runs.resolve_checkpoint(init_from, prefer="best.pt"))
        like = checkpoint.vocab(parent_ckpt).tokenizer
    elif ckpt is not None:
        like, like_cap = checkpoint.vocab(ckpt).tokenizer, checkpoint.vocab_cap(ckpt)
    if given and runs.is_preprocessed(input):
        raise BadValueError(
            "--tokens, --lowercase, --max-vocab and --min-count are for text: a preprocessed corpus has its symbols"
        )
    tokenized = token_settings(tokens, lowercase, max_vocab, min_count, like, like_cap) if given or like else None
    corpus = runs.open_corpus(
        input, val_frac=val_frac, test_frac=test_frac, opts=text, doc_sep=doc_sep, labels=labels, tokens=tokenized
    )
    if ckpt is not None:
        return TrainPlan(corpus, None, cfg, run_dir, resumed=ckpt)

    parent = auto = None
    if init_from is not None:
        parent = Parent.open(init_from, corpus.vocab, parent_ckpt)
        model_cfg = _checked(parent.model_config, settings)
        if model_cfg.labels != tuple(corpus.labels):
            raise BadValueError(
                f"--init-from {init_from} was trained with {len(model_cfg.labels) or 'no'} labels and the corpus has "
                f"{len(corpus.labels) or 'none'}: fine-tuning keeps the model's labels, so the new documents "
                "need the same ones"
            )
        cfg = _checked(finetune_config, parent.train_config, settings)
    else:
        if preset == "auto":
            preset, auto = _auto(corpus, settings)
        model_cfg, cfg = _checked(configs, len(corpus.vocab), preset, settings)
    model_cfg = replace(model_cfg, labels=tuple(corpus.labels), label_counts=tuple(corpus.label_counts))
    if main and pick_device(cfg.device).type == "cpu":  # a GPU's own out-of-memory error is one line
        memory.check_training_memory(model_cfg, cfg)
    run_dir = run_dir or runs.new_run_dir(corpus.name)
    return TrainPlan(corpus, model_cfg, cfg, run_dir, preset=preset, parent=parent, auto=auto)


AUTO_ENV = "CHARRNN_AUTO_PRESET"  # the choice of --preset auto, passed to the processes of --nproc


def _auto(corpus: Corpus, settings: dict[str, Any]) -> tuple[str, dict | None]:
    """The preset `--preset auto` means: with a time limit on the CPU, the one whose measured
    speed here buys the lowest val loss in that time (`autopreset.choose`); else large. The
    processes of a data-parallel run take the choice their launcher made, so all train one model."""
    time_limit, device = settings.get("time_limit"), pick_device(settings.get("device", "auto"))
    if AUTO_ENV in os.environ:
        record = json.loads(os.environ[AUTO_ENV])
        return record["preset"], record
    if time_limit is None or device.type != "cpu" or distributed.from_env().enabled:
        return auto_preset(time_limit, device.type), None
    return (choice := autopreset.choose(corpus, time_limit, settings, device)).preset, choice.record()


def _checked(build, *args, **kwargs):
    """A config built from settings, whose values the configs' own checks refuse as BadValueError."""
    try:
        return build(*args, **kwargs)
    except (TypeError, ValueError) as e:
        raise BadValueError(str(e)) from None


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


def train(
    input: Path | list[Path] | None = None,
    *,
    out: Path | None = None,
    preset: str | None = None,
    resume: Path | None = None,
    init_from: Path | None = None,
    callbacks: Callbacks | None = None,
    should_stop: Callable[[], bool] | None = None,
    val_frac: float = VAL_FRAC,
    test_frac: float = TEST_FRAC,
    text: TextOptions = TextOptions(),
    doc_sep: str | None = None,
    labels: str | Path | None = None,
    tokens: str | None = None,
    lowercase: bool | None = None,
    max_vocab: int | None = None,
    min_count: int | None = None,
    **settings: Any,
) -> TrainResult:
    """Train on a text file or corpus directory (or go on with `resume`, or start from the
    trained model `init_from`), as `charrnn train`; `settings` are the options of `charrnn
    train` by their field names (hidden=128, lr=0.01)."""
    plan = plan_training(
        input,
        out=out,
        preset=preset,
        resume=resume,
        init_from=init_from,
        settings=settings,
        val_frac=val_frac,
        test_frac=test_frac,
        text=text,
        doc_sep=doc_sep,
        labels=labels,
        tokens=tokens,
        lowercase=lowercase,
        max_vocab=max_vocab,
        min_count=min_count,
    )
    return run_training(plan, callbacks=callbacks, should_stop=should_stop)


# --------------------------------------------------------------------------- use a model


@dataclass(frozen=True)
class Score:
    """How likely a model finds a text: the log-probability of each symbol (a character, or a
    word model's token) given the ones before it (the first has none)."""

    text: str  # the text scored (without what was skipped as unknown; <unk> where it was read so)
    logprobs: list[float]  # natural logs, one per symbol after the first
    units: Units = Units()  # a word model's: per token, with the characters each stands for

    @property
    def nats(self) -> float:
        """Mean loss in nats per symbol."""
        return -sum(self.logprobs) / len(self.logprobs)

    @property
    def bits(self) -> float | None:
        """Bits per character of the text."""
        return self.units.bpc(self.nats)

    @property
    def perplexity(self) -> float:
        return perplexity(self.nats)


@dataclass(frozen=True)
class Model:
    """A trained model, loaded once, to write with and to score text with.

    `generate` returns what `charrnn sample` prints for the same options (the prime, then the
    new text); `stream` yields it piece by piece as it is written; `score` tells how likely the
    model finds a text. Options are `SampleConfig`'s fields: length, temp, top_k, top_p, stop,
    seed, num_samples, unknown, precision."""

    path: Path
    net: CharRNN
    vocab: Vocab
    eod_text: str = EOD_TEXT  # how a model of documents writes the end of one (its corpus's --doc-sep)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def pieces(self, config: SampleConfig = SampleConfig()) -> Iterator[tuple[str, ...]]:
        """One tuple per step with a piece for each of the `config.num_samples` streams, the
        prime first: what `charrnn sample` streams. A `num_samples` that cannot fit in memory
        is refused before anything is generated."""
        pick_precision(config.precision, self.device)
        memory.check_sampling_memory(
            self.net.config,
            num_samples=config.num_samples,
            prime_len=len(config.prime),
            length=config.length,
            device=self.device,
        )
        return generate(self.net, self.vocab, config, eod_text=self.eod_text)

    def generate(self, prime: str = "", **options: Any) -> str | list[str]:
        """The prime and the new text, as one string; with `num_samples` > 1, one string per sample."""
        config = SampleConfig(prime=prime, **options)
        texts = ["".join(parts) for parts in zip(*self.pieces(config), strict=True)]
        return texts[0] if config.num_samples == 1 else texts

    def stream(self, prime: str = "", **options: Any) -> Iterator[str]:
        """The prime, then the new text in pieces as they are written (one sample)."""
        config = SampleConfig(prime=prime, **options)
        if config.num_samples != 1:
            raise BadValueError("stream writes one sample; use generate for --num-samples > 1")
        for (piece,) in self.pieces(config):
            if piece:
                yield piece

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels of a model trained with them (`generate(label=...)`), else ()."""
        return self.net.config.labels

    def score(self, text: str, *, unknown: str = "auto", label: str | None = None) -> Score:
        """Log-probabilities of `text`'s characters, read as one stream from the start (as text
        of `label`, which a labelled model needs). Characters outside the vocabulary raise
        UnknownCharacterError, or are left out with unknown="skip"."""
        label_id = self.net.config.label_id(label)
        ids = self.vocab.encode(text, unknown=unknown, context="the text to score")
        if len(ids) < 2:
            raise InputError("the text to score needs at least 2 characters (the first is only read)")
        logprobs = char_logprobs(self.net, torch.tensor(ids, device=self.device), label=label_id)
        return Score(self.vocab.decode(ids), logprobs.tolist(), self.vocab.units_of(text, unknown, len(ids) - 1))


def load(checkpoint_path: Path | str | None = None, *, device: str = "cpu", precision: str = "fp32") -> Model:
    """A checkpoint file or run directory (its best.pt; default: the newest run in
    checkpoints/), loaded on `device`. A device that cannot sample in `precision` is refused
    before the weights are read."""
    path = runs.resolve_checkpoint(checkpoint_path or runs.latest_run())
    dev = pick_device(device)
    pick_precision(precision, dev)
    net, vocab, ckpt = checkpoint.load_model(path, dev)
    return Model(path, net, vocab, eod_text=checkpoint.eod_text(ckpt))


def sample(
    checkpoint_path: Path | None = None, config: SampleConfig = SampleConfig(), *, device: str = "cpu"
) -> Iterator[tuple[str, ...]]:
    """Text from a checkpoint or run directory, as `charrnn sample` streams it (`Model.pieces`)."""
    return load(checkpoint_path, device=device, precision=config.precision).pieces(config)


@dataclass(frozen=True)
class Evaluation:
    what: str  # "val split of <corpus>", or the file's path
    loss: float  # nats per symbol: per character, or a word model's per token
    predictions: int
    units: Units = Units()  # how the loss is reported (a word model's: per token, with perplexity)

    @property
    def bits(self) -> float | None:
        """Bits per character of the text (None where a word model's text length is unknown)."""
        return self.units.bpc(self.loss)

    @property
    def perplexity(self) -> float:
        """exp(loss): a word model's figure (per token); a character model's per character."""
        return perplexity(self.loss)


def evaluate(
    checkpoint_path: Path,
    *,
    split: str = "val",
    file: Path | None = None,
    unknown: str = "auto",
    device: str = "auto",
    label: str | None = None,
) -> Evaluation:
    """A model's loss on a split of its corpus, or on any UTF-8 file, as `charrnn eval`. A
    labelled model reads its corpus's labels, and a file as text of `label`."""
    path = runs.resolve_checkpoint(checkpoint_path)
    dev = pick_device(device)
    model, vocab, ckpt = checkpoint.load_model(path, dev)
    tc = checkpoint.train_config(ckpt)
    labels = None
    if file is not None:
        label_id = model.config.label_id(label)
        content = "".join(iter_text(check_text_file(file)))
        ids = np.asarray(vocab.encode(content, unknown=unknown, context=str(file)), dtype=np.int64)
        labels = None if label_id is None else np.full(len(ids), label_id, dtype=np.int64)
        what = str(file)
        units = vocab.units_of(content, unknown, len(ids) - 1)
    else:
        cpath = runs.checkpoint_corpus(ckpt, "use --file to evaluate on a text file")
        corpus = Corpus.load(cpath)
        try:  # a fine-tuned model orders the corpus's characters its own way
            ids = corpus.split_reader(split, vocab)
        except InputError as e:  # symbols the model lacks, or symbols of another kind
            raise CheckpointError(str(e)) from None
        if label is not None:
            raise BadValueError("--label is for --file: a split is read with its own documents' labels")
        labels = runs.split_labels(corpus, model.config.labels, split)
        what = f"{split} split of {corpus.name}"
        units = Units.of(corpus.meta, split)
    if len(ids) < 2:
        raise InputError(f"{what} has fewer than 2 characters: nothing to evaluate")
    loss = mean_loss(
        model,
        ids,
        batch_size=tc.eval_batch_size,
        seq_len=tc.seq_len,
        device=dev,
        precision=pick_precision("fp32", dev),
        labels=labels,
    )
    return Evaluation(what, loss, len(ids) - 1, units)


@dataclass(frozen=True)
class Info:
    path: Path
    rows: list[tuple[str, str]]  # `checkpoint.describe`'s
    history: list  # the checkpoint's loss records, as stored (possibly damaged)
    size: int  # bytes


def info(checkpoint_path: Path) -> Info:
    """What a checkpoint holds (a text-generating model or a classifier), as `charrnn info`
    shows it; its weights are checked to load."""
    path = runs.resolve_checkpoint(checkpoint_path)
    if checkpoint.load(path, kind=None).get("kind") == "classifier":
        from charrnn.classify import classifier as classify

        ckpt = classify.load_classifier(path).ckpt
        return Info(path, classify.describe(ckpt), None, path.stat().st_size)
    _, _, ckpt = checkpoint.load_model(path)
    return Info(path, checkpoint.describe(ckpt), ckpt.get("history"), path.stat().st_size)
