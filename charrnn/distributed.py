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
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from charrnn.errors import LAUNCHED_ENV, BadValueError, PeerLostError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, n: int, what: str = "--batch-size") -> slice:
        """This rank's contiguous share of n rows."""
        if n % self.world:
            raise BadValueError(f"{what} {n} must be a multiple of the number of processes ({self.world})")
        k = n // self.world
        return slice(self.rank * k, (self.rank + 1) * k)


def from_env() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(d: Dist, device: torch.device) -> torch.device:
    """Join the process group; on CUDA each rank takes the GPU of its local rank."""
    if not d.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], d: Dist, device: torch.device) -> list[float]:
    if not d.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_max(values: list[int], d: Dist, device: torch.device) -> list[int]:
    if not d.enabled:
        return values
    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [int(v) for v in t.tolist()]


def gather_rows(t: torch.Tensor, d: Dist, dim: int = 1) -> torch.Tensor:
    """Concatenate every rank's share of `t` along `dim` (ranks in order)."""
    if not d.enabled:
        return t
    parts = [torch.empty_like(t) for _ in range(d.world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=dim)


# When a rank other than 0 fails, rank 0 gets this long to end on its own (it may be the cause, a
# full disk say, or already stopping) before every process is killed. Ranks other than 0 never
# write, so killing them is always safe; checkpoints are written atomically in any case.
GRACE_S = 5.0
# Exit codes that do not make a rank the cause of a failure: interrupted, or it lost a peer.
_NOT_A_CAUSE = (0, 130, 143, PeerLostError.exit_code)


def peer_lost(e: BaseException) -> bool:
    """Whether a collective failed because another process of the group went away."""
    text = str(e)
    return isinstance(e, dist.DistError) or any(
        w in text for w in ("Connection closed by peer", "Connection reset by peer", "Broken pipe"))


def launch(nproc: int, args: list[str]) -> tuple[int, str]:
    """Run `python -m charrnn ARGS` as `nproc` ranks on this machine, as torchrun --standalone
    would, and wait for all of them. Rank 0 keeps the terminal; the others' stderr is kept back
    and shown only if one of them is the first to fail. When a rank fails the rest are stopped.

    Returns (exit code, message); the message is empty when rank 0 has reported the outcome
    itself, else it names the process that failed first and how."""
    with socket.socket() as s:  # a free loopback port for rank 0's store
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs, tails = [], []
    for rank in range(nproc):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
               "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               LAUNCHED_ENV: "1"}
        pipe = subprocess.PIPE if rank else None
        p = subprocess.Popen([sys.executable, "-m", "charrnn", *args], env=env, stderr=pipe,
                             stdout=subprocess.DEVNULL if rank else None)
        procs.append(p)
        tails.append(collections.deque(maxlen=20))
        if rank:
            threading.Thread(target=_keep_tail, args=(p.stderr, tails[-1]), daemon=True).start()

    def forward(signum, frame):  # Ctrl-C reaches every process from the terminal; a kill only this one
        if signum == signal.SIGTERM:
            for p in procs:
                _signal(p, signal.SIGTERM)

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        cause = _wait(procs)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    codes = [p.returncode for p in procs]
    if cause is None or (cause == 0 and codes[0] > 0):
        return codes[0], ""
    code = codes[cause]
    how = f"was killed by signal {-code}" if code < 0 else f"failed (exit {code})"
    last = next((line.strip() for line in reversed(tails[cause]) if line.strip()), "")
    return (code if code > 0 else 1), f"training process {cause} of {nproc} {how}" + (f": {last}" if last else "")


def _wait(procs: list[subprocess.Popen]) -> int | None:
    """Wait for every process, stopping the rest once one fails; returns the rank that failed
    first (rank 0 when it stopped with any error of its own), or None."""
    cause, since, killed = None, 0.0, False
    while True:
        codes = [p.poll() for p in procs]
        if codes[0] not in (None, 0):
            # rank 0's own error wins even over a peer that died a moment before it: the peer
            # most likely died of rank 0's exit (gloo can abort a process whose peer went away)
            if not killed and codes[0] != PeerLostError.exit_code:
                cause = 0
            for p in procs[1:]:
                _signal(p, signal.SIGKILL)
        if None not in codes:
            break
        if cause is None:
            failed = [r for r, c in enumerate(codes) if c is not None and c not in _NOT_A_CAUSE]
            if failed:
                cause, since = failed[0], time.monotonic()
        elif time.monotonic() - since > GRACE_S:
            killed = True
            for p in procs:
                _signal(p, signal.SIGKILL)
        time.sleep(0.05)
    if cause is None:  # ended in the same instant
        cause = next((r for r, c in enumerate(codes) if c not in _NOT_A_CAUSE), None)
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
