"""The CUDA path: cuDNN LSTM training in bf16 autocast, a CUDA-trained checkpoint that samples
on the CPU, and the fast sampler on the GPU. Skipped without CUDA."""

import math
import threading

import pytest
import torch

from charrnn.config import SampleConfig
from charrnn.generation.sample import generate, sample_text
from charrnn.training import checkpoint
from charrnn.training.loop import train
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


def test_cuda_checkpoint_resumes_on_the_cpu(tmp_path, mixed_corpus):
    # a run trained on the GPU (bf16 autocast, a loss scaler) goes on on a machine without one:
    # weights, optimizer and data position carry over, the scaler's state is set aside
    run = tmp_path / "run"
    mc = tiny_model(len(mixed_corpus.vocab), hidden=32)
    train(mixed_corpus, mc, tiny_train(max_steps=20, device="cuda", precision="auto"), run_dir=run)
    ckpt = checkpoint.load(run / "last.pt")
    assert ckpt["device"] == "cuda" and ckpt["step"] == 20
    result = train(
        mixed_corpus, None, tiny_train(max_steps=30, device="cpu", precision="fp32"), run_dir=run, resume=ckpt
    )
    after = checkpoint.load(run / "last.pt")
    assert after["step"] == 30 and after["device"] == "cpu" and after["precision"] == "fp32"
    assert math.isfinite(result.val_loss)
    assert all(t.device.type == "cpu" for t in after["model"].values())


def test_batcher_on_cuda_writes_what_sample_writes(tmp_path, mixed_corpus):
    # continuous batching on the GPU: a request served alone writes what `charrnn sample` writes
    # there with the same seed, and two at once each reach their length
    import charrnn
    from charrnn.generation.batching import Batcher, Done

    run = tmp_path / "run"
    train(mixed_corpus, tiny_model(len(mixed_corpus.vocab), hidden=32), tiny_train(max_steps=20), run_dir=run)
    model = charrnn.load(run, device="cuda")
    batcher = Batcher(model.net, model.vocab, max_streams=4, max_waiting=4)
    got: dict[str, list[str]] = {"a": [], "b": []}
    ended = {name: threading.Event() for name in got}

    def deliver(name):
        def take(item):
            if isinstance(item, Done):
                ended[name].set()
            else:
                got[name].append(item[0])

        return take

    try:
        batcher.submit(SampleConfig(prime="The", length=120, seed=5), deliver("a"))
        assert ended["a"].wait(60)
        batcher.submit(SampleConfig(prime="The", length=60, seed=6), deliver("b"))
        assert ended["b"].wait(60)
    finally:
        batcher.close()
    assert "".join(got["a"]) == model.generate("The", length=120, seed=5)
    assert len("".join(got["b"])) == len("The") + 60
