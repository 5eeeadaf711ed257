"""Device and precision choice, seeding, and RNG state capture.

`--device auto` picks cuda, then mps, then cpu. `--precision auto` picks bf16 autocast
where the hardware runs it fast (CUDA with bf16 support; a CPU with AMX or AVX512-BF16),
and float32 elsewhere.
"""

from __future__ import annotations

import contextlib
import random
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import torch

from charrnn.errors import DeviceError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA device is available on this machine (try --device cpu)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("--device mps: Apple's MPS backend is not available on this machine (try --device cpu)")
    if name not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"--device must be auto, cpu, cuda or mps, not {name!r}")
    return torch.device(name)


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """AMX-BF16 or AVX512-BF16: where bf16 matrix products beat float32 several times."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def pick_precision(name: str, device: torch.device) -> str:
    """Resolve auto and refuse what the device cannot do."""
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu":
            return "bf16" if cpu_has_fast_bf16() else "fp32"
        return "fp32"
    if name == "fp16" and device.type != "cuda":
        raise DeviceError(f"--precision fp16 needs a CUDA device, not {device.type} (use bf16 or fp32)")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("--precision bf16: this GPU does not support bfloat16 (use fp16 or fp32)")
    if name == "bf16" and device.type == "mps":
        raise DeviceError("--precision bf16 is not supported on mps (use fp32)")
    if name not in ("fp32", "bf16", "fp16"):
        raise DeviceError(f"--precision must be auto, fp32, bf16 or fp16, not {name!r}")
    return name


@cache
def cpu_runs_bf16_rnn(kind: str) -> bool:
    """Whether this CPU's kernels run a `kind` layer under bf16 autocast: without AVX512-BF16
    or AMX, oneDNN has no bf16 LSTM to offer and refuses it at the first step. A tiny layer
    is tried once, so the answer is this machine's, not a guess from its CPU flags."""
    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind](4, 4, batch_first=True)
    try:
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            out, _ = layer(torch.zeros(1, 2, 4))
        out.float().sum().backward()
    except RuntimeError:
        return False
    return True


def training_precision(requested: str, device: torch.device, kind: str) -> str:
    """The precision to train a `kind` layer in: `requested` with auto resolved, except that
    where this CPU's kernels cannot train it in bf16, auto means fp32 and bf16 is refused."""
    precision = pick_precision(requested, device)
    if device.type == "cpu" and precision == "bf16" and not cpu_runs_bf16_rnn(kind):
        if requested == "auto":
            return "fp32"
        layer = f"{'a' if kind == 'gru' else 'an'} {kind.upper()}"
        raise DeviceError(
            f"--precision bf16: this CPU's kernels cannot train {layer} in bfloat16 "
            "(it has no AVX512-BF16 or AMX); use --precision fp32"
        )
    return precision


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def needs_loss_scaling(device: torch.device, precision: str) -> bool:
    """Whether gradients pass through float16 and need a loss scale to stay out of underflow.

    On CUDA, autocast runs cuDNN's recurrent layers in float16 whatever dtype it was given
    (cuDNN has no bfloat16 RNN), so a bf16 run there has float16 gradients too."""
    return precision == "fp16" or (device.type == "cuda" and precision == "bf16")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):  # a different GPU count: keep the fresh seed
            torch.cuda.set_rng_state_all(state["cuda"])


def generator(seed: int | None, device: torch.device = torch.device("cpu")) -> torch.Generator:
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g
