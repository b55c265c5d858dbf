"""Feature interventions at an SAE's hook point: add a decoder direction, or clamp a feature inside the SAE.

Strengths are in units of each feature's max activation. Clamping keeps the SAE's error term, so the patched
activation is `decode(codes with the feature set) + (x - decode(codes))`. A transcoder's decoder writes its output
hook: that is where the patch goes, and a clamp reads the codes from its input hook's activation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mistudio_tui.ml.sae.base import SparseAutoencoder

METHODS = ("add", "clamp")
POSITIONS = ("all", "prompt", "generated")


@dataclass(frozen=True)
class Intervention:
    """One feature's intervention: `strength` in units of its max activation, by `method`."""

    feature: int
    strength: float
    method: str = "add"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"intervention method {self.method!r} is not supported; expected add or clamp")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], d_sae: int) -> Intervention:
        """Parse {"feature": i, "strength": s, "method": "add"|"clamp"}, checking the feature index."""
        try:
            feature = int(data["feature"])
            strength = float(data.get("strength", 0.0))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"intervention {dict(data)!r} needs an integer feature and a number strength") from None
        if not 0 <= feature < d_sae:
            raise ValueError(f"feature {feature} is out of range; this SAE has features 0..{d_sae - 1}")
        return cls(feature, strength, str(data.get("method", "add")))


@dataclass
class StepState:
    """Where the current forward pass starts in the full sequence, so hooks know absolute positions."""

    offset: int = 0
    prompt_len: int = 0
    skip_first: bool = True  # leave position 0 (BOS) alone
    positions: str = "all"

    def __post_init__(self) -> None:
        if self.positions not in POSITIONS:
            raise ValueError(f"positions {self.positions!r} is not supported; expected all, prompt or generated")

    def mask(self, seq_len: int, device: torch.device) -> Tensor:
        """[seq_len] bool: which positions of this pass the intervention touches."""
        pos = torch.arange(self.offset, self.offset + seq_len, device=device)
        keep = torch.ones(seq_len, dtype=torch.bool, device=device)
        if self.positions == "prompt":
            keep &= pos < self.prompt_len
        elif self.positions == "generated":
            keep &= pos >= self.prompt_len
        if self.skip_first:
            keep &= pos > 0
        return keep


@dataclass
class FeatureScale:
    """How big a feature's intervention is: its max activation, and the added norm per unit of strength."""

    max_act: float
    decoder_norm: float
    typical_norm: float | None = None
    absolute: bool = False  # strengths are plain coefficients, not multiples of max_act
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def unit(self) -> float:
        """What a strength of 1 adds along the decoder direction."""
        return 1.0 if self.absolute else self.max_act

    def relative_norm(self, strength: float) -> float | None:
        """||strength × unit × W_dec[i]|| over the hook's typical activation norm (None when unknown)."""
        if not self.typical_norm:
            return None
        return abs(strength) * self.unit * self.decoder_norm / self.typical_norm


def clamp_codes(
    sae: SparseAutoencoder,
    x: Tensor,
    values: Mapping[int, Tensor | float],
    where: Tensor,
    source: Tensor | None = None,
) -> Tensor:
    """x with features set to `values` inside the SAE at rows `where` [...] (bool), keeping the error term; the
    codes are those of `source` (a transcoder's input-hook activation) where given, else of x."""
    codes = sae.encode(x if source is None else source.to(x.device))
    new = codes.clone()
    for feature, value in values.items():
        target = torch.as_tensor(value, dtype=new.dtype, device=new.device).expand(new.shape[:-1])
        new[..., feature] = torch.where(where, target, codes[..., feature])
    # decode is affine, so decode(new) + (x - decode(codes)) only differs by the changed codes' directions
    delta = (new - codes).to(sae.W_dec.dtype) @ sae.W_dec
    return x + delta.to(x.dtype)


def steering_fn(
    sae: SparseAutoencoder,
    interventions: Sequence[Intervention],
    max_acts: Mapping[int, float],
    state: StepState,
    source: Callable[[], Tensor | None] | None = None,
) -> Callable[[Tensor], Tensor]:
    """The activation patch for `interventions`: [batch, seq, d] -> patched, at the positions `state` allows.

    For a transcoder the patch goes on its output hook and `source()` gives the input hook's activation of the
    same forward pass (recorded by an earlier patch), from which a clamp reads the codes."""
    adds = [i for i in interventions if i.method == "add" and i.strength != 0]
    clamps = [i for i in interventions if i.method == "clamp"]
    W_dec = sae.W_dec.detach()
    direction = None
    if adds:
        ids = torch.tensor([i.feature for i in adds], device=W_dec.device)
        scale = torch.tensor([i.strength * max_acts[i.feature] for i in adds], device=W_dec.device, dtype=W_dec.dtype)
        direction = scale @ W_dec[ids]

    def patch(x: Tensor) -> Tensor:
        where = state.mask(x.shape[-2], x.device).expand(x.shape[:-1])
        out = x
        if clamps:
            values = {i.feature: i.strength * max_acts[i.feature] for i in clamps}
            out = clamp_codes(sae, out, values, where, None if source is None else source())
        if direction is not None:
            out = out + where.unsqueeze(-1).to(x.dtype) * direction.to(x.dtype)
        return out

    return patch
