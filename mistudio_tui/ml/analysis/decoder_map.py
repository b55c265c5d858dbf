"""A 2-D map of an SAE's decoder directions: UMAP (cosine) where installed, otherwise PCA."""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

METHODS = ("auto", "umap", "pca")


def umap_available() -> bool:
    """True when the umap-learn package is importable."""
    return importlib.util.find_spec("umap") is not None


def decoder_map(W_dec: Tensor, method: str = "auto", seed: int = 0) -> tuple[Tensor, str]:
    """(coordinates [d_sae, 2], the method used) for the unit-normalised decoder rows."""
    if method not in METHODS:
        raise ValueError(f"map method {method!r} is not supported; expected auto, umap or pca")
    if W_dec.ndim != 2 or W_dec.shape[0] < 3:
        raise ValueError(f"W_dec must have shape [d_sae >= 3, d_in], got {tuple(W_dec.shape)}")
    rows = W_dec.detach().float().cpu()
    rows = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    if method == "umap" and not umap_available():
        raise ValueError("the umap map needs the umap-learn package: pip install umap-learn")
    if method == "umap" or (method == "auto" and umap_available()):
        import umap

        reducer = umap.UMAP(n_components=2, metric="cosine", random_state=seed)
        return torch.as_tensor(reducer.fit_transform(rows.numpy()), dtype=torch.float32), "umap"
    torch.manual_seed(seed)
    q = min(2, rows.shape[1])
    U, S, _ = torch.pca_lowrank(rows, q=q, center=True)
    coords = U[:, :q] * S[:q]
    if q < 2:
        coords = torch.cat([coords, torch.zeros_like(coords)], dim=1)
    return coords, "pca"
