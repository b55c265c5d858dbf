"""Score an SAE's decoder against known true feature directions (synthetic worlds): MCC and features recovered."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

GROUND_TRUTH_KEY = "gt"  # the [features, d_in] tensor of a ground-truth safetensors file
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
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


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
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            keys = list(handle.keys())
            if GROUND_TRUTH_KEY not in keys:
                raise ValueError(
                    f"{path} has no tensor {GROUND_TRUTH_KEY!r} (it holds {', '.join(keys) or 'nothing'}); "
                    f"expected the true features as {GROUND_TRUTH_KEY!r} [features, d_in]"
                )
            features = handle.get_tensor(GROUND_TRUTH_KEY).float()
    except SafetensorError as exc:
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from exc
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"{path}: {GROUND_TRUTH_KEY!r} has shape {tuple(features.shape)}, expected [features, d_in]")
    if d_in is not None and features.shape[1] != d_in:
        raise ValueError(f"{path}: the true features have d_in={features.shape[1]}, but the SAE has d_in={d_in}")
    if not torch.isfinite(features).all():
        raise ValueError(f"{path}: {GROUND_TRUTH_KEY!r} holds NaN or infinite values")
    return features
