"""Data-parallel training: the process group, the few collectives the training loop needs,
and `launch`, which starts the processes of `charrnn train --nproc N` on one machine. Without
torchrun's environment (RANK, WORLD_SIZE, ...) everything but `launch` is a no-op.

    charrnn train corpus.txt --nproc 2 --batch-size 64
    torchrun --nproc-per-node 2 -m charrnn train corpus.txt --batch-size 64   # the same, by hand

Each rank owns a disjoint, contiguous share of the batch's streams; gradients are averaged
by DistributedDataParallel; rank 0 alone writes checkpoints, metrics, samples and the
progress bar. NCCL on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from charrnn.errors import ERROR_PREFIX, LAUNCHED_ENV, BadValueError, PeerLostError


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run: its rank among `world` processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and logs and speaks to the user."""
        return self.rank == 0

    def share(self, n: int, what: str = "--batch-size") -> slice:
        """This rank's contiguous share of n rows."""
        if n % self.world:
            raise BadValueError(f"{what} {n} must be a multiple of the number of processes ({self.world})")
        k = n // self.world
        return slice(self.rank * k, (self.rank + 1) * k)


def from_env() -> Ranks:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    return Ranks(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group; on CUDA each rank takes the GPU of its local rank."""
    if not ranks.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def teardown(ranks: Ranks) -> None:
    if ranks.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], ranks: Ranks, device: torch.device) -> list[float]:
    if not ranks.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_max(values: list[int], ranks: Ranks, device: torch.device) -> list[int]:
    if not ranks.enabled:
        return values
    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [int(v) for v in t.tolist()]


def gather_rows(t: torch.Tensor, ranks: Ranks, dim: int = 1) -> torch.Tensor:
    """Concatenate every rank's share of `t` along `dim` (ranks in order)."""
    if not ranks.enabled:
        return t
    parts = [torch.empty_like(t) for _ in range(ranks.world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=dim)


# When a rank fails, or rank 0 loses a peer, the others get this long to end on their own (rank 0
# may be the cause, a full disk say, or be writing its report after the run; a failing rank may
# still be reporting why) before every process is killed: over NCCL a rank whose peer is gone
# can wait in a collective for good. Only rank 0 writes, and it writes checkpoints atomically.
GRACE_S = 30.0
# Exit codes that do not make a rank the cause of a failure: interrupted, or it lost a peer.
_NOT_A_CAUSE = (0, 130, 143, PeerLostError.exit_code)


def peer_lost(e: BaseException) -> bool:
    """Whether a collective failed because another process of the group went away."""
    text = str(e)
    return isinstance(e, dist.DistError) or any(
        w in text for w in ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
    )


def relaunch(nproc: int, argv: list[str], *, run_dir, batch_size: int) -> tuple[int, str]:
    """Run this `charrnn train` command line (`argv`, without the program) again as `nproc`
    processes writing to `run_dir`, which this process has named and checked, with the corpus
    cached. An indivisible batch is refused here, once, before any process starts."""
    Ranks(0, nproc).share(batch_size)
    return launch(nproc, [*_without_nproc(argv), "--out", str(run_dir)])


def _without_nproc(argv: list[str]) -> list[str]:
    args, skip = [], False
    for a in argv:
        if skip or a == "--nproc":
            skip = not skip
            continue
        if not a.startswith("--nproc="):
            args.append(a)
    return args


def launch(nproc: int, args: list[str]) -> tuple[int, str]:
    """Run `python -m charrnn ARGS` as `nproc` ranks on this machine, as torchrun --standalone
    would, and wait for all of them. Rank 0 keeps the terminal; the others' stderr is kept back
    and shown only if one of them is the first to fail. When a rank fails the rest are stopped.

    Returns (exit code, message); the message is empty when rank 0 has reported the outcome
    itself, else it names the process that failed first and how."""
    # The ranks meet at a store this process holds, as they meet at torchrun's agent: its port is
    # bound before any rank starts, so no other program can take it in between.
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    procs: list[subprocess.Popen] = []
    interrupts: list[int] = []

    def forward(signum, frame):
        # The ranks have their own process group, so a Ctrl-C at the terminal reaches only this
        # process: it is passed on once (a second Ctrl-C, passed on too, quits them at once).
        interrupts.append(signal.SIGTERM if signum == signal.SIGHUP else signum)
        for p in procs:
            _signal(p, interrupts[-1])

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        for rank in range(nproc):
            procs.append(_start_rank(rank, nproc=nproc, args=args, port=store.port))
        tails = [collections.deque(maxlen=50) for _ in procs]
        readers = [
            threading.Thread(target=_keep_tail, args=(p.stderr, tail), daemon=True)
            for p, tail in zip(procs[1:], tails[1:], strict=True)
        ]
        for r in readers:
            r.start()
        cause = _wait(procs)
        for r in readers:
            r.join(timeout=5)
    finally:
        for p in procs:  # only if this process itself is failing
            _signal(p, signal.SIGKILL)
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return _outcome([p.returncode for p in procs], cause=cause, interrupts=interrupts, tails=tails)


def _start_rank(rank: int, *, nproc: int, args: list[str], port: int) -> subprocess.Popen:
    """One rank, in its own process group, with torchrun's environment; only rank 0 keeps the
    terminal, the others' stderr is read by the launcher."""
    env = {
        **os.environ,
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(nproc),
        "LOCAL_WORLD_SIZE": str(nproc),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "TORCHELASTIC_USE_AGENT_STORE": "True",
        "TORCHELASTIC_RESTART_COUNT": "0",
        LAUNCHED_ENV: str(os.getpid()),
    }
    if rank:
        env["COLUMNS"] = "1000"  # an error kept back stays on one line
    return subprocess.Popen(
        [sys.executable, "-m", "charrnn", *args],
        env=env,
        stdout=subprocess.DEVNULL if rank else None,
        stderr=subprocess.PIPE if rank else None,
        **_own_process_group(),
    )


def _outcome(codes: list[int], *, cause: int | None, interrupts: list[int], tails: list) -> tuple[int, str]:
    """The launcher's (exit code, message) from its ranks' exit codes and the rank that failed first."""
    nproc = len(codes)
    if codes[0] == 0:  # rank 0 finished the run; a peer can still abort in gloo's teardown after it
        return 0, ""
    if interrupts and (codes[0] < 0 or codes[0] in (130, 143)):
        # stopped as asked; a second Ctrl-C may end rank 0 by the signal itself, before its own line
        return (143 if signal.SIGTERM in interrupts else 130), ("interrupted" if codes[0] < 0 else "")
    if cause == 0 and codes[0] > 0 and codes[0] != PeerLostError.exit_code:
        return codes[0], ""
    if cause is None:
        if codes[0] != PeerLostError.exit_code:
            return codes[0], ""
        return codes[0], f"training process 0 of {nproc} lost its peers"
    code = codes[cause]
    how = f"was killed by signal {-code}" if code < 0 else f"failed (exit {code})"
    return (code if code > 0 else 1), f"training process {cause} of {nproc} {how}" + _reason(tails[cause])


def _own_process_group() -> dict:
    if sys.version_info >= (3, 11):
        return {"process_group": 0}
    return {"start_new_session": True}  # no preexec_fn: the store's thread already runs here


def die_with_launcher() -> None:
    """In a rank that `launch` started: be sent SIGTERM (save, then stop) if the launcher dies,
    even by SIGKILL, instead of training on unwatched. Linux only; elsewhere nothing happens."""
    launcher = os.environ.get(LAUNCHED_ENV, "")
    if not sys.platform.startswith("linux") or not launcher.isdigit():
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(launcher):  # it died before the line above
        os._exit(143)


def _reason(tail: collections.deque) -> str:
    """': why', from the end of a rank's stderr: its charrnn error, else its last line."""
    lines = [line.strip() for line in tail if line.strip()]
    ours = [line for line in lines if line.startswith(ERROR_PREFIX)]
    if ours:
        return ": " + ours[-1][len(ERROR_PREFIX) :]
    return f": {lines[-1]}" if lines else ""


def _wait(procs: list[subprocess.Popen]) -> int | None:
    """Wait for every process, stopping the rest once one fails; returns the rank that failed
    first (rank 0 when it stopped with an error of its own), or None."""
    cause, since, killed = None, None, False
    while True:
        codes = [p.poll() for p in procs]
        if codes[0] not in (None, 0, PeerLostError.exit_code) and not killed:
            # rank 0's own error wins even over a peer that died a moment before it: the peer
            # most likely died of rank 0's exit (gloo can abort a process whose peer went away)
            cause = 0
            for p in procs[1:]:
                _signal(p, signal.SIGKILL)
        if None not in codes:
            break
        if cause is None:
            failed = [r for r, c in enumerate(codes) if c is not None and c not in _NOT_A_CAUSE]
            if failed:
                cause = failed[0]
        if since is None and (cause is not None or codes[0] in (0, PeerLostError.exit_code)):
            since = time.monotonic()
        if since is not None and time.monotonic() - since > GRACE_S:
            killed = True
            for p in procs:
                _signal(p, signal.SIGKILL)
        time.sleep(0.05)
    if cause is None:  # ended in the same instant, or rank 0 lost a peer that was interrupted
        first = [r for r, c in enumerate(codes) if c not in _NOT_A_CAUSE]
        lost = [r for r, c in enumerate(codes) if r and c not in (0, PeerLostError.exit_code)]
        cause = (first or lost or [None])[0]
    return cause


def _keep_tail(stream, tail: collections.deque) -> None:
    for raw in stream:
        tail.append(raw.decode("utf-8", "replace"))


def _signal(p: subprocess.Popen, sig: int) -> None:
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
