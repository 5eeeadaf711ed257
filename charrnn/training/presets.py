"""Named presets, the recipes over the config fields, and the rules that settle a new run's
configs: a preset's values, then the explicit settings over them; fine-tuning's recipe from a
parent's; and what `--preset auto` means where it does not measure.

    model_cfg, train_cfg = configs(65, "small", {"lr": 0.01})
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from charrnn.config import AUTO_ADAPTIVE_VOCAB, SETTINGS, ModelConfig, TrainConfig, default

# Named presets: partial overrides of ModelConfig and TrainConfig fields. Explicit flags win.
# tiny to large were tuned on tiny-shakespeare on a 2-core CPU (benchmarks/README.md has the
# log): for a fixed wall-clock budget, many small steps beat few large ones. xl was tuned on an
# H200, where tiny-shakespeare is an epoch a second: it needs strong regularisers and a horizon
# in epochs (60) rather than the whole time limit, past which the val loss only rises.
# fmt: off
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden=128, layers=2, dropout=0.0, batch_size=32, seq_len=32, lr=5e-3, warmup_steps=50,
                 weight_decay=0.1, tie_embeddings=True, ema=0.999, eval_every=2500),
    "small": dict(hidden=256, layers=2, dropout=0.1, batch_size=16, seq_len=64, lr=5e-3, warmup_steps=50,
                  weight_decay=0.1, tie_embeddings=True, ema=0.999, eval_every=2500),
    "medium": dict(hidden=512, layers=2, dropout=0.25, batch_size=32, seq_len=64, lr=4e-3, warmup_steps=100,
                   min_lr_frac=0.02, weight_decay=0.2, eval_every=2000),
    "large": dict(hidden=512, layers=3, dropout=0.2, batch_size=64, seq_len=128, lr=2e-3, warmup_steps=200,
                  eval_every=1000),
    "xl": dict(hidden=768, layers=3, dropout=0.4, locked_dropout=0.1, weight_dropout=0.2, batch_size=64,
               seq_len=128, lr=2e-3, warmup_steps=200, weight_decay=0.1, max_epochs=60, eval_every=200),
}
# fmt: on


# Fine-tuning (`charrnn train NEW.txt --init-from RUN`): the parent's own recipe, with a peak
# learning rate this fraction of the parent's and a warm-up of this many steps, so the first
# steps do not undo what the model knows; explicit flags win over both.
FINETUNE_LR_FRAC = 0.3
FINETUNE_WARMUP_STEPS = 20
# The parent's settings that a fine-tuning run starts from a clean slate on: its own limits,
# its own horizon, and where it runs.
FINETUNE_FRESH = ("max_steps", "max_epochs", "time_limit", "decay_steps", "device", "precision")
# what a checkpoint fixes (dropout may change)
ARCHITECTURE = ("model", "hidden", "layers", "softmax", "tie_embeddings")


def finetune_config(parent: TrainConfig, settings: dict[str, Any]) -> TrainConfig:
    """The train config of a run that starts from a model trained with `parent`: its recipe at
    a lower rate and a shorter warm-up, then the explicit `settings` over it."""
    recipe = replace(
        parent,
        lr=parent.lr * FINETUNE_LR_FRAC,
        warmup_steps=FINETUNE_WARMUP_STEPS,
        **{name: default(name) for name in FINETUNE_FRESH},
    )
    return recipe.with_overrides(settings)


def preset_settings(name: str) -> dict[str, Any]:
    """Every setting a preset leads to: its own values over the defaults."""
    return {**{n: default(n) for n in SETTINGS}, **PRESETS[name]}


def configs(vocab_size: int, preset: str | None, settings: dict[str, Any]) -> tuple[ModelConfig, TrainConfig]:
    """The configs of a new run: the preset's values, then the explicit `settings` over them
    (`preset` "auto" must already be resolved by `auto_preset`)."""
    merged = {**(PRESETS[preset] if preset else {}), **settings}
    if merged.get("softmax", "auto") == "auto":
        merged["softmax"] = "adaptive" if vocab_size > AUTO_ADAPTIVE_VOCAB else "full"
        if merged["softmax"] == "adaptive" and "tie_embeddings" not in settings:
            merged["tie_embeddings"] = False  # a preset's tied embeddings give way to the faster output layer
    return ModelConfig.from_dict({**merged, "vocab_size": vocab_size}), TrainConfig().with_overrides(merged)


def auto_preset(time_limit: float | None, device_type: str) -> str:
    """The preset by the time limit alone: xl on CUDA (tuned there), large without a limit. With
    a limit on the CPU, `--preset auto` measures instead (`charrnn.training.autopreset`); this rule is
    left for the processes of a data-parallel run started without the launcher's choice."""
    if device_type == "cuda":
        return "xl"
    if time_limit is None:
        return "large"
    if time_limit <= 120:
        return "small"
    if time_limit <= 3600:  # at 1200 s on a 2-core CPU medium led large by 0.07 nats (benchmarks/README.md)
        return "medium"
    return "large"
