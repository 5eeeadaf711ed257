"""One optimizer step, as training takes it: AdamW (weight decay on matrices only, fused),
the forward pass under the run's autocast, the loss scaled where the precision needs it,
gradients unscaled and clipped. The training loop takes its steps through it, and `--preset
auto` times it, so what is measured is what trains.

    step = TrainStep(model, cfg, device, precision)
    loss, grad_norm, state = step.backward(x, y, state, labels, lr)
    if math.isfinite(loss): step.apply()
"""

from __future__ import annotations

import torch

from charrnn.config import TrainConfig
from charrnn.model.rnn import CharRNN, State
from charrnn.runtime import autocast, needs_loss_scaling


def param_groups(model: CharRNN, weight_decay: float) -> list[dict]:
    # Decay weight matrices only; biases and the embedding tables (characters, labels) stay free.
    decay, free = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and not name.startswith(("embed.", "label_embed.")) else free).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": free, "weight_decay": 0.0}]


class TrainStep:
    """A model's optimizer and loss scaler, and the step they take. `net` is what runs the
    forward pass: the model, or its data-parallel wrapper."""

    def __init__(
        self, model: CharRNN, cfg: TrainConfig, device: torch.device, precision: str, net: torch.nn.Module | None = None
    ):
        self.model, self.net = model, net if net is not None else model
        self.cfg, self.device, self.precision = cfg, device, precision
        self.params = list(model.parameters())
        # fused: one kernel for the whole update instead of a few per parameter tensor
        self.opt = torch.optim.AdamW(
            param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.99), fused=device.type in ("cuda", "cpu")
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=needs_loss_scaling(device, precision))

    def backward(
        self, x: torch.Tensor, y: torch.Tensor, state: State | None, labels: torch.Tensor | None, lr: float
    ) -> tuple[float, float, State]:
        """The loss of a batch and the gradients of it, unscaled and clipped: (loss, gradient
        norm before clipping, the new carried state). Nothing is updated yet."""
        for param_group in self.opt.param_groups:
            param_group["lr"] = lr
        with autocast(self.device, self.precision):
            losses, new_state = self.net(x, state, labels, targets=y)
        loss = losses.mean()
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, clip)
        return float(loss.detach()), float(gnorm), new_state

    def apply(self) -> None:
        """The update of the gradients of the last `backward` (the loss scaler skips one whose
        gradients are not finite, and lowers its scale)."""
        self.scaler.step(self.opt)
        self.scaler.update()

    @property
    def scaled(self) -> bool:
        return self.scaler.is_enabled()
