"""Shared fixtures and helpers: a tiny non-ASCII corpus, tiny models that train in a second on
the CPU, one tiny run trained once per session, and the checks several test modules make."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest
import torch
import typer.main
import typer.testing
from typer.testing import CliRunner

import charrnn
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


@pytest.fixture(scope="session")
def click_command():
    """The click command Typer builds from the app, as `charrnn` builds it once per process."""
    return typer.main.get_command(app)


@pytest.fixture
def cli(tmp_path, monkeypatch, click_command):
    """Run charrnn in a fresh working directory (corpora/ and checkpoints/ land there)."""
    monkeypatch.chdir(tmp_path)
    # Typer's CliRunner builds the command again at every call, a good part of a short command's time
    build = typer.testing._get_command
    monkeypatch.setattr(typer.testing, "_get_command", lambda a: click_command if a is app else build(a))
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


class Forked:
    """`charrnn ARGS` in a child forked from this process, in place of `subprocess.Popen([sys.executable,
    "-m", "charrnn", *ARGS], stderr=PIPE, text=True)`: the child finds torch, torch._dynamo (which
    AdamW imports) and charrnn imported already, where a fresh interpreter spends 2-3 s of CPU on
    them before it does anything. It runs the command line as `python -m charrnn` does, in `cwd`
    with the environment `env`, stdin and stdout on /dev/null and stderr on the pipe `.stderr`
    (text, line by line as written), and exits with the command's exit code (1 after a traceback
    for any other exception). It has Popen's pid, returncode, poll, wait, send_signal, kill and
    communicate. For the tests of what a process does (signals, exit codes, ports, its children);
    those of the installed command and of `python -m charrnn` itself start real interpreters."""

    def __init__(self, args, *, cwd: Path, env: dict[str, str] | None = None):
        import torch._dynamo  # noqa: F401  (what AdamW's constructor imports, in seconds: once here, not in each child)

        self.args = [str(a) for a in args]
        self.returncode: int | None = None
        r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(r)
            self._child(Path(cwd), env, w)  # never returns
        os.close(w)
        self.stderr = open(r, encoding="utf-8")

    def _child(self, cwd: Path, env: dict[str, str] | None, stderr_fd: int) -> None:
        code = 1
        try:
            os.chdir(cwd)
            if env is not None:
                os.environ.clear()
                os.environ.update(env)
            null = os.open(os.devnull, os.O_RDWR)
            for fd, target in ((0, null), (1, null), (2, stderr_fd)):
                os.dup2(target, fd)
            # under pytest, sys.stdin, sys.stdout and sys.stderr are its capture files, not fds 0, 1, 2;
            # stderr is line-buffered, as in a fresh interpreter
            sys.stdin = open(0, encoding="utf-8", closefd=False)
            sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
            sys.stderr = open(2, "w", encoding="utf-8", closefd=False, buffering=1)
            # the signal dispositions of a fresh interpreter, whatever this process set
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for sig in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            torch.set_num_threads(1)  # a forked child must not reuse the parent's thread pool
            # what `python -m charrnn ARGS` sees (the launcher of --nproc passes sys.argv on to its ranks)
            sys.argv = [str(Path(charrnn.__file__).with_name("__main__.py")), *self.args]
            app(self.args)
            code = 0
        except SystemExit as e:
            code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[None, str]:
        """(None, all of stderr) once the process has exited and every writer of stderr has closed it."""
        read: list[str] = []
        reader = threading.Thread(target=lambda: read.append(self.stderr.read()), daemon=True)
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(timeout)
        return None, read[0]


def fork_charrnn(*args, cwd: Path, env: dict[str, str] | None = None) -> Forked:
    """`charrnn ARGS` in a forked child (see `Forked`), with `subprocess_env()` unless `env` is given."""
    return Forked(args, cwd=cwd, env=subprocess_env() if env is None else env)
