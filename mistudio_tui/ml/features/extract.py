"""The feature-extraction driver: encode model activations with the SAE in chunks and accumulate stats."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mistudio_tui.ml.device import pick_device
from mistudio_tui.ml.features.accumulate import FeatureAccumulator, FeatureStats
from mistudio_tui.ml.features.cooccurrence import CooccurrenceAccumulator
from mistudio_tui.reporting import JobContext


@dataclass
class SequenceBatch:
    """B whole sequences of T tokens with the model's activations at the SAE's hook point (ids and masks may stay on
    the CPU: the extraction works them out there)."""

    token_ids: Tensor  # [B, T] int
    sequence_index: Tensor  # [B] int: which sequence of the tokenization each row is
    valid_mask: Tensor  # [B, T] bool: tokens that count (not BOS, padding or special tokens)
    activations: Tensor  # [B, T, d_in]


@dataclass
class ExtractionOptions:
    """What to record per feature and how much data to read."""

    n_tokens: int | None = None  # stop after this many valid tokens (None: every batch)
    context: tuple[int, int] = (10, 5)  # tokens shown before and after the marked token
    top_k: int = 20
    n_quantiles: int = 5
    per_quantile: int = 5
    hist_bins: int = 64
    dead_density: float = 0.0  # features firing on fewer than this fraction of tokens are marked dead
    special_ids: tuple[int, ...] = ()  # token ids never counted, on top of each batch's valid_mask
    encode_chunk_tokens: int | None = None  # tokens encoded at once (None: `chunk_tokens` picks for the device)
    pad_id: int = 0
    seed: int = 0
    device: str | None = None  # None: the device the activations arrive on


CPU_CHUNK_TOKENS = 4096
GPU_CODES_BUDGET = 1 << 30  # bytes of dense float32 codes per accumulator update on a GPU
GPU_CHUNK_TOKENS = (4096, 32768)  # the range a GPU's chunk is picked from


def chunk_tokens(options: ExtractionOptions, d_sae: int, device: torch.device) -> int:
    """Tokens encoded and accumulated at once: as asked, else 4,096 on a CPU and as many as 1 GiB of codes holds
    (4,096 to 32,768) on a GPU, where each update's ~200 small kernels and few waits cost the same whatever its
    size (the host launching them, not the device, bounds a small model's extraction)."""
    if options.encode_chunk_tokens is not None:
        return options.encode_chunk_tokens
    if device.type != "cuda":
        return CPU_CHUNK_TOKENS
    low, high = GPU_CHUNK_TOKENS
    fits = GPU_CODES_BUDGET // (4 * d_sae) // low * low
    return max(low, min(high, fits))


def valid_token_mask(token_ids: Tensor, special_ids: Iterable[int], lengths: Tensor | None = None) -> Tensor:
    """True where a token counts: not one of `special_ids` and, when `lengths` [B] is given, not padding."""
    ids = torch.as_tensor(sorted({int(i) for i in special_ids}), dtype=token_ids.dtype, device=token_ids.device)
    mask = ~torch.isin(token_ids, ids)
    if lengths is not None:
        positions = torch.arange(token_ids.shape[-1], device=token_ids.device)
        mask &= positions[None, :] < lengths.to(token_ids.device)[:, None]
    return mask


def _limit_tokens(valid: Tensor, remaining: int) -> Tensor:
    """The valid mask with every valid token past the first `remaining` (row-major) switched off."""
    order = valid.reshape(-1).long().cumsum(0).reshape(valid.shape)
    return valid & (order <= remaining)


def _check_batch(batch: SequenceBatch, d_in: int | None) -> None:
    acts = batch.activations
    if acts.ndim != 3:
        raise ValueError(f"activations must have shape [B, T, d_in], got {tuple(acts.shape)}")
    if d_in is not None and acts.shape[2] != d_in:
        raise ValueError(f"activations have d_in {acts.shape[2]}, but earlier batches had {d_in}")
    if tuple(batch.token_ids.shape) != tuple(acts.shape[:2]):
        raise ValueError(
            f"token_ids shape {tuple(batch.token_ids.shape)} does not match activations {tuple(acts.shape)}"
        )


class _Pending:
    """Rows of several small batches gathered until one encode chunk is full (fewer, larger GPU updates)."""

    def __init__(self) -> None:
        self.rows: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        self.tokens = 0
        self.length: int | None = None

    def add(self, activations: Tensor, token_ids: Tensor, sequence_index: Tensor, valid: Tensor) -> None:
        self.rows.append((activations, token_ids, sequence_index, valid))
        self.tokens += valid.numel()
        self.length = int(token_ids.shape[1])

    def take(self, device: torch.device) -> SequenceBatch:
        """Everything gathered as one batch (activations on `device`), and start again."""
        parts = list(zip(*self.rows, strict=True))
        self.rows, self.tokens, self.length = [], 0, None
        acts = torch.cat([a.to(device, non_blocking=True) for a in parts[0]])
        return SequenceBatch(torch.cat(parts[1]), torch.cat(parts[2]), torch.cat(parts[3]), acts)


def _encode_rows(
    batch: SequenceBatch,
    encode: Callable[[Tensor], Tensor],
    d_sae: int,
    chunk: int,
    accumulator: FeatureAccumulator,
    cooccurrence: CooccurrenceAccumulator | None,
    ctx: JobContext,
) -> None:
    """Encode whole rows at most `chunk` tokens at a time and fold the codes into the accumulators."""
    n_rows, length, d_in = batch.activations.shape
    step = max(1, chunk // length)
    for lo in range(0, n_rows, step):
        ctx.check_cancelled()
        hi = min(lo + step, n_rows)
        codes = encode(batch.activations[lo:hi].reshape(-1, d_in))
        if codes.shape[-1] != d_sae:
            raise ValueError(f"the SAE encode returned {codes.shape[-1]} features per token, expected {d_sae}")
        codes = codes.reshape(hi - lo, length, d_sae)
        valid = batch.valid_mask[lo:hi]
        accumulator.update(codes, batch.token_ids[lo:hi], batch.sequence_index[lo:hi], valid)
        if cooccurrence is not None:
            cooccurrence.update(codes, valid)


def extract_feature_stats(
    batches: Iterable[SequenceBatch],
    encode: Callable[[Tensor], Tensor],
    d_sae: int,
    options: ExtractionOptions,
    ctx: JobContext,
    n_tokens: int | None = None,
    cooccurrence: CooccurrenceAccumulator | None = None,
) -> FeatureStats:
    """Run `encode` ([N, d_in] -> [N, d_sae]) over the batches and return per-feature statistics.

    `n_tokens` (default `options.n_tokens`) caps the valid tokens read; progress reports against it.
    A `cooccurrence` accumulator, when given, sees the same codes.
    """
    limit = n_tokens if n_tokens is not None else options.n_tokens
    if limit is not None and limit < 1:
        raise ValueError(f"n_tokens must be at least 1, got {limit}")
    if options.encode_chunk_tokens is not None and options.encode_chunk_tokens < 1:
        raise ValueError(f"encode_chunk_tokens must be at least 1, got {options.encode_chunk_tokens}")
    special: Sequence[int] = tuple(options.special_ids)
    accumulator: FeatureAccumulator | None = None
    device: torch.device | None = pick_device(options.device) if options.device else None
    d_in: int | None = None
    pending = _Pending()
    chunk = CPU_CHUNK_TOKENS
    counted = 0  # valid tokens taken so far (the accumulator's count lags behind the pending rows)

    def flush() -> None:
        assert accumulator is not None and device is not None
        if pending.rows:
            _encode_rows(pending.take(device), encode, d_sae, chunk, accumulator, cooccurrence, ctx)
            ctx.progress(accumulator.tokens_seen, limit, "extracting features", "tokens")

    ctx.log(f"extracting feature statistics for {d_sae} features" + (f" over {limit} tokens" if limit else ""))
    with torch.no_grad():
        for batch in batches:
            ctx.check_cancelled()
            _check_batch(batch, d_in)
            d_in = int(batch.activations.shape[2])
            if device is None:
                device = batch.activations.device
            if accumulator is None:
                chunk = chunk_tokens(options, d_sae, device)
                accumulator = FeatureAccumulator(
                    d_sae,
                    top_k=options.top_k,
                    n_quantiles=options.n_quantiles,
                    per_quantile=options.per_quantile,
                    context=options.context,
                    hist_bins=options.hist_bins,
                    pad_id=options.pad_id,
                    device=device,
                    seed=options.seed,
                )
            # masks and token ids are worked out on the CPU: no step here waits for the GPU
            token_ids = batch.token_ids.cpu()
            valid = batch.valid_mask.cpu().bool()
            if special:
                valid = valid & valid_token_mask(token_ids, special)
            if limit is not None:
                valid = _limit_tokens(valid, limit - counted)
            rows = valid.any(dim=1).nonzero(as_tuple=True)[0]
            if len(rows):
                if pending.length not in (None, token_ids.shape[1]):
                    flush()
                counted += int(valid.sum())
                acts = batch.activations
                pending.add(
                    acts if len(rows) == len(valid) else acts[rows.to(acts.device)],
                    token_ids[rows],
                    batch.sequence_index.cpu()[rows],
                    valid[rows],
                )
                if pending.tokens >= chunk:
                    flush()
            if limit is not None and counted >= limit:
                break
        if accumulator is not None:
            flush()
    if accumulator is None or accumulator.tokens_seen == 0:
        raise ValueError("the token batches held no valid tokens: nothing to extract feature statistics from")
    if limit is not None and accumulator.tokens_seen < limit:
        ctx.log(f"the data ran out after {accumulator.tokens_seen} of the {limit} tokens asked for", "warning")
    stats = accumulator.finalize(options.dead_density)
    ctx.progress(stats.tokens_seen, limit or stats.tokens_seen, "extracting features", "tokens")
    ctx.log(
        f"extracted statistics over {stats.tokens_seen} tokens; {int(stats.dead.sum())} of {d_sae} features are dead"
    )
    return stats
