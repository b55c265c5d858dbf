"""SAE evaluation: reconstruction metrics on held-out activations, and CE loss / KL with the SAE spliced in."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mistudio_tui.ml.batches import BatchSource
from mistudio_tui.ml.sae.base import SparseAutoencoder
from mistudio_tui.reporting import JobContext

DENSE_CUT = 0.1  # a latent active on more than this fraction of tokens counts as dense
LOG_DENSITY_EPS = 1e-10  # log10(density + eps), as SAELens stores it
HISTOGRAM_EDGES = [x / 4 for x in range(-40, 1)]  # log10 density from -10 to 0 in quarter decades
SCALAR_SUMS = ("sse", "sum_sq", "l1_sum")  # the scalar running sums, first in one float64 vector


class ReconstructionStats:
    """Running sums over a stream of (x, x_hat, codes) giving MSE, nmse, explained variance, L0, L1, densities.

    `extra` more scalar sums (a trainer's loss terms) can ride in the same vector: one in-place add per batch.
    """

    def __init__(self, d_in: int, d_sae: int, device: torch.device | str = "cpu", extra: int = 0) -> None:
        self.d_in, self.d_sae, self.device, self.extra = d_in, d_sae, torch.device(device), extra
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self.tokens = 0
        self.sums = torch.zeros(len(SCALAR_SUMS) + self.extra, device=self.device, dtype=torch.float64)
        self.sum_x = torch.zeros(self.d_in, device=self.device, dtype=torch.float64)
        self.fired = torch.zeros(self.d_sae, device=self.device, dtype=torch.int64)

    def add(self, rows: int, sums: Tensor, sum_x: Tensor, fired: Tensor, weights: Tensor | None = None) -> None:
        """Add a batch of `rows` tokens from its (sse, sum of x^2, sum of codes, *extra) sums (times `weights` if
        given), column sums of x and per-latent active counts: three in-place adds, the step's cost of metrics."""
        self.tokens += rows
        if weights is None:
            self.sums.add_(sums)
        else:
            self.sums.addcmul_(sums, weights)
        self.sum_x.add_(sum_x)
        self.fired.add_(fired)

    @torch.no_grad()
    def update(self, x: Tensor, x_hat: Tensor, fired: Tensor, l1_sum: Tensor) -> None:
        """Add a batch: inputs and reconstructions [n, d_in], per-latent active counts, summed codes."""
        x = x.detach().float()
        # Per-batch sums in float32 (pairwise summation), accumulated across batches in float64.
        sse = (x_hat.detach().float() - x).pow(2).sum()
        self.add(x.shape[0], torch.stack([sse, x.pow(2).sum(), l1_sum.detach().float()]), x.sum(0), fired)

    def update_codes(self, x: Tensor, x_hat: Tensor, codes: Tensor) -> None:
        """Add a batch given dense codes [n, d_sae]."""
        self.update(x, x_hat, torch.count_nonzero(codes > 0, dim=0), codes.float().sum())

    def extra_sums(self) -> Tensor:
        """The `extra` sums (a view)."""
        return self.sums[len(SCALAR_SUMS) :]

    def state_dict(self) -> dict[str, Any]:
        """The running sums (for checkpoints)."""
        scalars = {name: self.sums[i].clone() for i, name in enumerate(SCALAR_SUMS)}
        return {
            "tokens": self.tokens,
            **scalars,
            "extra": self.extra_sums().clone(),
            "sum_x": self.sum_x,
            "fired": self.fired,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of `state_dict` (older checkpoints' `l0_sum` is derived from `fired` now, so ignored; without
        `extra`, those sums restart at zero)."""
        self.tokens = int(state["tokens"])
        extra = state.get("extra", torch.zeros(self.extra))
        scalars = [state[name].reshape(1) for name in SCALAR_SUMS] + [extra.reshape(-1)]
        self.sums = torch.cat([t.to(self.device, torch.float64) for t in scalars])
        self.sum_x = state["sum_x"].to(self.device, torch.float64)
        self.fired = state["fired"].to(self.device)

    def packed(self) -> tuple[Tensor, Tensor]:
        """(float64 sums, int64 counts with the token count last): what data-parallel ranks all-reduce."""
        counts = torch.cat([self.fired, torch.tensor([self.tokens], dtype=torch.int64, device=self.fired.device)])
        return torch.cat([self.sums, self.sum_x]), counts

    def unpack(self, floats: Tensor, counts: Tensor) -> None:
        """Inverse of `packed`."""
        self.sums = floats[: self.sums.numel()].clone()
        self.sum_x = floats[self.sums.numel() :].clone()
        self.fired, self.tokens = counts[:-1].clone(), int(counts[-1])

    def density(self) -> Tensor:
        """Fraction of tokens each latent was active on, [d_sae] float32 on the CPU."""
        return (self.fired.double() / max(1, self.tokens)).float().cpu()

    def result(self) -> dict[str, float]:
        """mse (summed over d_in, mean over tokens), nmse (/ sum x^2), explained_variance, l0, l1, dense_fraction."""
        n = max(1, self.tokens)
        sse, sum_sq, l1_sum = self.sums[: len(SCALAR_SUMS)].tolist()
        total_variance = sum_sq - float(self.sum_x.pow(2).sum()) / n
        density = self.density()
        return {
            "mse": sse / n,
            "nmse": sse / sum_sq if sum_sq > 0 else math.nan,
            "explained_variance": 1.0 - sse / total_variance if total_variance > 0 else math.nan,
            "l0": float(self.fired.sum()) / n,
            "l1": l1_sum / n,
            "dense_fraction": float((density > DENSE_CUT).float().mean()),
        }


def log10_density(density: Tensor) -> Tensor:
    """log10(density + 1e-10): the `sparsity` tensor of the SAELens layout."""
    return torch.log10(density.double() + LOG_DENSITY_EPS).float()


def density_histogram(density: Tensor) -> dict[str, list[float] | list[int]]:
    """Counts of latents per quarter-decade of log10 density (never-active latents fall in the lowest bin)."""
    logd = log10_density(density).clamp(HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[-1])
    counts = torch.histogram(logd.double().cpu(), bins=torch.tensor(HISTOGRAM_EDGES, dtype=torch.float64))
    return {"edges": list(HISTOGRAM_EDGES), "counts": [int(c) for c in counts.hist.tolist()]}


@dataclass
class ReconstructionResult:
    """Held-out reconstruction metrics (JSON-able) and each latent's activation density."""

    metrics: dict[str, float]
    density: Tensor


def _sae_device(sae: nn.Module) -> torch.device:
    return next(sae.parameters()).device


@torch.no_grad()
def evaluate_reconstruction(
    sae: SparseAutoencoder,
    source: BatchSource,
    n_tokens: int,
    batch_size: int = 4096,
    ctx: JobContext | None = None,
) -> ReconstructionResult:
    """MSE, nmse, explained variance, L0, L1, dead and dense fractions of `sae` over `n_tokens` rows of `source`."""
    if source.d_in != sae.cfg.row_width:  # a transcoder's rows are [input | target]
        raise ValueError(
            f"evaluation activations have d_in={source.d_in}, but the SAE expects d_in={sae.cfg.row_width}"
        )
    device = _sae_device(sae)
    stats = ReconstructionStats(sae.d_out, sae.d_sae, device)
    was_training = sae.training
    sae.eval()
    try:
        while stats.tokens < n_tokens:
            if ctx is not None:
                ctx.check_cancelled()
            x, target = sae.split(source.next_batch(min(batch_size, n_tokens - stats.tokens)).to(device).float())
            codes = sae.encode(x)
            stats.update_codes(target, sae.reconstruct(x, codes), codes)
    finally:
        sae.train(was_training)
    metrics: dict[str, float] = {"tokens": float(stats.tokens), **stats.result()}
    density = stats.density()
    metrics["dead_fraction"] = float((density == 0).float().mean())
    return ReconstructionResult(metrics, density)


Patch = Callable[[Callable[[Tensor], Tensor]], AbstractContextManager[Any]]


class TranscoderSplice(nn.Module):
    """A transcoder seen from its output hook: called with the output hook's activation, it returns the transcoder's
    output for the input hook's activation `record`ed earlier in the same forward pass (what `evaluate_ce_loss` and
    steering splice in)."""

    def __init__(self, sae: SparseAutoencoder) -> None:
        super().__init__()
        self.sae = sae
        self.recorded: Tensor | None = None

    def record(self, act: Tensor) -> Tensor:
        """The input hook's patch: remember the activation, change nothing."""
        self.recorded = act
        return act

    def forward(self, act: Tensor) -> Tensor:
        if self.recorded is None or self.recorded.shape[:-1] != act.shape[:-1]:
            raise RuntimeError("the transcoder's input hook did not run before its output hook in this forward pass")
        reconstruction: Tensor = self.sae(self.recorded.to(act.device))
        return reconstruction


def _next_token_ce(logits: Tensor, tokens: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Summed next-token cross-entropy over valid targets, and the log-probabilities [B, T-1, V]."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)
    return (nll * valid).sum(), logp


@torch.no_grad()
def evaluate_ce_loss(
    model: nn.Module,
    sae: SparseAutoencoder,
    patch: Patch,
    batches: Iterable[Tensor | tuple[Tensor, Tensor]],
    bos_token_id: int | None = None,
    ctx: JobContext | None = None,
) -> dict[str, float]:
    """Next-token CE clean / with the SAE spliced in / zero-ablated, fraction recovered, and KL to clean logits.

    `patch(fn)` returns a context manager under which the hooked activation [B, T, d_in] is replaced by
    `fn(activation)`. `batches` yields token ids [B, T] (or (ids, attention_mask)). Positions holding
    `bos_token_id` keep their original activation in both the SAE and the zero-ablation runs.
    """
    model_device = next(model.parameters()).device
    sae_device = _sae_device(sae)
    sums = {"clean": 0.0, "sae": 0.0, "zero": 0.0, "kl_sae": 0.0, "kl_zero": 0.0}
    n_targets = 0
    was_training = sae.training
    sae.eval()
    try:
        for batch in batches:
            if ctx is not None:
                ctx.check_cancelled()
            tokens, attention = batch if isinstance(batch, tuple) else (batch, None)
            tokens = tokens.to(model_device).long()
            attention = torch.ones_like(tokens) if attention is None else attention.to(model_device).long()
            splice = attention.bool()
            if bos_token_id is not None:
                splice &= tokens != bos_token_id

            def replace_with(fn: Callable[[Tensor], Tensor], splice: Tensor = splice) -> Callable[[Tensor], Tensor]:
                def patched(act: Tensor) -> Tensor:
                    new = fn(act)
                    if act.shape[:-1] != splice.shape:
                        return new
                    return torch.where(splice[..., None], new, act)

                return patched

            def through_sae(act: Tensor) -> Tensor:
                reconstruction: Tensor = sae(act.to(sae_device))
                return reconstruction.to(device=act.device, dtype=act.dtype)

            valid = attention[:, 1:].float() * attention[:, :-1].float()
            clean_logits = model(input_ids=tokens, attention_mask=attention).logits
            with patch(replace_with(through_sae)):
                sae_logits = model(input_ids=tokens, attention_mask=attention).logits
            with patch(replace_with(torch.zeros_like)):
                zero_logits = model(input_ids=tokens, attention_mask=attention).logits
            clean_ce, clean_logp = _next_token_ce(clean_logits, tokens, valid)
            sae_ce, sae_logp = _next_token_ce(sae_logits, tokens, valid)
            zero_ce, zero_logp = _next_token_ce(zero_logits, tokens, valid)
            clean_p = clean_logp.exp()
            sums["clean"] += float(clean_ce)
            sums["sae"] += float(sae_ce)
            sums["zero"] += float(zero_ce)
            sums["kl_sae"] += float(((clean_p * (clean_logp - sae_logp)).sum(-1) * valid).sum())
            sums["kl_zero"] += float(((clean_p * (clean_logp - zero_logp)).sum(-1) * valid).sum())
            n_targets += int(valid.sum())
    finally:
        sae.train(was_training)
    if n_targets == 0:
        raise ValueError("CE-loss evaluation got no predicted tokens; give batches with at least 2 tokens per row")
    ce_clean, ce_sae, ce_zero = (sums[name] / n_targets for name in ("clean", "sae", "zero"))
    gap = ce_zero - ce_clean
    return {
        "tokens": float(n_targets),
        "ce_loss_clean": ce_clean,
        "ce_loss_sae": ce_sae,
        "ce_loss_zero": ce_zero,
        "ce_loss_increase": ce_sae - ce_clean,
        "ce_loss_recovered": (ce_zero - ce_sae) / gap if gap != 0 else math.nan,
        "kl_sae": sums["kl_sae"] / n_targets,
        "kl_zero": sums["kl_zero"] / n_targets,
    }
