"""Fine-tuning: `charrnn train NEW.txt --init-from RUN` starts a new run from a trained model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import charrnn
from charrnn.corpus.preprocess import preprocess
from charrnn.corpus.text import file_sha256
from charrnn.model.rnn import CharRNN
from charrnn.training import checkpoint
from charrnn.training.finetune import Parent, new_char_bias
from charrnn.training.presets import FINETUNE_LR_FRAC, FINETUNE_WARMUP_STEPS
from charrnn.training.runs import resolve_checkpoint
from tests.conftest import TINY_FLAGS, one_line_error

# text the tiny run never saw: some of its characters, and five it has no id for
NEW_TEXT = "The fox jumps over the dog. Æbler og øl på Åland; æ ø å.\n" * 60
NEW_CHARS = ["Å", "Æ", "å", "æ", "ø"]  # in code point order, as the corpus sorts them


CPU = ["--device", "cpu", "--precision", "fp32", "--quiet"]


@pytest.fixture
def new_text(tmp_path):
    path = tmp_path / "new.txt"
    path.write_text(NEW_TEXT, encoding="utf-8")
    return path


def test_a_fine_tuned_model_keeps_every_id_and_appends_the_new_characters(cli, tiny_run, new_text, tmp_path):
    # the size flags may repeat the parent's; the console says what is new
    r = cli("train", new_text, "--init-from", tiny_run, "--max-steps", 6, "--out", "child", *TINY_FLAGS[:4], *CPU[:4])
    assert r.exit_code == 0, r.stderr
    assert "5 character(s) new to the model: 'Å', 'Æ', 'å', 'æ', 'ø'" in r.stderr
    parent_path = resolve_checkpoint(tiny_run, prefer="best.pt")
    parent = checkpoint.load(parent_path)
    child = checkpoint.load(tmp_path / "child" / "last.pt")
    old, merged = parent["vocab"], child["vocab"]
    assert merged[: len(old)] == old and merged[len(old) :] == NEW_CHARS
    assert child["step"] == 6 and child["model_config"]["hidden"] == 16
    assert child["parent"] == {
        "path": str(parent_path.resolve()),
        "sha256": file_sha256(parent_path),
        "step": parent["step"],
        "corpus": parent["corpus"]["name"],
        "chars": len(old),
        "new_chars": len(NEW_CHARS),
        "new": merged[len(old) :],
    }
    # the model was evaluated on the new text before its first step
    records = [json.loads(line) for line in (tmp_path / "child" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in records if "val_loss" in m and "train_loss" not in m][0] == 0
    # `info` names the parent; the model writes text, and `eval` reads its corpus in its own ids
    shown = cli("info", tmp_path / "child")
    assert shown.exit_code == 0 and "fine-tuned from" in shown.stdout and "5 new character(s)" in shown.stdout
    evaluated = cli("eval", tmp_path / "child" / "last.pt")
    assert evaluated.exit_code == 0 and f"{records[-1]['val_loss']:.4f} nats/char" in evaluated.stdout
    assert len(charrnn.load(tmp_path / "child").generate("The ", length=50, seed=1)) == 54


def test_the_weights_start_as_the_parents_and_the_new_rows_fresh(tiny_run, tmp_path):
    (tmp_path / "new.txt").write_text(NEW_TEXT, encoding="utf-8")
    corpus = preprocess(tmp_path / "new.txt", tmp_path / "corpus")
    parent = Parent.open(tiny_run, corpus.vocab)
    model = CharRNN(parent.model_config({}))
    counts = np.zeros(len(parent.vocab), dtype=np.int64)
    counts[corpus.vocab.ids_in(parent.vocab)] = corpus.counts("train")
    parent.load_into(model, corpus)
    k, weights = parent.known, parent.ckpt.weights
    for name, w in model.state_dict().items():
        same = w[:k] if name in ("embed.weight", "head.weight", "head.bias") else w
        assert torch.equal(same, weights[name]), name
    # the new characters' biases follow their frequency: the commonest of them starts highest
    new_counts = counts[k:]
    bias = model.state_dict()["head.bias"][k:]
    assert int(bias.argmax()) == int(np.argmax(new_counts))


def test_a_new_character_as_common_as_a_known_one_starts_with_its_bias():
    known_bias = np.log(np.array([0.5, 0.3, 0.1])) + 2.0  # the biases of a model calibrated on the new text
    counts = np.array([50, 30, 10, 30, 0])  # two new characters: as common as the second, and absent
    bias = new_char_bias(known_bias, counts, known=3)
    assert math.isclose(bias[0], known_bias[1], rel_tol=1e-5)
    assert bias[1] < bias[0]  # absent from the training split: half an occurrence


def test_the_fine_tuning_recipe_and_explicit_flags_over_it(cli, tiny_run, new_text, tmp_path):
    parent = checkpoint.read(resolve_checkpoint(tiny_run)).train_config
    assert cli("train", new_text, "--init-from", tiny_run, "--max-steps", 2, "--out", "a", *CPU).exit_code == 0
    cfg = checkpoint.load(tmp_path / "a" / "last.pt")["train_config"]
    assert math.isclose(cfg["lr"], parent.lr * FINETUNE_LR_FRAC)
    assert cfg["warmup_steps"] == FINETUNE_WARMUP_STEPS
    assert cfg["max_steps"] == 2 and cfg["batch_size"] == parent.batch_size
    r = cli("train", new_text, "--init-from", tiny_run, "--max-steps", 2, "--lr", 0.05, "--out", "b", *CPU)
    assert r.exit_code == 0 and checkpoint.load(tmp_path / "b" / "last.pt")["train_config"]["lr"] == 0.05


@pytest.mark.slow
def test_a_fine_tuned_run_resumes_on_its_own_text_and_is_a_parent_itself(cli, tiny_run, new_text, tmp_path):
    assert cli("train", new_text, "--init-from", tiny_run, "--max-steps", 4, "--out", "c", *CPU).exit_code == 0
    vocab = checkpoint.load(tmp_path / "c" / "last.pt")["vocab"]
    r = cli("train", "--resume", tmp_path / "c", "--max-steps", 8, *CPU)
    assert r.exit_code == 0, r.stderr
    ckpt = checkpoint.load(tmp_path / "c" / "last.pt")
    assert ckpt["step"] == 8 and ckpt["vocab"] == vocab
    assert ckpt["parent"]["chars"] == len(checkpoint.load(tiny_run / "best.pt")["vocab"])
    # on a text with characters still newer, resuming is refused and fine-tuning again is the way
    newer = tmp_path / "newer.txt"
    newer.write_text(NEW_TEXT + "Ωμέγα\n" * 20, encoding="utf-8")
    one_line_error(cli("train", newer, "--resume", tmp_path / "c", "--max-steps", 9), 4, "--init-from")
    assert checkpoint.load(tmp_path / "c" / "last.pt")["step"] == 8
    r = cli("train", newer, "--init-from", tmp_path / "c", "--max-steps", 2, "--out", "grandchild", *CPU)
    assert r.exit_code == 0, r.stderr
    grandchild = checkpoint.load(tmp_path / "grandchild" / "last.pt")
    assert grandchild["vocab"][: len(vocab)] == vocab and grandchild["parent"]["new"] == ["Ω", "έ", "α", "γ", "μ"]


def test_bad_fine_tuning_requests_are_one_line_errors(cli, tiny_run, new_text, tmp_path):
    one_line_error(cli("train", new_text, "--init-from", tiny_run, "--hidden", 32), 2, "--hidden 32", "16")
    one_line_error(cli("train", new_text, "--init-from", tiny_run, "--model", "gru"), 2, "--model gru", "lstm")
    one_line_error(cli("train", new_text, "--init-from", tiny_run, "--preset", "small"), 2, "--preset")
    one_line_error(cli("train", new_text, "--init-from", tiny_run, "--resume", tiny_run), 2, "--resume")
    one_line_error(cli("train", new_text, "--init-from", new_text), 4, "new.txt")
    one_line_error(cli("train", new_text, "--init-from", tmp_path / "nowhere"), 4, "no such checkpoint")
    one_line_error(cli("train", "--init-from", tiny_run), 2, "fine-tune on")
    assert not (tmp_path / "checkpoints").exists()


def test_resume_on_another_text_points_to_init_from(cli, run_copy, new_text):
    one_line_error(cli("train", new_text, "--resume", run_copy, "--max-steps", 40), 4, "--init-from")


def test_the_python_api_fine_tunes_too(tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the corpus cache (corpora/) goes there
    (tmp_path / "new.txt").write_text(NEW_TEXT, encoding="utf-8")
    result = charrnn.train(
        tmp_path / "new.txt", init_from=tiny_run, max_steps=3, out=tmp_path / "run", device="cpu", precision="fp32"
    )
    assert result.step == 3 and checkpoint.load(result.run_dir / "last.pt")["parent"]["new_chars"] == 5
