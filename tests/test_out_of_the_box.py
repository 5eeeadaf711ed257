"""What a new user meets first: the bundled corpus, progress samples without asking, and a
--help that tells the truth about every default."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.main import get_command

from charrnn.cli.app import app
from charrnn.corpus.bundled import CORPORA
from charrnn.training.runlog import read_samples
from tests.conftest import MIXED_TEXT, ROOT, TINY_FLAGS, one_line_error

COMMANDS = ("preprocess", "corpora", "train", "sample", "eval", "info", "visualize", "report")


# --------------------------------------------------------------------------- the bundled corpus


def test_the_bundled_corpus_is_tinyshakespeare_byte_for_byte():
    c = CORPORA["tinyshakespeare"]
    data = c.path.read_bytes()
    assert len(data) == 1_115_394 and hashlib.sha256(data).hexdigest() == c.sha256
    assert data.startswith(b"First Citizen:\nBefore we proceed any further, hear me speak.")


def test_corpora_lists_the_bundled_corpora(cli):
    r = cli("corpora")
    assert r.exit_code == 0, r.stderr
    assert "tinyshakespeare" in r.stdout and "1,115,394 bytes" in r.stdout and "char-rnn" in r.stdout


def test_a_corpus_is_named_and_a_real_file_of_that_name_wins(cli, tmp_path):
    r = cli("preprocess", "tinyshakespeare")
    assert r.exit_code == 0, r.stderr
    assert "1,115,394 bytes" in r.stderr and "65 code points" in r.stderr
    # a file of the same name in the working directory is the user's, and is used instead
    (tmp_path / "tinyshakespeare").write_text(MIXED_TEXT, encoding="utf-8")
    r = cli("preprocess", "tinyshakespeare", "--out", "corpora/mine")
    assert r.exit_code == 0, r.stderr
    assert f"{len(set(MIXED_TEXT))} code points" in r.stderr


def test_an_unknown_name_lists_the_bundled_ones(cli, tmp_path):
    for command in ("train", "preprocess"):
        r = cli(command, "tinyshakespear")
        one_line_error(r, 3, "tinyshakespear: no such file", "bundled: tinyshakespeare")
    assert not (tmp_path / "corpora").exists() and not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_the_wheel_carries_the_corpus_into_an_installed_copy(tmp_path):
    """Built and installed as a user gets it, not read from the source tree."""
    # from a copy of the sources, since a build writes build/ and charrnn.egg-info beside them
    src = tmp_path / "src"
    shutil.copytree(ROOT / "charrnn", src / "charrnn", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(src), "--no-deps", "-w", str(tmp_path / "dist")], check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("charrnn-*.whl")
    assert "charrnn/corpora/tinyshakespeare.txt" in zipfile.ZipFile(wheel).namelist()
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, cwd=tmp_path)
    code = "from charrnn.corpus.bundled import CORPORA; print(CORPORA['tinyshakespeare'].path)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    path = Path(out.stdout.strip())
    assert path.is_relative_to(site) and path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == CORPORA["tinyshakespeare"].sha256


# --------------------------------------------------------------------------- progress samples by default


def _train(cli, tmp_path, name: str, *flags) -> Path:
    (tmp_path / "mixed.txt").write_text(MIXED_TEXT, encoding="utf-8")
    r = cli("train", "mixed.txt", *TINY_FLAGS, "--max-steps", 30, "--eval-every", 10, *flags, "--out", name)
    assert r.exit_code == 0, r.stderr
    return tmp_path / name


@pytest.mark.slow
def test_a_sample_at_every_evaluation_unless_turned_off(cli, tmp_path):
    run = _train(cli, tmp_path, "default")  # --quiet (in TINY_FLAGS) silences the console only
    samples = read_samples(run)
    assert [s["step"] for s in samples] == [10, 20, 30]
    assert all(len(s["text"]) >= 150 and set(s["text"]) <= set(MIXED_TEXT) for s in samples)
    page = (run / "report.html").read_text(encoding="utf-8")
    assert page.count("<li>") == 3
    assert [s["step"] for s in read_samples(_train(cli, tmp_path, "every7", "--sample-every", 7))] == [7, 14, 21, 28]
    off = _train(cli, tmp_path, "off", "--sample-every", 0)
    assert not (off / "samples.txt").exists() and read_samples(off) == []


def test_the_final_evaluation_brings_a_sample_too(cli, tmp_path):
    run = _train(cli, tmp_path, "end", "--eval-every", 0)  # evaluated only once, at the end
    assert [s["step"] for s in read_samples(run)] == [30]


# --------------------------------------------------------------------------- a --help that tells the truth


def _help(cli, command: str) -> str:
    r = cli(command, "--help")
    assert r.exit_code == 0, r.stderr
    return r.stdout


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one row per option: a default is not wrapped away from it


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_every_default(cli, wide, command):
    text = _help(cli, command)
    rows: dict[str, str] = {}  # each option's whole entry: its flags, then its description (beside or below)
    flag = None
    for line in text.splitlines():
        m = re.match(r"  (?:-\w, )?(--[a-z-]+)", line)
        if m:
            flag = m[1]
            rows[flag] = line
        elif flag and line.startswith("    "):
            rows[flag] += " " + line.strip()
        else:
            flag = None
    params = [p for p in get_command(app).commands[command].params if p.param_type_name == "option"]
    assert params or command in ("corpora", "info")  # the two that take no options
    for p in params:
        flag = next(o for o in p.opts if o.startswith("--"))
        assert flag in rows, (command, flag)
        if p.default is None or p.is_flag or p.show_default is False:
            continue  # no value to show: its help says in words what happens without it
        assert f"[default: {p.default}]" in " ".join(rows[flag].split()), (command, flag, rows[flag])


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_reads_cleanly(cli, command):
    text = _help(cli, command) if command else cli("--help").stdout
    for line in text.splitlines():
        assert not line.rstrip(" │").endswith(" ."), line  # a default swallowed as markup leaves " ."
    assert "<bool>" not in text  # a flag takes no value
    assert "[[" not in text and "]]" not in text  # an optional argument is bracketed once
    assert "../shared" not in text


def test_train_help_counts_its_defaults(cli, wide):
    text = _help(cli, "train")
    shown = text.count("[default:")
    with_default = [
        p
        for p in get_command(app).commands["train"].params
        if p.param_type_name == "option" and p.default is not None and not p.is_flag and p.show_default is not False
    ]
    assert shown == len(with_default) >= 20
