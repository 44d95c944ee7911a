"""An exponential moving average of the decoder's weights: the model a training run deploys.

Behaviour cloning from a few hundred demonstrations ends with weights that still move from step to
step (the last steps each fit one small batch); averaging them is the usual remedy in robot learning
(diffusion policy and LeRobot keep an EMA). It is off by default: on the CPU demo the mean of the
step-2,500 and step-3,000 weights scored 58.0 % SR@1 against 59.0 % for the step-3,000 weights
(8 tasks x 25 start states), i.e. no measurable gain when the cosine schedule already ends at a
tenth of the peak learning rate. It is meant for runs whose learning rate stays high to the end.

``decay`` is the weight of the old average per step, so the average spans about
``1 / (1 - decay)`` steps. Early on, the effective decay ``min(decay, (1 + n) / (10 + n))`` (``n``
updates so far) keeps the random initial weights from lingering in the average.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


class WeightEMA:
    """Shadow copies (float32) of a module's trainable parameters, updated after each optimiser step."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema.decay must be in (0, 1) (0 turns the average off), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().float().clone() for name, p in module.named_parameters() if p.requires_grad
        }
        if not self.shadow:
            raise ValueError("the module has no trainable parameters to average")

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        """Move every shadow towards the module's current weights by ``1 - current_decay()``."""
        weight = 1.0 - self.current_decay()
        params = dict(module.named_parameters())
        for name, shadow in self.shadow.items():
            shadow.lerp_(params[name].detach().float(), weight)
        self.updates += 1

    def averaged(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state_dict`` (the module's full state: parameters and buffers) with the averaged
        parameters in place of the trained ones, each in the dtype it had there."""
        missing = [name for name in self.shadow if name not in state_dict]
        if missing:
            raise KeyError(f"state dict lacks averaged parameters {missing[:3]}")
        return {
            name: (self.shadow[name].to(device=value.device, dtype=value.dtype) if name in self.shadow else value)
            for name, value in state_dict.items()
        }

    def state_dict(self) -> dict[str, object]:
        """The average's state for ``trainer_state.pt``. The shadows are returned, not copied: the
        checkpoint is written before the next update, and a copy would double the average's memory
        (the whole model again) at every checkpoint."""
        return {"decay": self.decay, "updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        shadow = state["shadow"]
        assert isinstance(shadow, Mapping)
        if set(shadow) != set(self.shadow):
            raise ValueError("the saved weight average does not match this model's parameters")
        for name, value in shadow.items():
            self.shadow[name].copy_(value)
        self.updates = int(state["updates"])  # type: ignore[arg-type]
