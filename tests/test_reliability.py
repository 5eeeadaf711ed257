"""Bad input gets a clear one-line answer, a checkpoint is data and is never lost.

Each test here backs a row of the Reliability table (docs/reliability.md).
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charrnn.cli.app import app
from charrnn.config import CorpusOptions, SampleConfig, TrainConfig
from charrnn.corpus import text as text_mod
from charrnn.corpus.preprocess import preprocess
from charrnn.corpus.store import Corpus
from charrnn.corpus.tokens import UNK
from charrnn.corpus.vocab import Vocab
from charrnn.errors import DeviceError, InputError, TrainingError
from charrnn.generation.sample import generate, pick
from charrnn.model.rnn import CharRNN
from charrnn.runtime import pick_precision
from charrnn.training import checkpoint, loop, plan
from charrnn.training.interrupt import StopFlag
from charrnn.training.loop import MAX_BAD_STEPS, Callbacks, train
from tests.conftest import (
    MIXED_TEXT,
    TINY_FLAGS,
    files_under,
    one_line_error,
    same_weights,
    tiny_model,
    tiny_train,
)

PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- bad input files

BAD_FILES = {
    "missing": (None, "no such file"),
    "empty": (b"", "is empty"),
    "whitespace": (b"  \n\t\r\n   \n", "only whitespace"),
    "nul_bytes": (b"hello\x00world\x00" * 50, "binary file (it contains NUL bytes)"),
    "random_bytes": (bytes(range(1, 256)) * 20, "binary file (only"),
    "bad_utf8": (b"first line\nsecond ok\nna" + b"\xff" + b"ve\n" * 100, "invalid UTF-8 at byte 23 (line 3)"),
    "too_short": (b"hello world, " * 10, "needs at least 2049; lower --batch-size or --seq-len"),
    # UNK: in a vocabulary it always stands for the symbols left out, so no text may hold it
    "noncharacter": ("hello \ufdd1 world\n".encode() * 300, "holds U+FDD1, which charrnn keeps for symbols"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_input_file_is_refused_and_nothing_is_written(cli, tmp_path, case):
    content, words = BAD_FILES[case]
    src = tmp_path / "input.txt"
    if content is not None:
        src.write_bytes(content)
    before = files_under(tmp_path)
    r = cli("train", src, *TINY_FLAGS, "--batch-size", 32, "--seq-len", 64)
    one_line_error(r, 3, words)
    # no run directory, no half-written corpus; only a complete cached corpus may stay
    assert not (tmp_path / "checkpoints").exists()
    new = files_under(tmp_path) - before
    assert all(p.parts[0] == "corpora" for p in new), new
    if case == "too_short":  # the corpus itself was fine: its cache is complete
        (entry,) = (tmp_path / "corpora").iterdir()
        assert {p.name for p in entry.iterdir()} == {"ids.bin", "vocab.json", "meta.json"}
    else:
        assert not any(p for p in new if len(p.parts) > 1), new
        one_line_error(cli("preprocess", src), 3, words)  # preprocess reads it as train does


def test_directory_and_unreadable_input(cli, tmp_path, monkeypatch):
    one_line_error(cli("preprocess", tmp_path), 3, "holds no files")  # a directory is a collection of documents
    src = tmp_path / "secret.txt"
    src.write_text(MIXED_TEXT, encoding="utf-8")
    src.chmod(0)
    if os.access(src, os.R_OK):  # root reads anything: make the check see what a user would
        real = os.access
        monkeypatch.setattr(text_mod.os, "access", lambda p, mode: False if Path(p) == src else real(p, mode))
    one_line_error(cli("train", src, *TINY_FLAGS), 3, "permission denied")
    one_line_error(cli("preprocess", src), 3, "permission denied")


def test_a_pipe_is_refused_in_one_line(cli, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in (("train", fifo), ("preprocess", fifo)):
        one_line_error(cli(*args), 3, "is not a regular file")


def test_encoding_errors_replace_or_ignore_proceed(cli, tmp_path):
    src = tmp_path / "latin1.txt"
    src.write_bytes("Mot à mot, ligne après ligne.\n".encode("latin-1") * 40)
    one_line_error(cli("preprocess", src), 3, "invalid UTF-8 at byte 4 (line 1)", "--encoding-errors")
    for mode, expect in (("replace", "Mot \ufffd mot"), ("ignore", "Mot  mot")):
        r = cli("preprocess", src, "--encoding-errors", mode, "--out", f"c-{mode}")
        assert r.exit_code == 0, r.stderr
        corpus = Corpus.load(tmp_path / f"c-{mode}")
        assert corpus.vocab.decode(corpus.ids).startswith(expect)


def test_bom_dropped_crlf_kept_unless_newline_lf(cli, tmp_path):
    text = "line one\r\nline two\r\n" * 30
    src = tmp_path / "bom.txt"
    src.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert cli("preprocess", src, "--out", "keep").exit_code == 0
    assert cli("preprocess", src, "--out", "lf", "--newline", "lf").exit_code == 0
    keep, lf = Corpus.load(tmp_path / "keep"), Corpus.load(tmp_path / "lf")
    assert keep.vocab.decode(keep.ids) == text and "\ufeff" not in keep.vocab
    assert lf.vocab.decode(lf.ids) == text.replace("\r\n", "\n")
    # the BOM is found even when the first read is shorter than it
    tiny_chunks = preprocess(src, tmp_path / "tiny", chunk_bytes=1)
    assert tiny_chunks.vocab.decode(tiny_chunks.ids) == text


def test_binary_file_accepted_with_force(cli, tmp_path):
    src = tmp_path / "data.bin"
    src.write_bytes(b"ab\x00cd\x01" * 500)
    one_line_error(cli("preprocess", src), 3, "binary", "--force")
    assert cli("preprocess", src, "--force").exit_code == 0
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(range(128, 256)) * 40)
    # replacing bad bytes does not sneak a binary file past the check
    one_line_error(cli("preprocess", noise, "--encoding-errors", "replace"), 3, "binary")
    assert cli("preprocess", noise, "--encoding-errors", "replace", "--force").exit_code == 0
    forced = Corpus.load(tmp_path / "corpora" / "noise")
    assert set(forced.vocab.decode(forced.ids)) == {"\ufffd"}


# --------------------------------------------------------------------------- nonsense options


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["sample", "--temp", "-1"], 2, "--temp"),
        (["sample", "--top-p", "1.5"], 2, "--top-p"),
        (["sample", "--top-p", "0"], 2, "--top-p"),
        (["sample", "--top-k", "0"], 2, "--top-k"),
        (["sample", "--length", "-5"], 2, "--length"),
        (["train", "x.txt", "--hidden", "0"], 2, "--hidden"),
        (["train", "x.txt", "--lr", "0"], 2, "--lr"),
        (["train", "x.txt", "--dropout", "1"], 2, "--dropout"),
        (["preprocess", "x.txt", "--val-frac", "1.2"], 2, "--val-frac"),
        (["preprocess", "x.txt", "--val-frac", "0.6", "--test-frac", "0.5"], 2, "--test-frac"),
        (["train", "x.txt", "--device", "tpu"], 2, "--device"),
        (["train", "x.txt", "--max-epochs", "inf"], 2, "--max-epochs"),
        (["train", "x.txt", "--lr", "inf"], 2, "--lr"),
        (["train", "x.txt", "--seed", str(2**64)], 2, "--seed"),
        (["sample", "--seed", str(2**63)], 2, "--seed"),
    ],
)
def test_nonsense_options(cli, args, code, words):
    one_line_error(cli(*args), code, words)


@pytest.mark.slow
def test_huge_but_finite_epoch_limit_is_no_limit(cli, mixed_file, tmp_path):
    r = cli("train", mixed_file, *TINY_FLAGS, "--max-epochs", "1e308", "--max-steps", 3, "--out", "r")
    assert r.exit_code == 0, r.stderr
    assert "done: 3 steps" in r.stderr and "(max-steps)" in r.stderr
    huge = checkpoint.load(tmp_path / "r" / "last.pt")
    assert huge["train_config"]["max_epochs"] == 1e308 and huge["step"] == 3
    # the run is the one --max-steps alone makes: the same schedule, so the same weights
    r = cli("train", mixed_file, *TINY_FLAGS, "--max-steps", 3, "--out", "plain")
    assert r.exit_code == 0, r.stderr
    plain = checkpoint.load(tmp_path / "plain" / "last.pt")
    assert plain["train_config"]["max_epochs"] is None and same_weights(huge, plain)


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="reads MemAvailable")
def test_a_model_too_large_for_memory_is_refused_before_it_is_built(cli, mixed_file, tmp_path):
    for size in (["--hidden", 300000, "--layers", 1], ["--hidden", 16, "--layers", 10**8]):
        r = cli("train", mixed_file, *TINY_FLAGS, *size, "--max-steps", 1, "--out", "r")
        one_line_error(r, 2, "would need about", "GiB available", "lower --hidden")
    assert not (tmp_path / "r").exists()


def test_an_allocation_that_fails_anyway_is_one_line(cli, mixed_file, monkeypatch):
    def fail(*args, **kwargs):  # what torch's CPU allocator raises when the kernel refuses
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(plan, "run_training", fail)
    one_line_error(cli("train", mixed_file, *TINY_FLAGS, "--max-steps", 1, "--out", "r"), 1, "out of memory")


def test_no_arguments_shows_help_without_an_error_line(cli):
    r = cli()
    assert r.exit_code == 2 and "Usage" in r.stdout and "error" not in r.stderr


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="reads MemAvailable")
def test_sampling_more_streams_than_memory_holds_is_refused(cli, tiny_run):
    one_line_error(
        cli("sample", tiny_run, "--num-samples", 10**12, "--length", 5),
        2,
        "--num-samples 1000000000000 would need about",
        "GiB available",
    )
    r = cli("sample", tiny_run, "--num-samples", 1000, "--length", 5, "--separator", "|")
    assert r.exit_code == 0, r.stderr
    texts = r.stdout_bytes.decode("utf-8")[:-1].split("|")  # "|" is not in the vocabulary
    assert [len(t) for t in texts] == [5] * 1000


@pytest.mark.slow
def test_sample_with_stdout_closed_is_one_line(tiny_run):
    cmd = f"{sys.executable} -m charrnn sample {tiny_run} --length 5 >&-"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr == "charrnn: error: stdout is closed: there is nowhere to write the text\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda(cli, mixed_file, tiny_run, tmp_path):
    r = cli("train", mixed_file, *TINY_FLAGS, "--device", "cuda", "--max-steps", 5)
    one_line_error(r, 5, "no CUDA device")
    assert not (tmp_path / "checkpoints").exists()
    one_line_error(cli("sample", tiny_run, "--device", "cuda"), 5, "no CUDA device")
    one_line_error(cli("eval", tiny_run, "--device", "cuda"), 5, "no CUDA device")


def test_precision_the_device_cannot_do(cli, mixed_file, tmp_path):
    r = cli("train", mixed_file, *TINY_FLAGS, "--precision", "fp16", "--max-steps", 5)
    one_line_error(r, 5, "fp16 needs a CUDA device")
    assert not (tmp_path / "checkpoints").exists()
    with pytest.raises(DeviceError, match="bf16 is not supported on mps"):
        pick_precision("bf16", torch.device("mps"))


def test_bf16_training_on_a_cpu_without_bf16_kernels_is_one_line(cli, mixed_file, tmp_path, monkeypatch):
    from charrnn import runtime

    monkeypatch.setattr(runtime, "cpu_runs_bf16_rnn", lambda kind: False)  # as on a CPU without AVX512-BF16
    r = cli("train", mixed_file, *TINY_FLAGS, "--precision", "bf16", "--max-steps", 5)
    one_line_error(r, 5, "cannot train an LSTM in bfloat16")
    assert not (tmp_path / "checkpoints").exists()
    # a CPU whose flags promise bf16 while its kernels have none: auto trains in fp32, without a word
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: True)
    r = cli("train", mixed_file, *TINY_FLAGS, "--precision", "auto", "--max-steps", 2, "--out", "auto")
    assert r.exit_code == 0, r.stderr
    assert checkpoint.load(tmp_path / "auto" / "last.pt")["precision"] == "fp32"


def test_prime_outside_vocabulary_named_or_skipped(cli, tiny_run):
    one_line_error(cli("sample", tiny_run, "--prime", "Zжz", "--length", 5), 7, "'Z'", "'ж'")
    r = cli("sample", tiny_run, "--prime", "Zhe", "--length", 5, "--unknown", "skip")
    assert r.exit_code == 0 and r.stdout.startswith("he")
    r = cli("sample", tiny_run, "--length", 5, "--unknown", "skip", input="Zhe")  # the prime on stdin
    assert r.exit_code == 0 and r.stdout.startswith("he")


def test_tiny_temperature_and_extreme_logits_still_sample():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[3e38, -3e38, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    for temp in (1e-300, 5e-324, 1e-6, 1.0, 1e300):
        ids = pick(logits, g, temp=temp)
        assert ids.shape == (2,) and 0 <= int(ids.min()) and int(ids.max()) < 4
    assert int(pick(logits, g, temp=1e-300)[0]) == 0


# --------------------------------------------------------------------------- bad checkpoints


def _bad_checkpoints(run: Path, dest: Path) -> dict[str, Path]:
    dest.mkdir()
    good = (run / "last.pt").read_bytes()
    out = {}
    out["truncated"] = dest / "truncated.pt"
    out["truncated"].write_bytes(good[: len(good) // 2])
    out["corrupt"] = dest / "corrupt.pt"
    out["corrupt"].write_bytes(good[:300] + bytes(b ^ 0x5A for b in good[300:2000]) + good[2000:])
    out["garbage"] = dest / "garbage.pt"
    out["garbage"].write_bytes(random.Random(0).randbytes(4096))
    out["empty"] = dest / "empty.pt"
    out["empty"].write_bytes(b"")
    ckpt = torch.load(run / "last.pt", weights_only=True)
    out["future"] = dest / "future.pt"
    torch.save({**ckpt, "version": checkpoint.VERSION + 1}, out["future"])
    out["foreign"] = dest / "foreign.pt"
    torch.save({"state_dict": ckpt["model"], "epoch": 3}, out["foreign"])
    out["nan_weights"] = dest / "nan.pt"
    torch.save({**ckpt, "model": {k: v * float("nan") for k, v in ckpt["model"].items()}}, out["nan_weights"])
    out["bad_vocab"] = dest / "bad_vocab.pt"
    torch.save({**ckpt, "vocab": ["ab", "c"]}, out["bad_vocab"])
    out["weights_only"] = dest / "weights_only.pt"
    torch.save({k: v for k, v in ckpt.items() if k not in checkpoint.RESUME_KEYS}, out["weights_only"])
    return out


BAD_CKPT_WORDS = {
    "truncated": "truncated or corrupt",
    "corrupt": "corrupt",
    "garbage": "corrupt",
    "empty": "empty file",
    "future": "newer than this charrnn reads",
    "foreign": "not a charrnn checkpoint",
    "nan_weights": "non-finite",
    "bad_vocab": "malformed 'vocab'",
    "weights_only": "cannot be resumed",
}


def test_bad_checkpoints_are_refused_by_every_command(cli, tiny_run, tmp_path):
    bad = _bad_checkpoints(tiny_run, tmp_path / "bad")
    for case, path in bad.items():
        runs = [("train", "--resume", path, "--max-steps", 40)]
        if case != "weights_only":  # sample, eval and info need only the weights
            runs += [("sample", path, "--length", 5), ("eval", path), ("info", path)]
        for args in runs:
            before = files_under(tmp_path)
            r = cli(*args)
            one_line_error(r, 4, BAD_CKPT_WORDS[case])
            assert files_under(tmp_path) == before, (case, args)


def test_damaged_training_state_is_refused_on_resume(cli, tiny_run, tmp_path):
    # checkpoints that load, but whose training state was edited or damaged
    ckpt = torch.load(tiny_run / "last.pt", weights_only=True)
    hidden = ckpt["hidden"]
    cases = {
        "model_type": (
            {**ckpt, "model_config": {**ckpt["model_config"], "model": "transformer"}},
            "malformed 'model_config'",
        ),
        "seq_len_0": ({**ckpt, "train_config": {**ckpt["train_config"], "seq_len": 0}}, "malformed 'train_config'"),
        "hidden_batch": ({**ckpt, "hidden": [h[:, :2] for h in hidden]}, "training state is damaged"),
        "rng": ({**ckpt, "rng": {}}, "training state is damaged"),
        "step": ({**ckpt, "step": "x"}, "training state is damaged"),
        "step_inf": ({**ckpt, "step": float("inf")}, "training state is damaged"),
        "optimizer": ({**ckpt, "optimizer": {"state": {}}}, "training state is damaged"),
    }
    dest = tmp_path / "damaged"
    dest.mkdir()
    for case, (data, words) in cases.items():
        path = dest / f"{case}.pt"
        torch.save(data, path)
        before = files_under(tmp_path)
        one_line_error(cli("train", "--resume", path, "--max-steps", 40), 4, words)
        one_line_error(cli("train", "--resume", path, "--max-steps", 40, "--out", tmp_path / "o"), 4, words)
        assert files_under(tmp_path) == before and not (tmp_path / "o").exists(), case
    # history is only a record: damaged entries are dropped, the run goes on
    torch.save({**ckpt, "history": [1, 2, "x", {"step": 1, "train_loss": 4.0}]}, dest / "history.pt")
    r = cli("train", "--resume", dest / "history.pt", "--max-steps", 35, "--quiet")
    assert r.exit_code == 0, r.stderr
    resumed = checkpoint.load(dest / "last.pt")
    assert resumed["step"] == 35 and resumed["history"][0] == {"step": 1, "train_loss": 4.0}
    assert all(isinstance(h, dict) for h in resumed["history"]) and resumed["history"][-1]["step"] == 35


def test_info_shows_damaged_record_fields_as_unknown(cli, tiny_run, tmp_path):
    ckpt = torch.load(tiny_run / "last.pt", weights_only=True)
    odd = tmp_path / "odd.pt"
    torch.save(
        {**ckpt, "history": [1, "x"], "best_val_loss": "bad", "elapsed_s": None, "step": "s", "corpus": "x"}, odd
    )
    r = cli("info", odd)
    assert r.exit_code == 0, r.stderr
    assert "? nats/char" in r.stdout and "? (epoch" in r.stdout
    # a config field a checkpoint lacks (written before the field existed) shows the default it runs with
    older = tmp_path / "older.pt"
    torch.save({**ckpt, "train_config": {k: v for k, v in ckpt["train_config"].items() if k != "lr"}}, older)
    r = cli("info", older)
    assert r.exit_code == 0, r.stderr
    assert f"lr {TrainConfig.lr}," in r.stdout


def test_sample_checks_the_checkpoint_before_it_reads_stdin(cli, tiny_run):
    # a prime on stdin is read only once the checkpoint and device are known to be usable, so a
    # caller that leaves stdin open is not kept waiting for an answer that is an error anyway
    one_line_error(cli("sample", "missing.pt", input=b"\xff\xfe"), 4, "no such checkpoint")
    one_line_error(cli("sample", tiny_run, "--device", "cuda", input=b"\xff\xfe"), 5, "no CUDA device")
    one_line_error(cli("sample", tiny_run, input=b"\xff\xfe"), 3, "stdin is not UTF-8")


def test_a_run_directory_is_never_overwritten_by_mistake(cli, run_copy, mixed_file, tmp_path):
    before = {n: (run_copy / n).read_bytes() for n in ("last.pt", "best.pt", "metrics.jsonl")}
    # a new run into an existing run's directory
    one_line_error(
        cli("train", mixed_file, *TINY_FLAGS, "--max-steps", 3, "--out", run_copy),
        2,
        "already holds a run",
        f"--resume {run_copy}",
    )
    # a new run where an earlier one left only its logs (killed before its first checkpoint)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "metrics.jsonl").write_text('{"step": 1, "train_loss": 4.0}\n')
    cached = files_under(tmp_path / "corpora")
    one_line_error(
        cli("train", mixed_file, *TINY_FLAGS, "--max-steps", 3, "--out", logs), 2, "holds the logs of an earlier run"
    )
    assert files_under(tmp_path / "corpora") == cached  # refused before the corpus cache is written
    # preprocess into a run directory, or onto a file
    one_line_error(cli("preprocess", mixed_file, "--out", run_copy), 2, "is not a corpus directory")
    one_line_error(cli("preprocess", mixed_file, "--out", run_copy / "metrics.jsonl"), 2, "is not a corpus directory")
    assert {n: (run_copy / n).read_bytes() for n in before} == before
    # resuming from best.pt in place would overwrite a newer last.pt: refused, and --out branches off
    last = checkpoint.load(run_copy / "last.pt")
    torch.save({**checkpoint.load(run_copy / "best.pt"), "step": last["step"] - 10}, run_copy / "best.pt")
    one_line_error(cli("train", "--resume", run_copy / "best.pt", "--max-steps", 40), 2, "is ahead of best.pt", "--out")
    assert (run_copy / "last.pt").read_bytes() == before["last.pt"]
    r = cli("train", "--resume", run_copy / "best.pt", "--max-steps", 25, "--out", tmp_path / "branch", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert checkpoint.load(tmp_path / "branch" / "last.pt")["step"] == 25
    # a corpus directory may be preprocessed again in place, and `--out .` names the current one
    assert cli("preprocess", mixed_file, "--out", "c").exit_code == 0
    assert cli("preprocess", mixed_file, "--out", "c").exit_code == 0
    (tmp_path / "empty").mkdir()
    os.chdir(tmp_path / "empty")
    r = cli("preprocess", mixed_file, "--out", ".")
    assert r.exit_code == 0 and (tmp_path / "empty" / "meta.json").is_file(), r.stderr


def test_resume_on_a_corpus_with_another_vocabulary(cli, run_copy, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("abcdefgh " * 400, encoding="utf-8")
    ckpt_before = (run_copy / "last.pt").read_bytes()
    r = cli("train", other, "--resume", run_copy, "--max-steps", 40, "--out", "elsewhere")
    one_line_error(r, 4, "different vocabulary")
    assert not (tmp_path / "elsewhere").exists()
    assert (run_copy / "last.pt").read_bytes() == ckpt_before


# --------------------------------------------------------------------------- security


class _CreatesFile:
    """Unpickling this opens (and so creates) a file: what a hostile checkpoint would do."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _malicious(path: Path, marker: Path, kind: str) -> Path:
    payload = {"format": checkpoint.FORMAT, "version": 1, "model": _CreatesFile(marker)}
    if kind == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    return path


@pytest.mark.parametrize("kind", ["torch", "pickle"])
def test_malicious_pickle_is_refused_and_never_runs(cli, tmp_path, kind):
    marker = tmp_path / "pwned"
    evil = _malicious(tmp_path / "evil.pt", marker, kind)
    # the payload is live: an unsafe load does create the file
    if kind == "torch":
        torch.load(evil, weights_only=False)
    else:
        pickle.loads(evil.read_bytes())
    assert marker.exists()
    marker.unlink()
    run = tmp_path / "evil-run"
    run.mkdir()
    shutil.copy(evil, run / "last.pt")
    for args in (
        ("sample", evil, "--length", 5),
        ("eval", evil),
        ("info", evil),
        ("train", "--resume", run, "--max-steps", 10),
    ):
        r = cli(*args)
        assert r.exit_code == 4, (args, r.stderr)
        assert r.stderr.startswith("charrnn: error:") and r.stderr.count("\n") == 1
        assert "refused: the file asks to run code" in r.stderr, r.stderr
        assert not marker.exists(), args


class _Runs:
    """Unpickling this calls `call(*args)`: the payloads hostile checkpoints carry most."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return (self.call, self.args)


@pytest.mark.parametrize("payload", ["os.system", "subprocess", "eval"])
def test_code_in_a_checkpoint_is_refused_without_advice_to_load_it_anyway(cli, tmp_path, payload):
    marker = tmp_path / "pwned"
    call = {
        "os.system": _Runs(os.system, f"touch {marker}"),
        "subprocess": _Runs(subprocess.call, ["touch", str(marker)]),
        "eval": _Runs(eval, f"open({str(marker)!r}, 'w')"),
    }[payload]
    evil = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "version": 1, "model": call}, evil)
    torch.load(evil, weights_only=False)  # the payload is live
    assert marker.exists()
    marker.unlink()
    r = cli("sample", evil, "--length", 5)
    assert r.exit_code == 4 and r.stderr.count("\n") == 1, r.stderr
    assert "refused: the file asks to run code" in r.stderr
    assert "weights_only" not in r.stderr and "Re-running" not in r.stderr  # torch's advice, never passed on
    assert not marker.exists()


@pytest.mark.slow
def test_metadata_paths_never_write_outside_the_run_directory(cli, tmp_path, mixed_file, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    r = cli("preprocess", mixed_file, "--out", "corpora/mixed")
    assert r.exit_code == 0, r.stderr
    meta_path = work / "corpora" / "mixed" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["name"] = "../../../escaped"
    meta_path.write_text(json.dumps(meta))
    before_outside = {p for p in files_under(tmp_path) if p.parts[0] != "work"}
    r = cli("train", "corpora/mixed", *TINY_FLAGS, "--max-steps", 5)
    assert r.exit_code == 0, r.stderr
    assert {p for p in files_under(tmp_path) if p.parts[0] != "work"} == before_outside
    assert not list(tmp_path.parent.glob("escaped*"))
    (run,) = (work / "checkpoints").iterdir()
    assert run.name.startswith("escaped-")
    # a checkpoint's corpus path is only ever read: resuming writes in the run directory alone
    corpus_files = {p: p.read_bytes() for p in (work / "corpora" / "mixed").iterdir()}
    r = cli("train", "--resume", run, "--max-steps", 8)
    assert r.exit_code == 0, r.stderr
    assert {p: p.read_bytes() for p in (work / "corpora" / "mixed").iterdir()} == corpus_files
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["corpus"]["path"] = str(tmp_path / "nowhere")
    torch.save(ckpt, run / "last.pt")
    one_line_error(cli("train", "--resume", run, "--max-steps", 12), 3, "corpus is not on this machine")
    assert not (tmp_path / "nowhere").exists()


# --------------------------------------------------------------------------- faults survived


def _fork_cli(args: list, *, cwd: Path, stderr: Path) -> int:
    """Run `charrnn ARGS` in a child forked from this process, which has torch and charrnn loaded
    (a fresh `python -m charrnn` spends seconds on that); returns its pid. The child writes its
    stderr to the file `stderr` and exits with the command's exit code, or 1 after printing the
    traceback of any other exception."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.chdir(cwd)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.dup2(os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        # under pytest, sys.stdout and sys.stderr are its capture files, not fds 1 and 2
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)
        app([str(a) for a in args])
    except SystemExit as e:
        code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _exit_code(pid: int, block: bool = True) -> int | None:
    """The child's exit code, -N when signal N ended it, None while it runs (`block=False`)."""
    done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    return os.waitstatus_to_exitcode(status) if done else None


def _wait_for_step(metrics: Path, step: int, pid: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = _exit_code(pid, block=False)
        assert code is None, f"training exited with {code} before step {step}"
        if metrics.exists():
            lines = [line for line in metrics.read_text().splitlines() if line.endswith("}")]
            if lines and json.loads(lines[-1]).get("step", 0) >= step:
                return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    _exit_code(pid)
    pytest.fail(f"training did not reach step {step}")


SCHEDULE = ["--decay-steps", 200, "--eval-every", 0, "--checkpoint-every", 0, "--log-every", 1]


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_last_and_resume_is_exact(cli, tmp_path, mixed_file, signum, code):
    run = tmp_path / "checkpoints" / "sig"
    args = ["train", mixed_file, *TINY_FLAGS, *SCHEDULE, "--max-steps", 100000, "--out", run]
    pid = _fork_cli(args, cwd=tmp_path, stderr=tmp_path / "stderr.txt")
    _wait_for_step(run / "metrics.jsonl", 3, pid)
    os.kill(pid, signum)
    returncode = _exit_code(pid)
    stderr = (tmp_path / "stderr.txt").read_text(encoding="utf-8")
    assert returncode == code, stderr
    assert "Traceback" not in stderr
    assert f"resume with: charrnn train --resume {run}" in stderr
    saved = checkpoint.load(run / "last.pt")
    s = saved["step"]
    assert s >= 3
    # resumed, it ends bitwise where an uninterrupted run of the same length ends
    r = cli("train", "--resume", run, "--max-steps", s + 12, "--quiet")
    assert r.exit_code == 0, r.stderr
    r = cli("train", mixed_file, *TINY_FLAGS, *SCHEDULE, "--max-steps", s + 12, "--out", tmp_path / "straight")
    assert r.exit_code == 0, r.stderr
    a, b = checkpoint.load(run / "last.pt"), checkpoint.load(tmp_path / "straight" / "last.pt")
    assert a["step"] == b["step"] == s + 12 and same_weights(a, b)


def test_a_signal_sent_again_during_its_notice_is_harmless():
    # a rank of --nproc gets SIGTERM once for each thread of its dying launcher, and a handler runs
    # between any two bytecodes, in the middle of a print or an import: it only sets the flag, and
    # the notice comes once, from the loop's own call (here sending the signal again as it is given)
    told = []
    stop = StopFlag(on_stop=lambda: told.append(1) or os.kill(os.getpid(), signal.SIGTERM))
    with stop.installed():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert told == []  # nothing said from inside the handler
        assert stop() and stop() and told == [1]
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C after it still quits at once
            os.kill(os.getpid(), signal.SIGINT)
    assert stop.exit_code() == 143


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kill_9_at_random_moments_newest_checkpoint_always_loads(cli, tmp_path):
    from tests.kill9 import FLAGS, crash_loop

    (tmp_path / "corpus.txt").write_text(MIXED_TEXT, encoding="utf-8")
    # forked from this process, which has torch and charrnn loaded already (`python -m tests.kill9`
    # runs the same loop in a process of its own)
    # each kill within 0.25 s of the child's first save, ~10 of its save-every-step cycles
    report = crash_loop(tmp_path, tmp_path / "corpus.txt", kills=20, seed=1, max_s=0.25)
    assert report["failures"] == []
    assert report["rounds"] >= 20 and len(report["steps"]) == 20
    assert report["steps"] == sorted(report["steps"]) and report["steps"][-1] > report["steps"][0]
    # twenty kills and resumes later, the weights are those of a run never interrupted
    last = checkpoint.load(tmp_path / "run" / "last.pt")
    r = cli(
        "train",
        tmp_path / "corpus.txt",
        *FLAGS,
        "--checkpoint-every",
        0,
        "--eval-every",
        0,
        "--max-steps",
        last["step"],
        "--out",
        tmp_path / "straight",
    )
    assert r.exit_code == 0, r.stderr
    assert same_weights(last, checkpoint.load(tmp_path / "straight" / "last.pt"))


@pytest.mark.slow
def test_disk_full_keeps_previous_checkpoint_and_stops_cleanly(cli, tmp_path, mixed_file, monkeypatch):
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    run = tmp_path / "checkpoints" / "full"
    real_save = checkpoint.files.save
    calls, previous = [], []

    def save(payload, path):
        calls.append(path)
        if len(calls) == 3:  # the third save meets a full disk: the kernel's own ENOSPC
            previous.append((run / "last.pt").read_bytes())
            (Path(path).parent / f".{Path(path).name}.tmp-{os.getpid()}").symlink_to("/dev/full")
        return real_save(payload, path)

    monkeypatch.setattr(checkpoint.files, "save", save)
    flags = [*TINY_FLAGS, "--decay-steps", 200, "--eval-every", 0, "--checkpoint-every", 5]
    r = cli("train", mixed_file, *flags, "--max-steps", 40, "--out", run)
    one_line_error(
        r, 6, f"could not write checkpoint {run / 'last.pt'}: the disk is full", "the previous checkpoint is intact"
    )
    assert len(calls) == 3 and (run / "last.pt").read_bytes() == previous[0]
    assert not list(run.glob(".*tmp*"))
    last = checkpoint.load(run / "last.pt")
    assert last["step"] == 10
    for line in (run / "metrics.jsonl").read_text().splitlines():  # closed with whole lines
        json.loads(line)
    monkeypatch.setattr(checkpoint.files, "save", real_save)
    # resuming from the surviving checkpoint matches an uninterrupted run
    r = cli("train", "--resume", run, "--max-steps", 20, "--quiet")
    assert r.exit_code == 0, r.stderr
    r = cli("train", mixed_file, *flags, "--max-steps", 20, "--out", tmp_path / "straight")
    assert r.exit_code == 0, r.stderr
    assert same_weights(checkpoint.load(run / "last.pt"), checkpoint.load(tmp_path / "straight" / "last.pt"))


@pytest.mark.slow
def test_disk_full_for_a_log_file_stops_with_one_line(cli, tmp_path, mixed_file, mixed_corpus):
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    # every write to a log file linked to /dev/full meets the kernel's own ENOSPC. A new run
    # refuses a directory that holds logs, so metrics.jsonl is tried through train() itself ...
    run = tmp_path / "checkpoints" / "metrics"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").symlink_to("/dev/full")
    with pytest.raises(TrainingError, match="the disk is full; no checkpoint was written"):
        loop.train(mixed_corpus, tiny_model(len(mixed_corpus.vocab)), tiny_train(max_steps=20), run_dir=run)
    # ... and samples.txt through a resumed run
    run = tmp_path / "checkpoints" / "samples"
    r = cli("train", mixed_file, *TINY_FLAGS, "--max-steps", 2, "--sample-every", 0, "--out", run)
    assert r.exit_code == 0, r.stderr
    (run / "samples.txt").symlink_to("/dev/full")
    r = cli("train", "--resume", run, "--max-steps", 20, "--checkpoint-every", 2, "--sample-every", 5, "--quiet")
    one_line_error(
        r, 6, f"could not write {run / 'samples.txt'}: the disk is full; last.pt and best.pt hold the last good weights"
    )
    assert checkpoint.load(run / "last.pt")["step"] == 4


@pytest.mark.slow
def test_disk_full_while_resuming_keeps_metrics_and_checkpoint(cli, tmp_path, mixed_file, monkeypatch):
    run = tmp_path / "checkpoints" / "r"
    r = cli("train", mixed_file, *TINY_FLAGS, "--max-steps", 10, "--checkpoint-every", 5, "--out", run)
    assert r.exit_code == 0, r.stderr
    metrics, last = (run / "metrics.jsonl").read_bytes(), (run / "last.pt").read_bytes()
    # resuming rewrites metrics.jsonl through a temporary file: that write meets a full disk half-way
    _disk_full_for(monkeypatch, ".metrics.jsonl.tmp-")
    r = cli("train", "--resume", run, "--max-steps", 20, "--quiet")
    one_line_error(r, 6, f"could not rewrite {run / 'metrics.jsonl'} to resume: the disk is full")
    assert (run / "metrics.jsonl").read_bytes() == metrics and (run / "last.pt").read_bytes() == last
    assert not list(run.glob(".*tmp*"))


@pytest.mark.slow
def test_leftover_temporary_files_of_a_killed_run_are_removed_on_resume(cli, tmp_path, mixed_file):
    run = tmp_path / "checkpoints" / "r"
    r = cli("train", mixed_file, *TINY_FLAGS, "--max-steps", 5, "--out", run)
    assert r.exit_code == 0, r.stderr
    torn = [run / ".last.pt.tmp-99999", run / ".best.pt.tmp-7", run / ".metrics.jsonl.tmp-12"]
    other = run / ".notes.txt.tmp-1"  # not charrnn's: left alone
    for f in (*torn, other):
        f.write_bytes(b"half a file")
    r = cli("train", "--resume", run, "--max-steps", 8, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert not any(f.exists() for f in torn) and other.exists()


def _disk_full_for(monkeypatch, name_part: str) -> None:
    """Files opened with `name_part` in their path take 100 bytes of a write, then fail with ENOSPC."""
    real_open = open

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, b):
            self.f.write(bytes(b)[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(
        "builtins.open",
        lambda p, mode="r", *a, **k: (
            Full(real_open(p, mode, *a, **k)) if name_part in str(p) else real_open(p, mode, *a, **k)
        ),
    )


def test_enospc_from_a_write_is_named(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save({"a": 1}, path)
    good = path.read_bytes()
    _disk_full_for(monkeypatch, ".tmp-")
    with pytest.raises(TrainingError, match="the disk is full"):
        checkpoint.save({"a": 2}, path)
    monkeypatch.undo()
    assert path.read_bytes() == good and not list(tmp_path.glob(".*tmp*"))


class _Warnings(Callbacks):
    def __init__(self):
        self.warnings = []

    def on_warning(self, message: str) -> None:
        self.warnings.append(message)


def _nan_on(monkeypatch, bad_calls):
    """Make the training loss NaN on the given (1-based) training steps."""
    real = CharRNN.losses
    n = [0]

    def losses(self, out, targets):
        nll = real(self, out, targets)
        if self.training:  # a training step (evaluation runs the model in eval mode)
            n[0] += 1
            if bad_calls(n[0]):
                return nll * float("nan")
        return nll

    monkeypatch.setattr(CharRNN, "losses", losses)


@pytest.mark.slow
def test_nan_steps_are_skipped_and_the_rate_lowered(tmp_path, mixed_corpus, monkeypatch):
    _nan_on(monkeypatch, lambda i: i in (4, 5, 9))
    cb = _Warnings()
    result = train(
        mixed_corpus,
        tiny_model(len(mixed_corpus.vocab)),
        tiny_train(max_steps=20, eval_every=5),
        run_dir=tmp_path / "run",
        callbacks=cb,
    )
    assert result.step == 20 and len(cb.warnings) == 3
    assert all("non-finite loss" in w and "step skipped" in w for w in cb.warnings)
    last = checkpoint.load(tmp_path / "run" / "last.pt")
    assert last["lr_scale"] == 0.125
    for name in ("last.pt", "best.pt"):
        checkpoint.load_model(tmp_path / "run" / name)  # finite weights
    assert 0 < checkpoint.load(tmp_path / "run" / "best.pt")["best_val_loss"] < float("inf")


@pytest.mark.slow
def test_divergence_stops_with_a_clear_message_and_best_stays_finite(cli, tmp_path, mixed_file, monkeypatch):
    _nan_on(monkeypatch, lambda i: i > 6)
    run = tmp_path / "checkpoints" / "nan"
    r = cli(
        "train", mixed_file, *TINY_FLAGS, "--eval-every", 3, "--checkpoint-every", 3, "--max-steps", 40, "--out", run
    )
    one_line_error(
        r,
        6,
        f"training diverged: {MAX_BAD_STEPS} non-finite steps in a row at step {6 + MAX_BAD_STEPS}",
        "last.pt and best.pt hold the last good weights",
    )
    assert r.stderr.count("charrnn: error") == 1
    best = checkpoint.load(run / "best.pt")
    assert best["best_val_loss"] < float("inf") and best["step"] <= 6
    checkpoint.load_model(run / "best.pt")
    checkpoint.load_model(run / "last.pt")


@pytest.mark.slow
def test_absurd_learning_rate_never_saves_a_nan_model(cli, tmp_path, mixed_file):
    run = tmp_path / "checkpoints" / "boom"
    r = cli(
        "train",
        mixed_file,
        *TINY_FLAGS,
        "--lr",
        "1e38",
        "--grad-clip",
        0,
        "--eval-every",
        2,
        "--max-steps",
        40,
        "--out",
        run,
    )
    one_line_error(r, 6, "training diverged", "no checkpoint was written")
    assert not (run / "best.pt").exists() and not (run / "last.pt").exists()


# --------------------------------------------------------------------------- properties

# Astral planes, combining marks, CJK, RTL, controls, format characters, everything else.
UNICODE = st.one_of(
    st.characters(codec="utf-8"),  # any code point a UTF-8 text can hold: no lone surrogates
    st.characters(min_codepoint=0x10000),
    st.characters(categories=["Mn", "Me", "Mc"]),
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
    st.characters(min_codepoint=0x0590, max_codepoint=0x06FF),
    st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]),
    st.sampled_from(["\r\n", "\r", "\n", "\ufeff", "\x00"]),
).filter(lambda s: UNK not in s)  # in a vocabulary U+FDD1 is UNK, and a text holding it is refused
TEXT = st.lists(UNICODE, max_size=200).map("".join)


@PROPERTY
@given(TEXT)
def test_vocab_encode_decode_round_trip(text):
    v = Vocab.from_text(text)
    ids = v.encode(text)
    assert all(0 <= i < len(v) for i in ids)
    assert v.decode(ids) == text
    assert Vocab(json.loads(v.to_json())["chars"]) == v


@pytest.mark.slow
@PROPERTY
@given(TEXT, st.integers(1, 64), st.sampled_from(["keep", "lf"]))
def test_preprocess_then_decode_is_the_original(tmp_path_factory, text, chunk_bytes, newline):
    expected = text[1:] if text.startswith("\ufeff") else text  # a leading BOM is dropped
    if newline == "lf":
        expected = expected.replace("\r\n", "\n")
    d = tmp_path_factory.mktemp("p")
    src = d / "text.txt"
    src.write_bytes(text.encode("utf-8"))
    opts = CorpusOptions(newline=newline, force=True)
    if not expected or expected.isspace() or all(c.isspace() for c in expected):
        with pytest.raises(InputError):
            preprocess(src, d / "c", opts, chunk_bytes=chunk_bytes)
        return
    corpus = preprocess(src, d / "c", opts, chunk_bytes=chunk_bytes)
    assert corpus.vocab.decode(corpus.ids) == expected


_MODELS: dict[int, CharRNN] = {}


def _model(v: int) -> CharRNN:
    if v not in _MODELS:
        torch.manual_seed(v)
        _MODELS[v] = CharRNN(tiny_model(v)).eval()
    return _MODELS[v]


@pytest.mark.slow
@PROPERTY
@given(
    st.lists(UNICODE.filter(lambda c: len(c) == 1), min_size=1, max_size=40, unique=True),
    st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1e300, allow_nan=False, allow_infinity=False)),
    st.one_of(st.none(), st.integers(1, 50)),
    st.one_of(st.none(), st.floats(min_value=1e-9, max_value=1.0)),
    st.integers(0, 2**31),
)
def test_sampling_stays_in_the_vocabulary_and_is_valid_utf8(chars, temp, top_k, top_p, seed):
    v = Vocab(sorted(chars))
    model = _model(len(v))
    pieces = list(
        generate(
            model,
            v,
            SampleConfig(prime=v.chars[0], length=20, temp=temp, top_k=top_k, top_p=top_p, seed=seed, num_samples=2),
        )
    )
    for s in range(2):
        text = "".join(p[s] for p in pieces)
        assert set(text) <= set(v.chars)
        assert text.encode("utf-8").decode("utf-8") == text
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, len(v), generator=g) * 1e30  # logits far beyond what a model gives
    ids = pick(logits, g, temp=temp, top_k=top_k, top_p=top_p)
    assert ((ids >= 0) & (ids < len(v))).all()
