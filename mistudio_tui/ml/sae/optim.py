"""The SAE optimisers: Adam with a schedule, or sign descent inside a schedule-free averager (the default for TopK).

Sign descent with schedule-free averaging (Defazio et al. 2024, `schedulefree`) is what EleutherAI's sparsify
trains with by default. Its step does not shrink with the budget, and the averaged weights it ends on need no decay
schedule, so one learning rate serves a few million tokens on a CPU and hundreds of millions on a GPU. Against
ground truth (benchmarks/sae_quality.py) it recovered far more of the true features than Adam at the rule-of-thumb
lr, which is too small for short runs (RESULTS.md, "SAE quality against ground truth").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SignumRecipe:
    """Sign descent inside a schedule-free averager: `lr` at d_sae 2**14 (config.default_lr scales it), `momentum`
    where the gradient is taken between the iterate (0) and the average (1), and `r`: the average weights iterate t
    by t**r (0: uniformly), so with r > 0 a short run's early, far-off iterates fade faster."""

    lr: float
    momentum: float = 0.95
    r: float = 0.0


# sparsify's defaults (on raw activations; ours are scaled to norm sqrt(d_in), which makes an lr act larger on the
# encoder: 1.6-9x on the worlds and real sets of benchmarks/sae_quality.py)
SPARSIFY_SIGNUM = SignumRecipe(lr=5e-3)
# TopK's and BatchTopK's: a smaller step, the average weighted toward late iterates. Against SPARSIFY_SIGNUM, TopK,
# seed 0, same rows (benchmarks/RESULTS.md, issue 16): base world MCC 0.822 -> 0.864, EV 0.776 -> 0.818; dense4x
# MCC 0.841 -> 0.881, EV 0.673 -> 0.739; real MiniLM EV 0.879 -> 0.890 and 0.844 -> 0.854, where sparsify has
# 0.884 and 0.854.
LATE_AVERAGE_SIGNUM = SignumRecipe(lr=3e-3, r=3.0)


class SignSGD(torch.optim.Optimizer):
    """Steepest descent in the max norm: every parameter moves by the lr against the sign of its gradient."""

    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            grads = [p.grad for p in group["params"] if p.grad is not None]
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                torch._foreach_add_(params, torch._foreach_sign(grads), alpha=-group["lr"])


def build_optimizer(
    params: Iterable[Tensor],
    name: str,
    lr: float,
    betas: tuple[float, float],
    signum: SignumRecipe = SPARSIFY_SIGNUM,
) -> torch.optim.Optimizer:
    """Adam (fused) or schedule-free sign descent (averaged as `signum` says), in training mode."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    from schedulefree import ScheduleFreeWrapper

    # not an Optimizer subclass but used as one (step, zero_grad, state_dict, param_groups); schedulefree is untyped
    wrapper = ScheduleFreeWrapper(SignSGD(params, lr=lr), momentum=signum.momentum, r=signum.r)
    wrapper.train()
    optimizer: torch.optim.Optimizer = wrapper
    return optimizer


@contextlib.contextmanager
def averaged_weights(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Inside: the parameters hold the schedule-free average (the weights to evaluate and save); a no-op for Adam."""
    switch = getattr(optimizer, "eval", None)
    if switch is None:
        yield
        return
    switch()
    try:
        yield
    finally:
        optimizer.train()  # type: ignore[attr-defined]


@torch.no_grad()
def lift_dead_biases(b_enc: Tensor, dead: Tensor, floor: Tensor, optimizer: torch.optim.Optimizer) -> None:
    """Raise the encoder bias of each dead latent to at least its `floor` (see SAETrainer.dead_bias_floor).

    A dead latent learns only from AuxK, and under sign descent every AuxK overshoot moves its bias a full step down;
    it drifts far below the live ones and never wins a top-k slot again, while true features stay unlearned. Lifted
    so that it fires on a few rows of its own, it trains on them and comes back. Per latent, from its own
    pre-activations: a floor shared by all (the live biases' 99th percentile, the previous rule) left 26% of TopK's
    latents dead on the absorb world, where encoder norms differ; per latent, 2.4% (benchmarks/RESULTS.md, issue
    16). Sync-free (no boolean indexing), and the averaged optimiser's `z` copy is lifted too so the interpolated
    weights do not pull the bias back down.
    """
    z = optimizer.state.get(b_enc, {}).get("z")
    floor = floor.to(b_enc.dtype)
    for values in (b_enc, z) if z is not None else (b_enc,):
        values.copy_(torch.where(dead, torch.maximum(values, floor), values))
