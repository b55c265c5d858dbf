"""Learning-rate and sparsity-coefficient schedules: pure functions of the step, so resuming is exact."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mistudio_tui.ml.sae.config import TrainConfig


@dataclass(frozen=True)
class LRSchedule:
    """Linear warmup to `peak_lr`, constant, then constant / linear / cosine decay to `final_fraction * peak_lr`."""

    peak_lr: float
    total_steps: int
    warmup_steps: int = 0
    decay: str = "constant"
    decay_start_step: int = 0
    final_fraction: float = 0.0

    @classmethod
    def from_config(cls, cfg: TrainConfig, peak_lr: float, optimizer: str = "adam") -> LRSchedule:
        """The schedule `cfg` asks for (its empty fields filled in for `optimizer`); warmup is capped at a tenth
        of the run. Schedule-free sign descent averages its iterates, so by default it neither warms up nor decays."""
        total = cfg.total_steps
        adam = optimizer == "adam"
        warmup = cfg.lr_warmup_steps if cfg.lr_warmup_steps is not None else (1000 if adam else 0)
        return cls(
            peak_lr=peak_lr,
            total_steps=total,
            warmup_steps=min(warmup, total // 10),
            decay=cfg.lr_decay or ("linear" if adam else "constant"),
            decay_start_step=int(cfg.lr_decay_start * total),
            final_fraction=cfg.final_lr_fraction,
        )

    def lr_at(self, step: int) -> float:
        """The learning rate of (0-based) optimiser step `step`."""
        factor = 1.0
        if step < self.warmup_steps:
            factor = (step + 1) / self.warmup_steps
        if self.decay != "constant" and step >= self.decay_start_step:
            span = max(1, self.total_steps - 1 - self.decay_start_step)
            progress = min(1.0, (step - self.decay_start_step) / span)
            f = self.final_fraction
            if self.decay == "linear":
                factor *= 1.0 - progress * (1.0 - f)
            else:
                factor *= f + (1.0 - f) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.peak_lr * factor


def sparsity_warmup_steps(cfg: TrainConfig) -> int:
    """Steps over which the L1 / L0 coefficient ramps up from 0 (default: 5% of the run)."""
    if cfg.sparsity_warmup_steps is not None:
        return cfg.sparsity_warmup_steps
    return cfg.total_steps // 20


def sparsity_coefficient_at(step: int, coefficient: float, warmup_steps: int) -> float:
    """`coefficient` ramped linearly from 0 over the first `warmup_steps` steps."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return coefficient
    return coefficient * (step + 1) / warmup_steps
