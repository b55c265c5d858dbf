"""Sparse kernels for TopK-style SAEs: only the encoder forward is a dense matmul.

The decoder forward is an `embedding_bag` over the selected latents; its backward is a sampled dense-dense
product (values) and a sparse-dense product (W_dec); the encoder backward is a sparse-dense product as well.
Gradients match the dense formulation exactly (up to float summation order).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class SparseCodes:
    """Active latents of a batch in CSR order: row r owns entries crow[r]:crow[r+1], columns ascending."""

    crow: Tensor  # [n_rows + 1] int64
    cols: Tensor  # [nnz] int64
    values: Tensor  # [nnz] float32, differentiable
    n_cols: int

    @property
    def n_rows(self) -> int:
        return self.crow.numel() - 1

    def rows(self) -> Tensor:
        """The row of every entry."""
        counts = self.crow.diff()
        return torch.repeat_interleave(torch.arange(self.n_rows, device=self.crow.device), counts)

    def to_dense(self) -> Tensor:
        """Dense codes [n_rows, n_cols] (differentiable in `values`)."""
        dense = self.values.new_zeros(self.n_rows, self.n_cols)
        return dense.index_put((self.rows(), self.cols), self.values, accumulate=True)

    def columns(self, start: int, end: int) -> SparseCodes:
        """The entries in columns [start, end) (values stay differentiable; CSR order is kept)."""
        keep = (self.cols >= start) & (self.cols < end)
        crow = torch.zeros_like(self.crow)
        crow[1:] = torch.bincount(self.rows()[keep], minlength=self.n_rows).cumsum(0)
        return SparseCodes(crow, self.cols[keep], self.values[keep], self.n_cols)

    def fired_counts(self) -> Tensor:
        """How many rows each latent is active (> 0) in, [n_cols] int64."""
        return torch.bincount(self.cols[self.values > 0], minlength=self.n_cols)


def _per_row_csr(vals: Tensor, cols: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Flatten [n, k] selections into CSR (crow, cols, values) with columns sorted within each row."""
    n, k = cols.shape
    cols, order = cols.sort(dim=-1)
    vals = vals.gather(-1, order)
    crow = torch.arange(0, n * k + 1, k, device=cols.device, dtype=torch.int64)
    return crow, cols.reshape(-1), vals.reshape(-1)


def select_topk(pre: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The k largest pre-activations of each row, as CSR (crow, cols, raw values)."""
    vals, cols = pre.topk(k, dim=-1, sorted=False)
    return _per_row_csr(vals, cols)


def select_batch_topk(pre: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The k * n largest pre-activations of the whole [n, d] batch, as CSR (crow, cols, raw values)."""
    n, d = pre.shape
    keep = min(k * n, n * d)
    per_row = min(d, 4 * k)
    cand_vals, cand_cols = pre.topk(per_row, dim=-1, sorted=False)
    top, pos = cand_vals.reshape(-1).topk(keep, sorted=False)
    # The candidates are exact unless some row has more than `per_row` entries above the cut.
    if per_row < d and bool((cand_vals.amin(dim=-1) > top.min()).any()):
        top, flat = pre.reshape(-1).topk(keep, sorted=False)
        rows, cols = flat // d, flat % d
    else:
        rows, cols = pos // per_row, cand_cols.reshape(-1)[pos]
    order = (rows * d + cols).argsort()
    rows, cols, top = rows[order], cols[order], top[order]
    crow = torch.zeros(n + 1, dtype=torch.int64, device=pre.device)
    crow[1:] = torch.bincount(rows, minlength=n).cumsum(0)
    return crow, cols, top


def select_dead(pre: Tensor, dead_mask: Tensor, aux_k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The `aux_k` largest pre-activations among dead latents of each row (fewer if fewer are dead)."""
    dead = dead_mask.nonzero().squeeze(1)
    take = min(aux_k, dead.numel())
    vals, pos = pre.index_select(1, dead).topk(take, dim=-1, sorted=False)
    return _per_row_csr(vals, dead[pos])


def select(pre: Tensor, k: int, batch_topk: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row TopK or BatchTopK selection."""
    return select_batch_topk(pre, k) if batch_topk else select_topk(pre, k)


def _csr(crow: Tensor, cols: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, cols, values, size=shape, check_invariants=False)


def _coo(index: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    return torch.sparse_coo_tensor(index, values, size=shape, check_invariants=False)


def row_dots_sddmm(crow: Tensor, cols: Tensor, left: Tensor, right: Tensor) -> Tensor:
    """For each CSR entry (r, c): left[r] . right[c], by a sampled dense-dense product (fast on the CPU)."""
    mask = _csr(crow, cols, left.new_zeros(cols.numel()), (crow.numel() - 1, right.shape[0]))
    dots: Tensor = torch.sparse.sampled_addmm(mask, left, right.t(), beta=0.0).values()
    return dots


def row_dots_gather(crow: Tensor, cols: Tensor, left: Tensor, right: Tensor) -> Tensor:
    """For each CSR entry (r, c): left[r] . right[c], by gathering rows in bounded chunks (any device)."""
    rows = torch.repeat_interleave(torch.arange(crow.numel() - 1, device=crow.device), crow.diff())
    out = left.new_empty(cols.numel())
    chunk = max(1, (1 << 26) // max(1, right.shape[1]))
    for start in range(0, cols.numel(), chunk):
        r, c = rows[start : start + chunk], cols[start : start + chunk]
        out[start : start + chunk] = (left[r] * right[c]).sum(-1)
    return out


def _sampled_row_dots(crow: Tensor, cols: Tensor, left: Tensor, right: Tensor) -> Tensor:
    """For each CSR entry (r, c): left[r] . right[c], without the dense [n, d_sae] product."""
    if cols.numel() == 0:
        return left.new_zeros(0)
    if left.device.type == "cpu":
        return row_dots_sddmm(crow, cols, left, right)
    return row_dots_gather(crow, cols, left, right)


def _sparse_t_mm(rows: Tensor, cols: Tensor, values: Tensor, dense: Tensor, n_cols: int) -> Tensor:
    """(S^T @ dense) for the sparse [n, n_cols] matrix S given by (rows, cols, values): [n_cols, dense_dim]."""
    if values.numel() == 0:
        return dense.new_zeros(n_cols, dense.shape[1])
    sparse_t = _coo(torch.stack([cols, rows]), values, (n_cols, dense.shape[0]))
    product: Tensor = torch.sparse.mm(sparse_t, dense)
    return product


class _SparseEncode(torch.autograd.Function):
    """Dense pre-activations, (Batch)TopK selection (+ AuxK selection among dead latents), sparse backward."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        W_enc: Tensor,
        b_enc: Tensor,
        b_dec: Tensor | None,
        k: int,
        batch_topk: bool,
        dead_mask: Tensor | None,
        aux_k: int,
    ) -> tuple[Tensor, ...]:
        x_in = x - b_dec if b_dec is not None else x
        pre = torch.addmm(b_enc, x_in, W_enc)
        crow, cols, values = select(pre, k, batch_topk)
        values = values.float().relu()
        if dead_mask is not None and bool(dead_mask.any()) and aux_k > 0:
            aux_crow, aux_cols, aux_values = select_dead(pre, dead_mask, aux_k)
            aux_values = aux_values.float().relu()
        else:
            aux_crow = torch.zeros(x.shape[0] + 1, dtype=torch.int64, device=x.device)
            aux_cols = torch.zeros(0, dtype=torch.int64, device=x.device)
            aux_values = torch.zeros(0, dtype=torch.float32, device=x.device)
        ctx.save_for_backward(x_in, W_enc, crow, cols, values, aux_crow, aux_cols, aux_values)
        ctx.has_b_dec = b_dec is not None
        ctx.mark_non_differentiable(crow, cols, aux_crow, aux_cols)
        return crow, cols, values, aux_crow, aux_cols, aux_values

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        x_in, W_enc, crow, cols, values, aux_crow, aux_cols, aux_values = ctx.saved_tensors
        g_values, g_aux = grads[2], grads[5]
        d_sae = W_enc.shape[1]
        parts = []
        for c_crow, c_cols, c_values, g in ((crow, cols, values, g_values), (aux_crow, aux_cols, aux_values, g_aux)):
            if g is not None and c_cols.numel():
                rows = torch.repeat_interleave(torch.arange(x_in.shape[0], device=x_in.device), c_crow.diff())
                parts.append((rows, c_cols, g.float() * (c_values > 0)))
        if not parts:
            return None, None, None, None, None, None, None, None
        rows, cols_all, g_all = parts[0] if len(parts) == 1 else (torch.cat(t) for t in zip(*parts, strict=True))
        grad_b_enc = torch.zeros(d_sae, dtype=torch.float32, device=x_in.device).index_add_(0, cols_all, g_all)
        grad_W_enc = _sparse_t_mm(rows, cols_all, g_all, x_in.float(), d_sae).t()
        grad_x = grad_b_dec = None
        if ctx.needs_input_grad[0]:
            sparse = _coo(torch.stack([rows, cols_all]), g_all, (x_in.shape[0], d_sae))
            grad_x = torch.sparse.mm(sparse, W_enc.float().t()).to(x_in.dtype)
        if ctx.has_b_dec and ctx.needs_input_grad[3]:
            grad_b_dec = -(W_enc.float() @ grad_b_enc)
        return (
            grad_x,
            grad_W_enc.to(W_enc.dtype),
            grad_b_enc.to(W_enc.dtype),
            None if grad_b_dec is None else grad_b_dec.to(W_enc.dtype),
            None,
            None,
            None,
            None,
        )


class _SparseDecode(torch.autograd.Function):
    """sum_j values_j * W_dec[cols_j] per row (no bias), with sparse gradients for values and W_dec."""

    @staticmethod
    def forward(ctx: Any, crow: Tensor, cols: Tensor, values: Tensor, W_dec: Tensor) -> Tensor:
        ctx.save_for_backward(crow, cols, values, W_dec)
        if cols.numel() == 0:
            return W_dec.new_zeros(crow.numel() - 1, W_dec.shape[1])
        return F.embedding_bag(cols, W_dec, offsets=crow[:-1], per_sample_weights=values.to(W_dec.dtype), mode="sum")

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        crow, cols, values, W_dec = ctx.saved_tensors
        g = grad_out.to(W_dec.dtype).contiguous()
        grad_values = grad_W_dec = None
        if ctx.needs_input_grad[2]:
            grad_values = _sampled_row_dots(crow, cols, g, W_dec).to(values.dtype)
        if ctx.needs_input_grad[3]:
            rows = torch.repeat_interleave(torch.arange(crow.numel() - 1, device=crow.device), crow.diff())
            grad_W_dec = _sparse_t_mm(rows, cols, values.to(W_dec.dtype), g, W_dec.shape[0])
        return None, None, grad_values, grad_W_dec


def sparse_encode(
    x: Tensor,
    W_enc: Tensor,
    b_enc: Tensor,
    b_dec: Tensor | None,
    k: int,
    batch_topk: bool = False,
    dead_mask: Tensor | None = None,
    aux_k: int = 0,
) -> tuple[SparseCodes, SparseCodes | None]:
    """Encode [n, d_in] rows into (Batch)TopK codes, plus AuxK codes over dead latents when `dead_mask` is set."""
    crow, cols, values, aux_crow, aux_cols, aux_values = _SparseEncode.apply(  # type: ignore[no-untyped-call]  # torch: untyped
        x, W_enc, b_enc, b_dec, k, batch_topk, dead_mask, aux_k
    )
    d_sae = W_enc.shape[1]
    main = SparseCodes(crow, cols, values, d_sae)
    aux = SparseCodes(aux_crow, aux_cols, aux_values, d_sae) if aux_cols.numel() else None
    return main, aux


def sparse_decode(codes: SparseCodes, W_dec: Tensor) -> Tensor:
    """codes @ W_dec as [n, d_in] (no bias), touching only the active rows of W_dec."""
    decoded: Tensor = _SparseDecode.apply(codes.crow, codes.cols, codes.values, W_dec)  # type: ignore[no-untyped-call]  # torch: untyped
    return decoded
