"""Logit lens of decoder directions: the tokens each feature's decoder row promotes and suppresses."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class LogitLens(NamedTuple):
    """Top and bottom tokens of `W_dec[i] @ W_U` per feature, each [d_sae, top]."""

    promoted_ids: Tensor  # int64, highest logit first
    promoted_values: Tensor  # float32
    suppressed_ids: Tensor  # int64, lowest logit first
    suppressed_values: Tensor  # float32


def unembedding_matrix(unembed: Tensor | nn.Module, d_in: int) -> Tensor:
    """The unembedding as [d_in, vocab] from a matrix of either orientation or a module with `.weight`."""
    if isinstance(unembed, nn.Module):
        weight = getattr(unembed, "weight", None)
        if not isinstance(weight, Tensor) or weight.ndim != 2 or weight.shape[1] != d_in:
            raise ValueError(f"the unembedding module needs a .weight of shape [vocab, {d_in}]")
        return weight.detach().T
    if unembed.ndim != 2:
        raise ValueError(f"the unembedding must be a matrix, got shape {tuple(unembed.shape)}")
    if unembed.shape[0] == d_in:
        return unembed.detach()
    if unembed.shape[1] == d_in:
        return unembed.detach().T
    raise ValueError(f"the unembedding has shape {tuple(unembed.shape)}; expected [{d_in}, vocab] or [vocab, {d_in}]")


def logit_lens(
    W_dec: Tensor,
    W_U: Tensor | nn.Module,
    top: int = 10,
    chunk: int = 1024,
    norm_weight: Tensor | None = None,
) -> LogitLens:
    """Top/bottom `top` tokens of each decoder row through the unembedding, `chunk` features at a time.

    `norm_weight` [d_in] (the final norm's scale, without its centering) multiplies each row before `W_U`.
    """
    if W_dec.ndim != 2:
        raise ValueError(f"W_dec must have shape [d_sae, d_in], got {tuple(W_dec.shape)}")
    if top < 1 or chunk < 1:
        raise ValueError(f"top and chunk must be at least 1, got top={top}, chunk={chunk}")
    d_sae, d_in = W_dec.shape
    device = W_dec.device
    unembed = unembedding_matrix(W_U, d_in).to(device, torch.float32)
    top = min(top, unembed.shape[1])
    scale = None
    if norm_weight is not None:
        if tuple(norm_weight.shape) != (d_in,):
            raise ValueError(f"norm_weight must have shape [{d_in}], got {tuple(norm_weight.shape)}")
        scale = norm_weight.detach().to(device, torch.float32)
    parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
    with torch.no_grad():
        for lo in range(0, d_sae, chunk):
            rows = W_dec[lo : lo + chunk].detach().to(torch.float32)
            if scale is not None:
                rows = rows * scale
            logits = rows @ unembed
            high = logits.topk(top, dim=1)
            low = logits.topk(top, dim=1, largest=False)
            parts.append((high.indices, high.values, low.indices, low.values))
    return LogitLens(*(torch.cat(column) for column in zip(*parts, strict=True)))
