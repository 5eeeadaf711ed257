"""Shared fixtures: a tiny non-ASCII corpus and tiny models that train in a second on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.config import ModelConfig, TrainConfig
from charrnn.data import preprocess
from charrnn.train import train

# Tiny models gain nothing from threads, and on a busy machine threads only contend.
torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinyshakespeare.txt"

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


TINY_FLAGS = [
    "--hidden",
    "16",
    "--layers",
    "2",
    "--batch-size",
    "4",
    "--seq-len",
    "16",
    "--lr",
    "0.01",
    "--warmup-steps",
    "5",
    "--device",
    "cpu",
    "--precision",
    "fp32",
    "--quiet",
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


@pytest.fixture
def trained_run(tmp_path: Path, mixed_corpus):
    """A tiny model trained for 30 steps on the mixed corpus; returns its run directory."""
    run = tmp_path / "run"
    train(mixed_corpus, tiny_model(len(mixed_corpus.vocab)), tiny_train(max_steps=30), run_dir=run)
    return run
