"""Memory estimates: a model or a sampling run that cannot fit is refused in one line before
minutes are spent building it, rather than met by the kernel's OOM killer.

    check_training_memory(ModelConfig(vocab_size=65, hidden=300_000), TrainConfig())  # BadValueError

The estimates are rough on purpose (training's run a little low, sampling's high): they are
there to catch requests that are off by orders of magnitude. On a GPU, torch's own
out-of-memory error is one line already.
"""

from __future__ import annotations

from pathlib import Path

import torch

from charrnn.config import ModelConfig, TrainConfig
from charrnn.errors import BadValueError


def check_training_memory(mc: ModelConfig, cfg: TrainConfig) -> None:
    """Four float32 copies of the weights (weights, gradients, AdamW's two moments) and, per
    character of a batch, the activations every layer keeps for the backward pass."""
    g = 4 if mc.model == "lstm" else 3 if mc.model == "gru" else 1  # gates per layer
    params = mc.vocab_size * mc.hidden * 2 + mc.layers * g * mc.hidden * (2 * mc.hidden + 2)
    activations = cfg.batch_size * cfg.seq_len * (mc.layers * (g + 2) * mc.hidden + 2 * mc.vocab_size)
    _check(
        4 * (4 * params + activations),
        available(),
        what=f"a {mc.layers}x{mc.hidden} {mc.model}",
        instead="lower --hidden, --layers, --batch-size or --seq-len",
    )


def check_sampling_memory(
    mc: ModelConfig, *, num_samples: int, prime_len: int, length: int, device: torch.device
) -> None:
    """Per stream: the prime's pass through the model, the states and gates of a step, the
    float64 arithmetic of picking a character, and the text of every stream but the first,
    held back until the first is done."""
    p = max(prime_len, 1)
    prime = 4 * 2 * p * (mc.hidden * (mc.layers + 1) + mc.vocab_size)
    per_stream = prime + 4 * 16 * mc.layers * mc.hidden + 48 * mc.vocab_size + 8 * length
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else available()
    if prime > per_stream / 2:  # the prime is what makes it big
        what = f"reading a prime of {prime_len:,} characters" + (
            f" for {num_samples} samples" if num_samples > 1 else ""
        )
        _check(num_samples * per_stream, free, what=what, instead="give a shorter prime (its end is what matters most)")
    _check(num_samples * per_stream, free, what=f"--num-samples {num_samples}", instead="generate fewer at a time")


def _check(need: int, free: int | None, *, what: str, instead: str) -> None:
    if free is not None and need > free:
        raise BadValueError(
            f"{what} would need about {need / 2**30:,.1f} GiB of memory, more than the "
            f"{free / 2**30:,.1f} GiB available; {instead}"
        )


def available() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable); None elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None  # not Linux: no check
