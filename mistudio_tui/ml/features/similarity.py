"""Features with similar decoder directions (cosine similarity), computed in chunks of features."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class SimilarFeatures(NamedTuple):
    """Nearest decoder directions, most similar first."""

    ids: Tensor  # int64 [..., top]
    cos: Tensor  # float32 [..., top]


def _unit_rows(matrix: Tensor) -> Tensor:
    """Rows scaled to unit length (all-zero rows stay zero)."""
    matrix = matrix.detach().to(torch.float32)
    unit: Tensor = matrix / matrix.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return unit


def _check_decoder(W_dec: Tensor, top: int) -> None:
    if W_dec.ndim != 2:
        raise ValueError(f"W_dec must have shape [d_sae, d_in], got {tuple(W_dec.shape)}")
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")


def similar_by_decoder(W_dec: Tensor, top: int = 10, chunk: int = 1024) -> SimilarFeatures:
    """For every feature the `top` other features with the highest decoder cosine, each [d_sae, top]."""
    _check_decoder(W_dec, top)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    d_sae = W_dec.shape[0]
    if d_sae < 2:
        raise ValueError("similar features need a decoder with at least 2 features")
    top = min(top, d_sae - 1)
    unit = _unit_rows(W_dec)
    ids, cos = [], []
    with torch.no_grad():
        for lo in range(0, d_sae, chunk):
            sims = unit[lo : lo + chunk] @ unit.T
            rows = torch.arange(sims.shape[0], device=sims.device)
            sims[rows, rows + lo] = float("-inf")
            best = sims.topk(top, dim=1)
            ids.append(best.indices)
            cos.append(best.values)
    return SimilarFeatures(torch.cat(ids), torch.cat(cos))


def nearest_to(direction: Tensor, W_dec: Tensor, top: int = 10) -> SimilarFeatures:
    """The `top` features whose decoder rows are closest in cosine to `direction` [d_in] (or [n, d_in])."""
    _check_decoder(W_dec, top)
    if direction.shape[-1] != W_dec.shape[1] or direction.ndim not in (1, 2):
        raise ValueError(
            f"direction must have shape [{W_dec.shape[1]}] or [n, {W_dec.shape[1]}], got {tuple(direction.shape)}"
        )
    top = min(top, W_dec.shape[0])
    with torch.no_grad():
        sims = _unit_rows(direction.to(W_dec.device)) @ _unit_rows(W_dec).T
        best = sims.topk(top, dim=-1)
    return SimilarFeatures(best.indices, best.values)
