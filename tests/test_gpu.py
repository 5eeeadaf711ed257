"""The CUDA path: cuDNN LSTM training in bf16 autocast, a CUDA-trained checkpoint that samples
on the CPU, and the fast sampler on the GPU. Skipped without CUDA."""

import pytest
import torch

from charrnn import checkpoint
from charrnn.config import SampleConfig
from charrnn.loop import train
from charrnn.sample import generate, sample_text
from tests.conftest import tiny_model, tiny_train

pytestmark = pytest.mark.gpu


def test_cuda_training_in_bf16_and_sampling_on_cpu(tmp_path, mixed_corpus):
    run = tmp_path / "run"
    result = train(
        mixed_corpus,
        tiny_model(len(mixed_corpus.vocab), hidden=64),
        tiny_train(max_steps=60, device="cuda", precision="auto"),
        run_dir=run,
    )
    ckpt = checkpoint.load(run / "best.pt")
    assert ckpt["device"] == "cuda" and ckpt["precision"] in ("bf16", "fp16")
    assert ckpt["scaler"] is not None  # cuDNN's recurrent layers ran in float16: the loss was scaled
    assert result.best_val_loss < 4.0
    model, vocab, _ = checkpoint.load_model(run / "best.pt", torch.device("cpu"))
    assert sample_text(model, vocab, prime="The", length=50, seed=1).startswith("The")


def test_fast_sampler_on_cuda_matches_its_reference(tmp_path, mixed_corpus):
    run = tmp_path / "run"
    train(mixed_corpus, tiny_model(len(mixed_corpus.vocab), hidden=32), tiny_train(max_steps=20), run_dir=run)
    model, vocab, _ = checkpoint.load_model(run / "best.pt", torch.device("cuda"))
    config = SampleConfig(prime="The", length=100, temp=0, num_samples=2)
    fast = list(generate(model, vocab, config))
    slow = list(generate(model, vocab, config, fast=False))
    assert fast == slow
