"""`--preset auto` with a time limit: it measures each preset's speed here, reads the table of
val loss against characters trained at what the budget buys, and says why it chose."""

from __future__ import annotations

import time

import pytest
import torch

from charrnn.training import autopreset, checkpoint
from charrnn.training.autopreset import choose, predicted_loss

TABLE = {  # made up: small learns fastest early, medium ends lower
    "tiny": [(100_000, 2.4), (1_000_000, 1.9), (10_000_000, 1.8)],
    "small": [(100_000, 2.3), (1_000_000, 1.7), (10_000_000, 1.5)],
    "medium": [(100_000, 2.8), (1_000_000, 1.8), (10_000_000, 1.4)],
    "large": [(100_000, 3.0), (1_000_000, 2.0), (10_000_000, 1.45)],
}


@pytest.fixture
def table(monkeypatch):
    monkeypatch.setattr(autopreset, "LOSS_BY_CHARS", TABLE)


def test_the_curves_are_read_in_log_characters_and_held_flat_past_their_ends(table):
    assert predicted_loss("small", 1_000_000) == pytest.approx(1.7)
    assert predicted_loss("small", 10**5.5) == pytest.approx((2.3 + 1.7) / 2)  # halfway in log characters
    assert predicted_loss("small", 10) == pytest.approx(2.3) and predicted_loss("small", 1e9) == pytest.approx(1.5)


@pytest.mark.slow
def test_it_chooses_what_the_budget_buys_at_the_measured_speeds(table, monkeypatch, mixed_corpus):
    speeds = {"tiny": 40_000.0, "small": 20_000.0, "medium": 10_000.0, "large": None}
    monkeypatch.setattr(autopreset, "measure", lambda corpus, preset, *a: speeds[preset])
    cpu = torch.device("cpu")
    # 60 s: small trains 1.2 M characters (1.68), medium 0.6 M (2.0)
    c = choose(mixed_corpus, 60, {}, cpu)
    assert c.preset == "small" and c.skipped == ["large"]
    assert c.predicted["small"] == pytest.approx(predicted_loss("small", 1.2e6))
    assert c.reason.startswith("≈ 1.2 M chars in 60 s at 20.0k chars/s")
    # 1000 s: medium trains 10 M characters (1.4), small 20 M (1.5)
    assert choose(mixed_corpus, 1000, {}, cpu).preset == "medium"
    # a machine four times slower: the same budget buys a quarter, and the smaller model wins again
    speeds.update({k: v / 4 for k, v in speeds.items() if v})
    assert choose(mixed_corpus, 1000, {}, cpu).preset == "small"


@pytest.mark.slow
def test_measuring_stays_within_its_share_of_the_budget(table, monkeypatch, mixed_corpus):
    deadlines, speed = {}, [1e9]

    def slow(corpus, preset, settings, device, deadline):  # each preset's measuring takes 0.4 s
        deadlines[preset] = deadline - time.perf_counter()
        time.sleep(0.4)
        return speed[0]

    monkeypatch.setattr(autopreset, "measure", slow)
    c = choose(mixed_corpus, 20, {}, torch.device("cpu"))  # 3% of 20 s: 0.6 s to measure in
    # tiny may take a quarter of it; small a third of what is left; then nothing is left
    assert deadlines["tiny"] == pytest.approx(0.15, abs=0.05) and deadlines["small"] < 0.1
    assert list(c.chars_per_sec) == ["tiny", "small"] and c.skipped == ["medium", "large"]
    # a preset whose two steps would take longer than what is left, at the speed the last one
    # measured scaled by the parameters, is not measured either
    speed[0] = 1000.0
    c = choose(mixed_corpus, 20, {}, torch.device("cpu"))
    assert list(c.chars_per_sec) == ["tiny"] and c.skipped == ["small", "medium", "large"]


def test_a_corpus_too_short_for_a_presets_batch_is_not_measured_with_it(table, mixed_corpus):
    c = choose(mixed_corpus, 600, {"hidden": 32}, torch.device("cpu"))
    # the mixed corpus (6,860 characters) is too short for large's batch of 64 x 128
    assert "large" in c.skipped and c.preset in c.chars_per_sec and c.chars_per_sec["tiny"] > 0


@pytest.mark.slow
def test_train_says_why_and_the_checkpoint_keeps_it(cli, mixed_file, tmp_path):
    r = cli(
        "train", mixed_file, "--preset", "auto", "--time-limit", 30, "--hidden", 24, "--max-steps", 2,
        "--device", "cpu", "--quiet", "--out", tmp_path / "run",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    line = next(x for x in r.stderr.splitlines() if x.startswith("preset auto -> "))
    chosen = line.split("-> ")[1].split(":")[0]
    assert "chars in 30 s at" in line and "chars/s: tiny" in line and "not measured: large" in line
    ckpt = checkpoint.load(tmp_path / "run" / "last.pt")
    assert ckpt["auto"]["preset"] == chosen and ckpt["model_config"]["hidden"] == 24
    assert set(ckpt["auto"]["chars_per_sec"]) == {"tiny", "small", "medium"}
    info = cli("info", tmp_path / "run")
    assert f"auto: {chosen} (≈" in info.stdout.replace("\n", " ") or f"auto: {chosen}" in info.stdout
