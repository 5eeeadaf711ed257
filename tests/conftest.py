"""Shared fixtures and helpers: a tiny non-ASCII corpus, tiny models that train in a second on
the CPU, one tiny run trained once per session, and the checks several test modules make."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli.app import app
from charrnn.config import ModelConfig, TrainConfig
from charrnn.corpus.preprocess import preprocess
from charrnn.training.loop import train

# Tiny models gain nothing from threads, and on a busy machine threads only contend.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]

# CJK, emoji, combining marks, RTL, CRLF: the characters that byte-level tools get wrong.
MIXED_TEXT = (
    "床前明月光，疑是地上霜。\r\n举头望明月，低头思故乡。\r\n"
    "Café naïve — e\u0301 and 🐍🎉 emoji; שלום עולם.\n"
    "The quick brown fox jumps over the lazy dog. " * 3 + "\n"
) * 20


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def mixed_file(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.txt"
    path.write_bytes(MIXED_TEXT.encode("utf-8"))
    return path


@pytest.fixture
def mixed_corpus(tmp_path: Path, mixed_file: Path):
    return preprocess(mixed_file, tmp_path / "corpora" / "mixed")


# charrnn train's flags for the tiny models below
TINY_FLAGS = [
    *"--hidden 16 --layers 2 --batch-size 4 --seq-len 16 --lr 0.01 --warmup-steps 5".split(),
    *"--device cpu --precision fp32 --quiet".split(),
]


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run charrnn in a fresh working directory (corpora/ and checkpoints/ land there)."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return run


TINY = dict(hidden=16, layers=2)
TINY_TRAIN = dict(
    batch_size=4,
    seq_len=16,
    lr=1e-2,
    warmup_steps=5,
    eval_every=0,
    checkpoint_every=0,
    log_every=5,
    device="cpu",
    precision="fp32",
    seed=3,
)


def tiny_model(vocab_size: int, **kw) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, **{**TINY, **kw})


def tiny_train(**kw) -> TrainConfig:
    return TrainConfig(**{**TINY_TRAIN, **kw})


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny model trained once per session for 30 steps on the mixed corpus, with train losses,
    evals at steps 10, 20 and 30 and a progress sample at each; returns its run directory.

    Shared by every test that takes it: read it, never write into it (take `run_copy` for that).
    A test that changes it anyway fails the session at its end."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "mixed.txt").write_bytes(MIXED_TEXT.encode("utf-8"))
    corpus = preprocess(root / "mixed.txt", root / "corpus")
    run = root / "run"
    train(
        corpus,
        tiny_model(len(corpus.vocab)),
        tiny_train(max_steps=30, eval_every=10, sample_every=10, sample_length=40),
        run_dir=run,
    )
    before = _contents(root)
    yield run
    assert _contents(root) == before, "a test changed the shared tiny_run; it should take run_copy"


def _contents(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of `tiny_run` in this test's directory, to write into or damage."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


# --------------------------------------------------------------------------- checks and helpers


def one_line_error(r, code: int, *words: str) -> None:
    """Exit `code`, one line on stderr starting `charrnn: error:` (after any one-line warnings),
    no traceback."""
    assert r.exit_code == code, (r.exit_code, r.stderr, r.exception)
    *before, last = r.stderr.splitlines()
    assert r.stderr.endswith("\n") and last.startswith("charrnn: error:"), r.stderr
    assert all(line.startswith("charrnn: warning:") for line in before), r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in last, (w, r.stderr)


def files_under(path: Path) -> set[Path]:
    return {p.relative_to(path) for p in path.rglob("*")}


def same_weights(a: dict, b: dict) -> bool:
    return a["model"].keys() == b["model"].keys() and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def subprocess_env(*paths: Path) -> dict[str, str]:
    """The environment for a `python -m charrnn` subprocess: this checkout (after `paths`) first on
    its import path, and one thread, as in this process."""
    path = [*map(str, paths), str(ROOT), os.environ.get("PYTHONPATH")]
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, path))}
