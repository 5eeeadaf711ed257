"""The public façade: what `charrnn preprocess`, `train`, `sample`, `eval` and `info` do,
callable from Python. None of them prints; each raises the `charrnn.errors` exception that the
CLI maps to an exit code, with the same message.

    import charrnn
    result = charrnn.train("poems.txt", hidden=128, layers=2, max_steps=500, doc_sep="\\n")
    model = charrnn.load(result.run_dir)
    print(model.generate("The ", length=200, seed=7))
    print(charrnn.api.evaluate(result.run_dir, file="holdout.txt").loss)

Keyword arguments are the commands' options by their field names: those of `CorpusOptions`
for how text is read, and those of `ModelConfig` and `TrainConfig` for a run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from charrnn import memory
from charrnn.config import CorpusOptions, SampleConfig
from charrnn.corpus.documents import EOD_TEXT
from charrnn.corpus.preprocess import preprocess as preprocess_source
from charrnn.corpus.source import Source
from charrnn.corpus.store import Corpus
from charrnn.corpus.vocab import Vocab
from charrnn.errors import BadValueError, InputError
from charrnn.generation.sample import generate
from charrnn.model.rnn import CharRNN
from charrnn.runtime import pick_device, pick_precision
from charrnn.training import checkpoint, distributed, runs
from charrnn.training.loop import Callbacks, TrainResult
from charrnn.training.plan import plan_training, run_training
from charrnn.training.progress import TextProgress
from charrnn.training.scoring import Evaluation, char_logprobs, evaluate
from charrnn.values import Units, perplexity

__all__ = ["Evaluation", "Info", "Model", "Score", "evaluate", "export", "info", "load", "preprocess", "sample",
           "train", "write_report"]  # fmt: skip
CORPUS_FIELDS = frozenset(f.name for f in fields(CorpusOptions))


def corpus_options(options: dict[str, Any]) -> tuple[CorpusOptions, dict[str, Any]]:
    """The corpus options among keyword arguments, and the rest."""
    given = {k: v for k, v in options.items() if k in CORPUS_FIELDS}
    if given.get("lowercase") is None:
        given.pop("lowercase", None)
    return CorpusOptions(**given), {k: v for k, v in options.items() if k not in CORPUS_FIELDS}


def preprocess(input: Path | list[Path], *, out: Path | None = None, **options: Any) -> Corpus:
    """Encode a text file (or a bundled corpus, by name), or a collection of documents (several
    files, directories, patterns, or a file split at `doc_sep`), as a corpus directory (default
    corpora/<name>). `options` are `CorpusOptions`' fields: `labels` gives the documents labels
    ("from-dir", "from-file", or the path of a text<TAB>label file, then the input); `tokens`
    is "char" (the default) or "word", and `max_vocab` and `min_count` cap the vocabulary."""
    corpus, rest = corpus_options(options)
    if rest:
        names = ", ".join(sorted(CORPUS_FIELDS))
        raise BadValueError(f"unknown option(s) {', '.join(sorted(rest))}; the options are {names}")
    source = Source.of(input, corpus)
    out = (Path(out) if out is not None else runs.CORPORA / source.name).absolute()  # `--out .` has a name
    runs.check_corpus_out(out)
    return preprocess_source(source, out, corpus)


def train(
    input: Path | list[Path] | None = None,
    *,
    out: Path | None = None,
    preset: str | None = None,
    resume: Path | None = None,
    init_from: Path | None = None,
    callbacks: Callbacks | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
    **options: Any,
) -> TrainResult:
    """Train on a text file or corpus directory (or go on with `resume`, or start from the
    trained model `init_from`), as `charrnn train`, which writes the run's report.html too;
    `options` are the options of `charrnn train` by their field names (hidden=128, lr=0.01,
    doc_sep="\\n"). Silent unless `progress` (a line on stderr every few seconds) or
    `callbacks` (the loop's `Callbacks`: on_start, on_step, on_eval, ...) say otherwise."""
    if progress and callbacks is not None:
        raise BadValueError("give callbacks or progress=True, not both")
    corpus, settings = corpus_options(options)
    plan = plan_training(
        input, out=out, preset=preset, resume=resume, init_from=init_from, settings=settings, corpus=corpus
    )
    result = run_training(plan, callbacks=TextProgress() if progress else callbacks, should_stop=should_stop)
    if result.stopped != "interrupted" and distributed.from_env().is_main:
        write_report(plan.run_dir)
    return result


def write_report(run_dir: Path, run=None) -> Path:
    """The run's report.html (`charrnn report`), written at the end of a run by the command and
    by `train` alike (`run`: the run as `pages.report.load_run` read it, where it has been)."""
    from charrnn.pages.report import write_report as write

    return write(run_dir, run=run)


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
    return Model(path, net, vocab, eod_text=ckpt.eod_text)


def sample(
    checkpoint_path: Path | None = None, config: SampleConfig = SampleConfig(), *, device: str = "cpu"
) -> Iterator[tuple[str, ...]]:
    """Text from a checkpoint or run directory, as `charrnn sample` streams it (`Model.pieces`)."""
    return load(checkpoint_path, device=device, precision=config.precision).pieces(config)


@dataclass(frozen=True)
class Info:
    path: Path
    rows: list[tuple[str, str]]  # `checkpoint.describe`'s: what `charrnn info` shows
    history: list  # the checkpoint's loss records, as stored (possibly damaged)
    size: int  # bytes
    values: dict = field(default_factory=dict)  # the same as values (`checkpoint.summary`): what /v1/info answers


def info(checkpoint_path: Path) -> Info:
    """What a checkpoint holds (a text-generating model or a classifier), as `charrnn info`
    shows it; its weights are checked to load."""
    path = runs.resolve_checkpoint(checkpoint_path)
    if checkpoint.kind_of(path) == "classifier":
        from charrnn.classify import checkpoint as classifier

        ckpt = classifier.read(path)
        return Info(path, classifier.describe(ckpt), None, path.stat().st_size)
    _, _, ckpt = checkpoint.load_model(path)
    return Info(path, checkpoint.describe(ckpt), ckpt.history, path.stat().st_size, checkpoint.summary(ckpt))


def export(checkpoint_path: Path | str, format: str, out: Path | str | None = None, *, dtype: str = "float16") -> Path:
    """Write the model of a checkpoint or run directory (its best.pt) as `format` ("onnx",
    "safetensors" or "html"), by default beside the checkpoint with the format's suffix, and
    return the file. `dtype` is how an HTML page stores its weights (float32, float16, int8);
    ONNX and safetensors keep float32."""
    from charrnn import export as exporting
    from charrnn.export.source import Source

    exporting.check(format, dtype)
    path = runs.resolve_checkpoint(Path(checkpoint_path))
    out = exporting.target(path, format, None if out is None else Path(out))
    src = Source.read(path)
    if format == "html":
        from charrnn.pages.writer import to_bytes

        return exporting.save(out, to_bytes(src, dtype))
    if format == "onnx":
        from charrnn.export.to_onnx import to_bytes
    else:
        from charrnn.export.to_safetensors import to_bytes
    return exporting.save(out, to_bytes(src))
