"""Dense (Batch)TopK and AuxK selections for GPUs: fixed shapes, no host synchronisation.

On a GPU every `.item()`, boolean-mask index or data-dependent size stalls the launch queue, so these build dense
codes [n, d_sae] with `topk` + `scatter` and masks only; gradients reach the selected pre-activations exactly as in
the plain formulation.
"""

from __future__ import annotations

import torch
from torch import Tensor

CANDIDATES_PER_K = 4  # BatchTopK reads each row's top (4 k) pre-activations, not the whole [n, d_sae] batch


def topk_codes(pre: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """(dense codes, kept values [n, k] after ReLU, their latent indices [n, k]) of per-row TopK."""
    values, index = pre.topk(min(k, pre.shape[-1]), dim=-1, sorted=False)
    values = values.relu()
    # in place into fresh zeros: the out-of-place scatter would copy the whole [n, d_sae] zeros once more
    return pre.new_zeros(pre.shape).scatter_(-1, index, values), values, index


def batch_topk_codes(pre: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """(dense codes, the batch's k * n largest values after ReLU, tokens each latent is kept on [d_sae] int64) of
    BatchTopK over the whole [n, d_sae] batch.

    The cut is the (k n)-th largest of each row's top `CANDIDATES_PER_K * k` values: exactly BatchTopK unless a row
    holds more of the batch's top values than that, in which case that row keeps all of them (a superset).
    """
    n, d = pre.shape
    candidates = pre.topk(min(d, CANDIDATES_PER_K * k), dim=-1, sorted=False).values.reshape(-1)
    top = candidates.topk(min(k * n, candidates.numel()), sorted=False).values
    keep = pre >= top.min().clamp_min(torch.finfo(pre.dtype).tiny)  # only positive pre-activations are ever kept
    return torch.where(keep, pre, 0.0), top.relu(), column_counts(keep)


def auxk_codes(pre: Tensor, dead_mask: Tensor, aux_k: int) -> Tensor:
    """Dense codes of the `aux_k` largest pre-activations among dead latents per row (zeros where fewer are dead)."""
    masked = pre.masked_fill(~dead_mask, float("-inf"))
    values, index = masked.topk(min(aux_k, pre.shape[-1]), dim=-1, sorted=False)
    return pre.new_zeros(pre.shape).scatter_(-1, index, values.relu())


def fired_counts(index: Tensor, values: Tensor, d_sae: int) -> Tensor:
    """Tokens each latent is active (> 0) on, [d_sae] int64, from per-row kept indices and values."""
    counts = torch.zeros(d_sae, dtype=torch.int64, device=index.device)
    return counts.scatter_add_(0, index.reshape(-1), (values > 0).reshape(-1).long())


def column_counts(active: Tensor) -> Tensor:
    """Rows where each column of a [n, d] mask is set, [d] int64: a bool mask, or non-negative values (set where
    above 0).

    On a GPU, summing a bool tensor into int64 first writes an 8-byte copy of the whole mask; `float_counts` sums a
    2-byte (or the values' own) copy in float32 without one.
    """
    return float_counts(active) if active.device.type == "cuda" else torch.count_nonzero(active, dim=0)


def float_counts(active: Tensor) -> Tensor:
    """`column_counts` summed in float32 (the GPU form; exact below 2^24 rows)."""
    ones = active.to(torch.float16) if active.dtype == torch.bool else active.sign()
    return ones.sum(0, dtype=torch.float32).long()
