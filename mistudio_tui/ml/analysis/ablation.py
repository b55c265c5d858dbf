"""Feature ablation: zero (or clamp) features inside the SAE on a text and measure the change in loss and logits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mistudio_tui.ml.models.hooks import patch_activation
from mistudio_tui.ml.sae.base import SparseAutoencoder
from mistudio_tui.ml.steering.interventions import StepState, clamp_codes

MODES = ("zero", "clamp")


@dataclass
class AblationResult:
    """Losses with and without the ablation, and the next-token logits it moved most."""

    loss_clean: float
    loss_ablated: float
    n_active: int  # positions where an ablated feature was active
    promoted: list[tuple[int, float]]  # (token id, mean logit change), largest increase first
    suppressed: list[tuple[int, float]]  # (token id, mean logit change), largest decrease first
    per_position_loss_delta: list[float]  # ablated − clean next-token loss at each predicting position

    @property
    def loss_delta(self) -> float:
        return self.loss_ablated - self.loss_clean


def next_token_losses(logits: Tensor, input_ids: Tensor) -> Tensor:
    """Cross-entropy of each next token [n - 1] for logits [1, n, vocab] and ids [1, n]."""
    return torch.nn.functional.cross_entropy(logits[0, :-1].float(), input_ids[0, 1:], reduction="none")


@torch.no_grad()
def ablate_features(
    model: Any,
    sae: SparseAutoencoder,
    hook: str,
    input_ids: Tensor,
    features: Sequence[int],
    mode: str = "zero",
    value: float | None = None,
    skip_first: bool = True,
    top: int = 10,
) -> AblationResult:
    """Set `features` to 0 (`zero`) or to `value` (`clamp`) at every position of `input_ids` [1, n]."""
    if mode not in MODES:
        raise ValueError(f"ablation mode {mode!r} is not supported; expected zero or clamp")
    if mode == "clamp" and value is None:
        raise ValueError("clamp ablation needs a value")
    if input_ids.shape[-1] < 2:
        raise ValueError("the text is too short to measure a loss: it needs at least two tokens")
    bad = [f for f in features if not 0 <= int(f) < sae.d_sae]
    if not features or bad:
        raise ValueError(f"features must be indices in 0..{sae.d_sae - 1}, got {list(features)}")
    target = 0.0 if mode == "zero" else float(value)  # type: ignore[arg-type]
    state = StepState(skip_first=skip_first)
    active = torch.zeros(input_ids.shape[-1], dtype=torch.bool)

    def patch(x: Tensor) -> Tensor:
        where = state.mask(x.shape[-2], x.device).expand(x.shape[:-1])
        codes = sae.encode(x)[0][:, list(features)]
        active.copy_(((codes != 0).any(-1) & where[0]).cpu())
        return clamp_codes(sae, x, {int(f): target for f in features}, where)

    clean = model(input_ids=input_ids).logits
    with patch_activation(model, hook, patch):
        ablated = model(input_ids=input_ids).logits
    loss_clean = next_token_losses(clean, input_ids)
    loss_ablated = next_token_losses(ablated, input_ids)
    diff = (ablated[0] - clean[0]).float()
    rows = active if active.any() else torch.ones_like(active)
    mean = diff[rows.to(diff.device)].mean(0)
    k = min(top, mean.shape[0])
    up, down = mean.topk(k), (-mean).topk(k)
    return AblationResult(
        loss_clean=float(loss_clean.mean()),
        loss_ablated=float(loss_ablated.mean()),
        n_active=int(active.sum()),
        promoted=[(int(i), float(v)) for v, i in zip(up.values, up.indices, strict=True)],
        suppressed=[(int(i), -float(v)) for v, i in zip(down.values, down.indices, strict=True)],
        per_position_loss_delta=(loss_ablated - loss_clean).tolist(),
    )
