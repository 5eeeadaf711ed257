"""Where runs and corpora live on disk: naming a new run directory, finding the checkpoint a
command means, the corpus a run trains on, and never overwriting a run by mistake.

    run_dir = new_run_dir("tinyshakespeare")   # checkpoints/tinyshakespeare-20261130-101500
    path = resolve_checkpoint(run_dir)          # its best.pt (else last.pt)
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from charrnn.config import CorpusOptions
from charrnn.corpus.preprocess import cached_corpus
from charrnn.corpus.store import Corpus
from charrnn.corpus.tokens import Tokenizer, VocabCap
from charrnn.errors import BadValueError, CheckpointError, InputError
from charrnn.training import checkpoint, runlog

CORPORA = Path("corpora")  # the cache of preprocessed text files, by content hash
CHECKPOINTS = Path("checkpoints")  # one directory per run

RUN_FILES = ("last.pt", "best.pt", runlog.METRICS, runlog.SAMPLES)


def new_run_dir(name: str, root: Path = CHECKPOINTS) -> Path:
    """root/<name>-<date>-<time>, made unique; `name` comes from a corpus's meta.json, so it
    is kept to one plain path component."""
    name = re.sub(r"[^\w.-]+", "_", Path(name).name).lstrip(".") or "run"
    base = Path(root) / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def resolve_checkpoint(path: Path, prefer: str = "best.pt") -> Path:
    """A checkpoint file, or a run directory (its `prefer` file, else the other one)."""
    path = Path(path)
    if path.is_dir():
        for name in (prefer, "last.pt", "best.pt"):
            if (path / name).is_file():
                return path / name
        runs = sorted((p.parent for p in path.glob("*/*.pt")), key=lambda d: d.stat().st_mtime, reverse=True)
        if runs:  # the folder of runs itself: name one of them
            newest = ", ".join(str(d) for d in dict.fromkeys(runs[:3]))
            raise CheckpointError(f"{path}: is a folder of runs, not a run; name one, as {newest}")
        raise CheckpointError(f"{path}: run directory holds no best.pt or last.pt")
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    return path


def latest_run(root: Path = CHECKPOINTS) -> Path:
    """The run directory in `root` whose checkpoint was written most recently."""
    root = Path(root)
    found = [p for p in root.glob("*/*.pt") if p.name in ("best.pt", "last.pt")] if root.is_dir() else []
    found = [p for p in found if not (p.parent / "classifier.json").exists()]  # `charrnn classify`'s runs
    if not found:
        raise CheckpointError(
            f"no trained model found in {root}/; train one with `charrnn train FILE` or name a checkpoint"
        )
    return max(found, key=lambda p: p.stat().st_mtime).parent


def check_run_dir(run_dir: Path, resumed: Path | None = None, ckpt: checkpoint.Checkpoint | None = None) -> None:
    """Refuse a run directory whose files this run would overwrite by mistake: another run's,
    an earlier run's logs, or (resuming in place from `resumed`) a newer last.pt."""
    held = [n for n in RUN_FILES if (run_dir / n).exists()]
    if not held:
        return
    if resumed is None or run_dir.resolve() != resumed.parent.resolve():
        if "last.pt" in held or "best.pt" in held:
            raise BadValueError(
                f"--out {run_dir} already holds a run ({', '.join(held)}); continue it with "
                f"--resume {run_dir}, or choose another --out"
            )
        raise BadValueError(
            f"--out {run_dir} holds the logs of an earlier run ({', '.join(held)}); "
            "choose another --out, or remove them"
        )
    checkpoint.check_not_behind(run_dir, resumed, ckpt)


def check_corpus_out(out: Path) -> None:
    """Refuse a preprocess output that is not a corpus directory: preprocess replaces its
    output whole, so it must never be a run directory or a user's folder."""
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not (out / "meta.json").is_file()):
        raise BadValueError(
            f"--out {out} exists and is not a corpus directory; choose another --out "
            "(preprocess replaces only its own output)"
        )


def is_preprocessed(inputs: Path | list[Path] | None) -> bool:
    """Whether the inputs name one preprocessed corpus directory (not text to preprocess)."""
    inputs = [] if inputs is None else [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    return len(inputs) == 1 and any((Path(inputs[0]) / name).is_file() for name in ("meta.json", "ids.bin"))


def open_corpus(
    inputs: Path | list[Path],
    options: CorpusOptions = CorpusOptions(),
    *,
    tokens: tuple[Tokenizer, VocabCap] | None = None,
    root: Path = CORPORA,
) -> Corpus:
    """A preprocessed corpus directory, or a text file (or bundled corpus), or a collection of
    documents (files, directories of text, patterns; labelled by `options.labels`) preprocessed
    into the cache (once), its symbols `tokens`' where given, else those `options` choose."""
    inputs = [] if inputs is None else [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if is_preprocessed(inputs):
        for given, option in ((options.doc_sep, "--doc-sep"), (options.labels, "--labels")):
            if given is not None:
                raise BadValueError(f"{option} is for text: a preprocessed corpus has its documents already")
        return Corpus.load(inputs[0])  # its symbols are chosen: `tokens` does not apply
    return cached_corpus(inputs, root, options, tokens=tokens or (Tokenizer(), VocabCap()))


def checkpoint_corpus(ckpt: checkpoint.Checkpoint, instead: str) -> Path:
    """The preprocessed corpus a checkpoint was trained on, where it is still on this machine."""
    path = ckpt.corpus_path
    if not path or not (Path(path) / "meta.json").is_file():
        raise InputError(f"the checkpoint's corpus is not on this machine; {instead}")
    return Path(path)


def split_labels(corpus: Corpus, labels: tuple[str, ...], split: str):
    """The label ids of a split of the corpus a model with `labels` was trained on (None for a
    model without labels), refused where the corpus's labels are no longer the model's."""
    if tuple(corpus.labels) != tuple(labels):
        raise CheckpointError(f"corpus {corpus.path} has other labels than the checkpoint's; preprocess it again")
    return corpus.label_reader(split) if labels else None
