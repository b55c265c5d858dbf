"""Data-dependent initialisation: the activation normaliser and the decoder bias."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def geometric_median(points: Tensor, max_iter: int = 100, tol: float = 1e-6) -> Tensor:
    """The point minimising the summed Euclidean distance to `points` [n, d] (Weiszfeld's algorithm)."""
    points = points.double()
    median = points.mean(0)
    for _ in range(max_iter):
        distances = (points - median).norm(dim=1).clamp_min(1e-12)
        weights = 1.0 / distances
        new = (weights[:, None] * points).sum(0) / weights.sum()
        shift = (new - median).norm()
        median = new
        if shift <= tol * max(1.0, float(median.norm())):
            break
    return median.float()


def activation_scale(x: Tensor) -> float:
    """The factor that gives rows of `x` a mean norm of sqrt(d_in)."""
    mean_norm = float(x.float().norm(dim=1).mean())
    if not math.isfinite(mean_norm) or mean_norm <= 0:
        raise ValueError(f"cannot normalise activations whose mean norm is {mean_norm}; are they all zero?")
    return math.sqrt(x.shape[1]) / mean_norm


def initial_b_dec(x: Tensor, method: str) -> Tensor:
    """The decoder bias from a first batch: geometric median, mean, or zeros."""
    if method == "geometric_median":
        return geometric_median(x)
    if method == "mean":
        return x.float().mean(0)
    if method == "zeros":
        return x.new_zeros(x.shape[1], dtype=torch.float32)
    raise ValueError(f"b_dec_init {method!r} unknown; expected geometric_median, mean or zeros")
