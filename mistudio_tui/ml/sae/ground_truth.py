"""Score an SAE's decoder against known true feature directions (synthetic worlds): MCC and features recovered."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from mistudio_tui.ml.sae.ground_truth_file import GROUND_TRUTH_KEY, ground_truth_shape

RECOVERED_COSINE = 0.9


@dataclass(frozen=True)
class GroundTruthScore:
    """How well the decoder rows of an SAE match the true features of the world its activations came from."""

    mcc: float  # mean |cos| over a one-to-one (Hungarian) matching of latents to true features
    recovered: float  # fraction of true features with some latent at |cos| >= RECOVERED_COSINE
    mean_max_cosine: float  # mean over true features of the best |cos| of any latent
    features: int
    latents: int

    def to_dict(self) -> dict[str, float | int]:
        """A JSON-able copy."""
        return asdict(self)


def _unit_rows(x: Tensor) -> Tensor:
    x = x.detach().double().cpu()
    unit: Tensor = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return unit


def score_decoder(decoder: Tensor, true_features: Tensor, threshold: float = RECOVERED_COSINE) -> GroundTruthScore:
    """Compare decoder rows [d_sae, d_in] with true feature directions [features, d_in] (signs ignored)."""
    from scipy.optimize import linear_sum_assignment  # the Hungarian method; only this scorer needs scipy

    if decoder.ndim != 2 or true_features.ndim != 2 or decoder.shape[1] != true_features.shape[1]:
        raise ValueError(
            f"decoder {tuple(decoder.shape)} and true features {tuple(true_features.shape)} "
            "must both be [rows, d_in] with the same d_in"
        )
    cos = (_unit_rows(true_features) @ _unit_rows(decoder).T).abs()  # [features, latents]
    rows, cols = linear_sum_assignment(cos.numpy(), maximize=True)
    # MCC averages over the smaller side's matches, as sae_lens.synthetic.mean_correlation_coefficient does.
    best = cos.max(dim=1).values
    return GroundTruthScore(
        mcc=float(cos[rows, cols].mean()),
        recovered=float((best >= threshold).double().mean()),
        mean_max_cosine=float(best.mean()),
        features=int(true_features.shape[0]),
        latents=int(decoder.shape[0]),
    )


def load_ground_truth(path: Path, d_in: int | None = None) -> Tensor:
    """The true features [features, d_in] stored under key `gt` of a safetensors file, checked."""
    from safetensors import safe_open

    ground_truth_shape(path, d_in)  # names a missing file, key or wrong width before anything is read
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        features: Tensor = handle.get_tensor(GROUND_TRUTH_KEY).float()
    if not torch.isfinite(features).all():
        raise ValueError(f"{path}: {GROUND_TRUTH_KEY!r} holds NaN or infinite values")
    return features
