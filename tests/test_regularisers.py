"""The weight average and the regularisers beyond dropout: --ema, --locked-dropout,
--weight-dropout and --tie-embeddings, on tiny models."""

from __future__ import annotations

import pytest
import torch

from charrnn.config import ModelConfig, SampleConfig
from charrnn.generation.sample import generate
from charrnn.model.rnn import CharRNN
from charrnn.model.stepper import FastStepper
from charrnn.training import checkpoint
from charrnn.training.loop import train
from tests.conftest import TINY_FLAGS, tiny_model, tiny_train

REGULARISED = dict(locked_dropout=0.3, weight_dropout=0.3, tie_embeddings=True)


@pytest.mark.slow
def test_ema_weights_are_evaluated_and_saved_as_best(tmp_path, mixed_corpus):
    mc = tiny_model(len(mixed_corpus.vocab))
    train(mixed_corpus, mc, tiny_train(max_steps=30, eval_every=10, ema=0.9), run_dir=tmp_path / "a")
    last = checkpoint.load(tmp_path / "a" / "last.pt")
    best = checkpoint.load(tmp_path / "a" / "best.pt")
    assert any(not torch.equal(last["model"][k], last["ema"][k]) for k in last["model"])
    assert best["step"] == 30
    for k in best["model"]:
        assert torch.equal(best["model"][k], last["ema"][k]), k
    # the raw weights are the same as those of a run without the average: it only watches
    train(mixed_corpus, mc, tiny_train(max_steps=30, eval_every=10), run_dir=tmp_path / "b")
    plain = checkpoint.load(tmp_path / "b" / "last.pt")
    assert plain["ema"] is None
    for k in plain["model"]:
        assert torch.equal(plain["model"][k], last["model"][k]), k


@pytest.mark.slow
def test_resume_keeps_the_ema_of_an_uninterrupted_run(tmp_path, mixed_corpus):
    mc = tiny_model(len(mixed_corpus.vocab))
    tc = dict(eval_every=10, decay_steps=40, ema=0.95)
    train(mixed_corpus, mc, tiny_train(max_steps=20, **tc), run_dir=tmp_path / "a")
    ckpt = checkpoint.load(tmp_path / "a" / "last.pt")
    train(mixed_corpus, None, tiny_train(max_steps=40, **tc), run_dir=tmp_path / "a", resume=ckpt)
    train(mixed_corpus, mc, tiny_train(max_steps=40, **tc), run_dir=tmp_path / "b")
    a = checkpoint.load(tmp_path / "a" / "last.pt")
    b = checkpoint.load(tmp_path / "b" / "last.pt")
    for k in a["ema"]:
        assert torch.equal(a["ema"][k], b["ema"][k]), k
    assert a["best_val_loss"] == b["best_val_loss"]


def test_tied_weights_are_one_tensor_after_loading(tmp_path, mixed_corpus):
    mc = tiny_model(len(mixed_corpus.vocab), tie_embeddings=True)
    train(mixed_corpus, mc, tiny_train(max_steps=10), run_dir=tmp_path / "run")
    model, _, _ = checkpoint.load_model(tmp_path / "run" / "best.pt")
    assert model.head.weight is model.embed.weight
    untied = CharRNN(tiny_model(len(mixed_corpus.vocab)))
    assert untied.num_params() - model.num_params() == untied.head.weight.numel()


def test_locked_dropout_is_one_mask_across_time_and_off_in_eval():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=10, hidden=16, layers=1, locked_dropout=0.5))
    x = torch.zeros(3, 7, dtype=torch.long)  # the same character at every step
    embedded = model.embed(x)
    seen = []
    model.embed.register_forward_hook(lambda m, i, out: seen.append(out))
    model.rnn.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    model.train()(x)
    dropped = seen[1]
    assert torch.equal(dropped == 0, (dropped == 0)[:, :1].expand_as(dropped))  # the same units at every step
    assert bool((dropped == 0).any())
    model.eval()
    seen.clear()
    model(x)
    assert torch.equal(seen[1], embedded)


@pytest.mark.parametrize("model_type", ["lstm", "gru"])
def test_weight_dropout_drops_recurrent_weights_in_training_only(model_type):
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=10, hidden=16, layers=2, model=model_type, weight_dropout=0.5))
    x = torch.randint(0, 10, (2, 6))
    assert not torch.equal(model.train()(x)[0], model(x)[0])  # a new draw each window
    model(x)[0].sum().backward()
    assert all(p.grad is not None for name, p in model.rnn.named_parameters() if name.startswith("weight_hh"))
    model.eval()
    plain = CharRNN(ModelConfig(vocab_size=10, hidden=16, layers=2, model=model_type)).eval()
    plain.load_state_dict(model.state_dict())
    assert torch.equal(model(x)[0], plain(x)[0])


def test_fast_stepper_matches_a_regularised_models_forward(tmp_path, mixed_corpus):
    mc = tiny_model(len(mixed_corpus.vocab), **REGULARISED)
    train(mixed_corpus, mc, tiny_train(max_steps=20, ema=0.9), run_dir=tmp_path / "run")
    model, vocab, _ = checkpoint.load_model(tmp_path / "run" / "best.pt")
    ids = torch.tensor([vocab.encode("The quick")])  # (1, T)
    full, _ = model(ids)
    stepper = FastStepper(model)
    state = stepper.convert(model.init_state(1))
    for t in range(ids.size(1)):
        logits, state = stepper.step(ids[:, t], state)
        assert torch.allclose(logits, full[:, t], atol=1e-5)
    config = SampleConfig(prime="The", length=100, seed=5, temp=0.8)
    assert list(generate(model, vocab, config)) == list(generate(model, vocab, config, fast=False))


def test_cli_options_reach_the_checkpoint(cli, mixed_file):
    flags = "--ema 0.9 --locked-dropout 0.2 --weight-dropout 0.25 --tie-embeddings --max-steps 5".split()
    r = cli("train", mixed_file, *TINY_FLAGS, *flags, "--out", "run")
    assert r.exit_code == 0, r.stderr
    ckpt = checkpoint.load("run/last.pt")
    assert ckpt["train_config"]["ema"] == 0.9
    mc = checkpoint.Checkpoint.from_payload(ckpt).model_config
    assert (mc.locked_dropout, mc.weight_dropout, mc.tie_embeddings) == (0.2, 0.25, True)
