"""Damaged files a run or a corpus leaves behind: a log file that is damaged never stops a
command that can go on without it, and a damaged corpus directory is refused in one line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from charrnn.pages.report import load_run, loss_sparkline
from charrnn.training.runlog import read_samples
from tests.conftest import TINY_FLAGS, one_line_error


def steps(run_dir: Path) -> tuple[list[int], list[int], list[int]]:
    r = load_run(run_dir)
    return [m["step"] for m in r.train], [m["step"] for m in r.evals], [s["step"] for s in r.samples]


# --------------------------------------------------------------------------- metrics.jsonl

DAMAGED_METRICS = {
    "list": b'["train_loss", "val_loss"]',
    "number": b"5",
    "null": b"null",
    "step_not_a_number": b'{"step": "x", "train_loss": 1.0}',
    "step_null": b'{"step": null, "val_loss": 2.0}',
    "loss_not_a_number": b'{"step": 3, "train_loss": "abc"}',
    "loss_null": b'{"step": 3, "train_loss": null}',
    "time_not_a_number": b'{"step": 3, "train_loss": 1.0, "elapsed_s": "x"}',
    "step_beyond_a_float": b'{"step": 1' + b"0" * 400 + b', "train_loss": 1.0}',
    "invalid_utf8": b'{"step": 3, "train_loss": 1.0, "lr": \xff}',
}


@pytest.mark.parametrize("case", list(DAMAGED_METRICS))
def test_report_skips_damaged_metric_lines(cli, tiny_run, run_copy, case):
    lines = (run_copy / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    lines.insert(1, DAMAGED_METRICS[case] + b"\n")  # the good lines after it must still count
    (run_copy / "metrics.jsonl").write_bytes(b"".join(lines))
    r = cli("report", run_copy)
    assert r.exit_code == 0, r.stderr
    assert "Traceback" not in r.stderr and (run_copy / "report.html").is_file()
    assert steps(run_copy) == steps(tiny_run)


# --------------------------------------------------------------------------- samples.txt


def test_report_skips_a_sample_whose_header_is_damaged(cli, tiny_run, run_copy):
    path = run_copy / "samples.txt"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "===== step 20 | train loss ", "===== step 20 | train loss abc | val loss nan =====\nwas: "
        ),
        encoding="utf-8",
    )
    r = cli("report", run_copy)
    assert r.exit_code == 0, r.stderr
    clean, damaged = read_samples(tiny_run), read_samples(run_copy)
    assert [s["step"] for s in damaged] == [10, 30]
    assert damaged[0] == clean[0]  # the damaged sample's text is not glued onto the one before


def test_report_reads_samples_with_invalid_utf8(cli, tiny_run, run_copy):
    with open(run_copy / "samples.txt", "ab") as f:
        f.write(b"caf\xe9 \xff\n")
    r = cli("report", run_copy)
    assert r.exit_code == 0, r.stderr
    samples = read_samples(run_copy)
    assert [s["step"] for s in samples] == [10, 20, 30]
    assert samples[-1]["text"].endswith("caf\ufffd \ufffd")


def test_loss_sparkline_skips_a_damaged_history():
    history = [
        5,
        None,
        {"train_loss": "abc"},
        {"step": 1, "train_loss": 4.0},
        {"train_loss": float("nan")},
        {"step": 2, "val_loss": 3.0},
        {"step": 3, "train_loss": 2.0},
    ]
    assert loss_sparkline(history) == "4.00 █▁ 2.00"
    assert loss_sparkline({"train_loss": 1.0}) == loss_sparkline("junk") == ""


def test_report_shows_a_checkpoint_with_damaged_descriptive_fields(cli, run_copy):
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(run_copy / name, weights_only=True)
        ckpt.update(corpus={"name": "x", "chars": "many"}, train_config=[1, 2])
        torch.save(ckpt, run_copy / name)
    r = cli("report", run_copy)
    assert r.exit_code == 0, r.stderr
    page = (run_copy / "report.html").read_text(encoding="utf-8")
    assert "x (? characters)" in page and "model.hidden" in page


# --------------------------------------------------------------------------- corpus directory


def _edit_meta(edit, whole=False):
    """Damage meta.json: `edit` changes the dict in place, or with `whole` returns what replaces it."""

    def apply(corpus_dir: Path) -> None:
        path = corpus_dir / "meta.json"
        meta = json.loads(path.read_text(encoding="utf-8"))
        replaced = edit(meta)
        path.write_text(json.dumps(replaced if whole else meta), encoding="utf-8")

    return apply


def _bad_id(corpus_dir: Path) -> None:
    # at the very start, where the first training batch reads
    ids = np.memmap(corpus_dir / "ids.bin", dtype=np.uint8, mode="r+")
    ids[0] = 255
    ids.flush()


DAMAGED_CORPORA = {
    "no_splits": (_edit_meta(lambda m: m.pop("splits")), "'splits'"),
    "no_val_split": (_edit_meta(lambda m: m["splits"].pop("val")), "'splits'"),
    "splits_not_a_dict": (_edit_meta(lambda m: m.update(splits=[1, 2])), "'splits'"),
    "train_beyond_ids": (_edit_meta(lambda m: m["splits"].update(train=[0, m["chars"] + 1000])), "split 'train'"),
    "val_beyond_ids": (_edit_meta(lambda m: m["splits"].update(val=[m["chars"] - 10, m["chars"] + 10])), "split 'val'"),
    "split_one_number": (_edit_meta(lambda m: m["splits"].update(val=[5])), "split 'val'"),
    "split_strings": (_edit_meta(lambda m: m["splits"].update(train=["0", "9"])), "split 'train'"),
    "chars_string": (_edit_meta(lambda m: m.update(chars=str(m["chars"]))), "'chars'"),
    "no_chars": (_edit_meta(lambda m: m.pop("chars")), "'chars'"),
    "dtype_float": (_edit_meta(lambda m: m.update(dtype="float32")), "'dtype'"),
    "name_number": (_edit_meta(lambda m: m.update(name=5)), "'name'"),
    "meta_a_list": (_edit_meta(lambda m: [m], whole=True), "not a charrnn corpus"),
    "id_beyond_vocab": (_bad_id, "ids.bin holds id 255"),
}


@pytest.mark.parametrize("case", list(DAMAGED_CORPORA))
def test_damaged_corpus_directory_is_refused_in_one_line(cli, mixed_corpus, tmp_path, case):
    damage, words = DAMAGED_CORPORA[case]
    damage(mixed_corpus.path)
    # no --out: the corpus's name then names the run directory
    r = cli("train", mixed_corpus.path, *TINY_FLAGS, "--max-steps", 2)
    one_line_error(r, 3, str(mixed_corpus.path), words, "preprocess again")
    assert not (tmp_path / "checkpoints").exists()


def test_a_file_name_that_is_not_utf8_is_trained_on(cli, tmp_path, mixed_file):
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xffname.txt"))
    shutil.copy(mixed_file, odd)
    r = cli("train", odd, *TINY_FLAGS, "--max-steps", 3)
    assert r.exit_code == 0, r.stderr
    assert cli("preprocess", odd, "--out", "c").exit_code == 0
    assert json.loads((tmp_path / "c" / "meta.json").read_text(encoding="utf-8"))["source"] == "bad\ufffdname.txt"
