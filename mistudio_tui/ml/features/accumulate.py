"""Streaming per-feature statistics over SAE codes: top examples, quantile examples, density, histograms.

Memory is O(d_sae x slots x window), never O(tokens x d_sae): each `update` reduces one chunk of dense codes
to the sparse list of firing (token, feature) pairs and folds it into fixed-size per-feature buffers.

- Top-k examples: per-feature slots kept by activation; a new firing enters only if it beats the feature's
  current k-th best, and its token window (ids and this feature's activations) is gathered while the codes
  still exist.
- Quantile examples: a per-feature reservoir of firings kept by the largest uniform random key is a uniform
  sample of the feature's non-zero activations. At `finalize` the band edges (equal probability mass) come
  from the histogram, which saw every firing, and each band takes a few reservoir examples lying inside it.
- Histogram: per-feature linear right-closed bins over (0, top], `top` starting at the first batch's maximum
  and doubling (adjacent bins merged pairwise) whenever the running maximum outgrows it. Counts stay exact,
  memory is d_sae x bins, and at least half of the bins always span the observed range, whatever each
  feature's scale (log-spaced global bins would waste most bins on features of very different scales).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class ExampleSet:
    """Examples with token windows, leading dims [d_sae, ...slots]; a sequence of -1 marks an empty slot."""

    value: Tensor  # [..., S] float32 activation at the marked token
    sequence: Tensor  # [..., S] int64 sequence index (-1 = empty)
    position: Tensor  # [..., S] int64 token position in its sequence
    tokens: Tensor  # [..., S, W] int32 window token ids (pad id outside the sequence)
    acts: Tensor  # [..., S, W] float32 this feature's activation over the window (0 where masked)
    mask: Tensor  # [..., S, W] bool: inside the sequence and a counted (valid) token


@dataclass
class FeatureStats:
    """Everything the feature browser shows for each feature, as CPU tensors indexed by feature."""

    d_sae: int
    tokens_seen: int
    context: tuple[int, int]  # tokens (before, after) the marked token in each window
    pad_id: int
    top: ExampleSet  # [d_sae, top_k]
    quantile_edges: Tensor  # [d_sae, n_quantiles + 1] band edges from min to max non-zero activation
    quantiles: ExampleSet  # [d_sae, n_quantiles, per_quantile]
    count: Tensor  # [d_sae] int64 firings (valid tokens with activation > 0)
    density: Tensor  # [d_sae] fraction of valid tokens where the feature fires
    mean_nonzero: Tensor  # [d_sae] mean activation where it fires
    mean_all: Tensor  # [d_sae] mean activation over all valid tokens
    max: Tensor  # [d_sae]
    min_nonzero: Tensor  # [d_sae] (0 for a feature that never fired)
    hist_counts: Tensor  # [d_sae, bins] int64 counts of non-zero activations
    hist_max: Tensor  # [d_sae] upper edge: bins (lo, hi] with edges linspace(0, hist_max, bins + 1)
    dead: Tensor  # [d_sae] bool: never fired, or density below `dead_density`
    dead_density: float

    @property
    def top_k(self) -> int:
        return int(self.top.value.shape[1])

    @property
    def n_quantiles(self) -> int:
        return int(self.quantile_edges.shape[1]) - 1

    @property
    def per_quantile(self) -> int:
        return int(self.quantiles.value.shape[2])

    @property
    def hist_bins(self) -> int:
        return int(self.hist_counts.shape[1])


class _Windows:
    """Gathers token windows around flat token indices of one [B, T, d_sae] chunk of codes."""

    def __init__(
        self,
        codes: Tensor,
        token_ids: Tensor,
        sequence_index: Tensor,
        valid: Tensor,
        offsets: Tensor,
        pad_id: int,
    ) -> None:
        self.codes = codes
        self.token_ids = token_ids
        self.sequence_index = sequence_index
        self.valid = valid
        self.offsets = offsets
        self.pad_id = pad_id

    def gather(self, flat: Tensor, feature: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(sequence, position, tokens [M, W], acts [M, W], mask [M, W]) for flat indices and features [M]."""
        length = self.token_ids.shape[1]
        row = flat // length
        position = flat % length
        at = position[:, None] + self.offsets[None, :]
        inside = (at >= 0) & (at < length)
        # flat indices and `take`: several times faster than 3-D advanced indexing
        token = (row * length)[:, None] + at.clamp(0, length - 1)
        tokens = self.token_ids.take(token).to(torch.int32).masked_fill(~inside, self.pad_id)
        mask = inside & self.valid.take(token)
        acts = self.codes.take(token * self.codes.shape[2] + feature[:, None]).masked_fill(~mask, 0.0)
        return self.sequence_index[row], position, tokens, acts, mask


class _ExampleBuffer:
    """Per-feature example slots (unordered) holding the items with the largest keys seen so far."""

    def __init__(self, d_sae: int, slots: int, width: int, pad_id: int, device: torch.device) -> None:
        self.slots = slots
        self.key = torch.full((d_sae, slots), float("-inf"), device=device)
        self.value = torch.zeros(d_sae, slots, device=device)
        self.sequence = torch.full((d_sae, slots), -1, dtype=torch.int64, device=device)
        self.position = torch.full((d_sae, slots), -1, dtype=torch.int64, device=device)
        self.tokens = torch.full((d_sae, slots, width), pad_id, dtype=torch.int32, device=device)
        self.acts = torch.zeros(d_sae, slots, width, device=device)
        self.mask = torch.zeros(d_sae, slots, width, dtype=torch.bool, device=device)

    def offer(self, feature: Tensor, key: Tensor, flat: Tensor, value: Tensor, windows: _Windows) -> None:
        """Fold candidate items (feature, key >= 0, flat token index, activation) [M] into the slots.

        A feature's new candidates, best first, replace its old slots lowest first while they beat them (the
        merge of two sorted lists), so only the winners' windows are gathered and written. Two waits for the
        device in all (the two filters); everything else has fixed shapes.
        """
        d, s = self.key.shape
        keep = (key > self.key.amin(dim=1)[feature]).nonzero().squeeze(1)
        feature, key, flat, value = feature[keep], key[keep], flat[keep], value[keep]
        if feature.numel() == 0:
            return
        # by feature, then key descending, in one sort: a non-negative float32's bits order like the float
        descending = 0x7FFFFFFF - key.float().contiguous().view(torch.int32).long()
        order = torch.argsort(feature * (1 << 31) + descending, stable=True)
        feature, key, flat, value = feature[order], key[order], flat[order], value[order]
        counts = torch.zeros(d, dtype=torch.int64, device=feature.device).index_add_(
            0, feature, torch.ones_like(feature)
        )
        rank = torch.arange(len(feature), device=feature.device) - (counts.cumsum(0) - counts)[feature]
        old_key, old_slot = self.key.sort(dim=1)  # each feature's slots, lowest key first
        at = feature * s + rank.clamp(max=s - 1)
        won = ((rank < s) & (key > old_key.reshape(-1)[at])).nonzero().squeeze(1)
        feature, key, flat, value = feature[won], key[won], flat[won], value[won]
        slot = old_slot.reshape(-1)[at[won]]
        sequence, position, tokens, acts, mask = windows.gather(flat, feature)
        self.key[feature, slot] = key
        self.value[feature, slot] = value
        self.sequence[feature, slot] = sequence
        self.position[feature, slot] = position
        self.tokens[feature, slot] = tokens
        self.acts[feature, slot] = acts
        self.mask[feature, slot] = mask

    def as_example_set(self) -> ExampleSet:
        """The slots sorted by key, highest first (empty slots last)."""
        order = self.key.argsort(dim=1, descending=True, stable=True)
        by_window = order[:, :, None].expand(-1, -1, self.tokens.shape[2])
        return ExampleSet(
            self.value.gather(1, order).cpu(),
            self.sequence.gather(1, order).cpu(),
            self.position.gather(1, order).cpu(),
            self.tokens.gather(1, by_window).cpu(),
            self.acts.gather(1, by_window).cpu(),
            self.mask.gather(1, by_window).cpu(),
        )


class FeatureAccumulator:
    """Folds chunks of SAE codes [B, T, d_sae] into per-feature stats in memory independent of tokens."""

    def __init__(
        self,
        d_sae: int,
        top_k: int = 20,
        n_quantiles: int = 5,
        per_quantile: int = 5,
        context: tuple[int, int] = (10, 5),
        hist_bins: int = 64,
        reservoir: int | None = None,
        pad_id: int = 0,
        device: str | torch.device | None = None,
        seed: int = 0,
    ) -> None:
        before, after = (int(c) for c in context)
        for name, number in (("d_sae", d_sae), ("top_k", top_k), ("n_quantiles", n_quantiles)):
            if int(number) < 1:
                raise ValueError(f"{name} must be at least 1, got {number}")
        if per_quantile < 1:
            raise ValueError(f"per_quantile must be at least 1, got {per_quantile}")
        if before < 0 or after < 0:
            raise ValueError(f"context must be two non-negative token counts (before, after), got {context}")
        if hist_bins < 2 or hist_bins % 2:
            raise ValueError(f"hist_bins must be an even number of at least 2, got {hist_bins}")
        self.reservoir = int(reservoir) if reservoir is not None else 2 * n_quantiles * per_quantile
        if self.reservoir < per_quantile:
            raise ValueError(f"reservoir must hold at least per_quantile={per_quantile} examples")
        self.d_sae = int(d_sae)
        self.top_k = int(top_k)
        self.n_quantiles = int(n_quantiles)
        self.per_quantile = int(per_quantile)
        self.context = (before, after)
        self.hist_bins = int(hist_bins)
        self.pad_id = int(pad_id)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        width = before + 1 + after
        dev = self.device
        self.offsets = torch.arange(-before, after + 1, device=dev)
        self.top = _ExampleBuffer(self.d_sae, self.top_k, width, self.pad_id, dev)
        self.sample = _ExampleBuffer(self.d_sae, self.reservoir, width, self.pad_id, dev)
        self.count = torch.zeros(self.d_sae, dtype=torch.int64, device=dev)
        self.total = torch.zeros(self.d_sae, dtype=torch.float64, device=dev)
        self.max = torch.zeros(self.d_sae, device=dev)
        self.min = torch.full((self.d_sae,), float("inf"), device=dev)
        self.hist = torch.zeros(self.d_sae, self.hist_bins, dtype=torch.int64, device=dev)
        self.hist_top = torch.zeros(self.d_sae, device=dev)
        self.tokens_seen = 0
        self._generator = torch.Generator(device=dev).manual_seed(int(seed))

    def update(self, codes: Tensor, token_ids: Tensor, sequence_index: Tensor, valid_mask: Tensor) -> None:
        """Fold in codes [B, T, d_sae] of B whole sequences, their token ids, indices [B] and mask [B, T]."""
        if codes.ndim != 3 or codes.shape[2] != self.d_sae:
            raise ValueError(f"codes must have shape [B, T, {self.d_sae}], got {tuple(codes.shape)}")
        batch, length = codes.shape[:2]
        if tuple(token_ids.shape) != (batch, length) or tuple(valid_mask.shape) != (batch, length):
            raise ValueError(
                f"token_ids and valid_mask must have shape [{batch}, {length}] like the codes, "
                f"got {tuple(token_ids.shape)} and {tuple(valid_mask.shape)}"
            )
        if tuple(sequence_index.shape) != (batch,):
            raise ValueError(f"sequence_index must have shape [{batch}], got {tuple(sequence_index.shape)}")
        dev = self.device
        # counted where the mask lives (pass it on the CPU to spare a wait for the GPU)
        self.tokens_seen += int(valid_mask.sum())
        codes = codes.to(dev, torch.float32)
        token_ids = token_ids.to(dev, non_blocking=True)
        valid = valid_mask.to(dev, torch.bool, non_blocking=True)
        sequence_index = sequence_index.to(dev, torch.int64, non_blocking=True)

        flat_codes = codes.reshape(batch * length, self.d_sae)
        # one pass over the dense codes (they are sparse: most entries are 0); sign and mask on the firings only
        flat, feature = flat_codes.nonzero(as_tuple=True)
        value = flat_codes[flat, feature]
        keep = ((value > 0) & valid.reshape(-1)[flat]).nonzero().squeeze(1)
        flat, feature, value = flat[keep], feature[keep], value[keep]
        if flat.numel() == 0:
            return

        self.count.index_add_(0, feature, torch.ones_like(feature))  # bincount would wait for the GPU
        self.total.index_add_(0, feature, value.double())
        self.max.scatter_reduce_(0, feature, value, reduce="amax")
        self.min.scatter_reduce_(0, feature, value, reduce="amin")
        self._update_histogram(feature, value)

        windows = _Windows(codes, token_ids, sequence_index, valid, self.offsets, self.pad_id)
        self.top.offer(feature, value, flat, value, windows)
        keys = torch.rand(value.shape, generator=self._generator, device=dev)
        self.sample.offer(feature, keys, flat, value, windows)

    def _update_histogram(self, feature: Tensor, value: Tensor) -> None:
        """Grow each feature's range to cover its running max (merging bins pairwise), then count values."""
        fresh = (self.hist_top == 0) & (self.max > 0)
        self.hist_top = torch.where(fresh, self.max, self.hist_top)
        grow = self.max > self.hist_top
        half = self.hist_bins // 2
        while bool(grow.any()):
            rows = grow.nonzero(as_tuple=True)[0]
            merged = self.hist[rows].view(len(rows), half, 2).sum(-1)
            self.hist[rows] = torch.cat([merged, torch.zeros_like(merged)], dim=1)
            self.hist_top[rows] *= 2
            grow = self.max > self.hist_top
        top = self.hist_top[feature]
        # right-closed bins (lo, hi]: a value equal to the range's top stays in the top bin after any doubling
        bins = (value / top * self.hist_bins).ceil().long().sub_(1).clamp_(0, self.hist_bins - 1)
        self.hist.view(-1).index_add_(0, feature * self.hist_bins + bins, torch.ones_like(bins))

    def _quantile_edges(self) -> Tensor:
        """Band edges [d_sae, n_quantiles + 1] splitting each feature's firings into equal-mass bands."""
        cum = self.hist.cumsum(1).double()
        q = torch.arange(1, self.n_quantiles, device=self.device, dtype=torch.float64) / self.n_quantiles
        target = (cum[:, -1:] * q[None, :]).contiguous()
        bins = torch.searchsorted(cum, target).clamp_(max=self.hist_bins - 1)
        before = torch.where(bins > 0, cum.gather(1, (bins - 1).clamp(min=0)), torch.zeros_like(target))
        in_bin = self.hist.gather(1, bins).double().clamp(min=1)
        fraction = ((target - before) / in_bin).clamp(0, 1)
        width = self.hist_top.double()[:, None] / self.hist_bins
        fired = self.count > 0
        low = torch.where(fired, self.min, torch.zeros_like(self.min))
        high = self.max
        interior = ((bins + fraction) * width).float()
        interior = torch.minimum(torch.maximum(interior, low[:, None]), high[:, None])
        return torch.cat([low[:, None], interior, high[:, None]], dim=1)

    def _quantile_examples(self, edges: Tensor) -> ExampleSet:
        """Pick up to `per_quantile` reservoir examples inside each band, highest activation first."""
        nq, per, res = self.n_quantiles, self.per_quantile, self.sample
        dev = self.device
        band = torch.searchsorted(edges[:, 1:-1].contiguous(), res.value.contiguous(), right=True)
        band = band.masked_fill(res.sequence < 0, nq)
        # band first, then the random key (descending), so each band's first slots are a random subset
        score = band.double() * 2 + (1 - res.key.double())
        order = score.argsort(dim=1)
        sorted_band = band.gather(1, order)
        wanted = torch.arange(nq, device=dev).expand(self.d_sae, nq).contiguous()
        start = torch.searchsorted(sorted_band, wanted)
        rank = torch.arange(res.slots, device=dev)[None, :] - start.gather(1, sorted_band.clamp(max=nq - 1))
        feat, slot = ((sorted_band < nq) & (rank < per)).nonzero(as_tuple=True)
        src = order[feat, slot]
        dst_band, dst_rank = sorted_band[feat, slot], rank[feat, slot]

        width = res.tokens.shape[2]
        value = torch.full((self.d_sae, nq, per), float("-inf"), device=dev)
        sequence = torch.full((self.d_sae, nq, per), -1, dtype=torch.int64, device=dev)
        position = torch.full((self.d_sae, nq, per), -1, dtype=torch.int64, device=dev)
        tokens = torch.full((self.d_sae, nq, per, width), self.pad_id, dtype=torch.int32, device=dev)
        acts = torch.zeros(self.d_sae, nq, per, width, device=dev)
        mask = torch.zeros(self.d_sae, nq, per, width, dtype=torch.bool, device=dev)
        value[feat, dst_band, dst_rank] = res.value[feat, src]
        sequence[feat, dst_band, dst_rank] = res.sequence[feat, src]
        position[feat, dst_band, dst_rank] = res.position[feat, src]
        tokens[feat, dst_band, dst_rank] = res.tokens[feat, src]
        acts[feat, dst_band, dst_rank] = res.acts[feat, src]
        mask[feat, dst_band, dst_rank] = res.mask[feat, src]

        value, by_value = value.sort(dim=2, descending=True)
        by_window = by_value[..., None].expand(-1, -1, -1, width)
        return ExampleSet(
            value.clamp(min=0).cpu(),
            sequence.gather(2, by_value).cpu(),
            position.gather(2, by_value).cpu(),
            tokens.gather(2, by_window).cpu(),
            acts.gather(2, by_window).cpu(),
            mask.gather(2, by_window).cpu(),
        )

    def finalize(self, dead_density: float = 0.0) -> FeatureStats:
        """The statistics so far (the accumulator stays usable); dead: never fired or density < cut-off."""
        tokens = max(self.tokens_seen, 1)
        count = self.count
        density = (count.double() / tokens).float()
        edges = self._quantile_edges()
        top = self.top.as_example_set()
        return FeatureStats(
            d_sae=self.d_sae,
            tokens_seen=self.tokens_seen,
            context=self.context,
            pad_id=self.pad_id,
            top=top,
            quantile_edges=edges.cpu(),
            quantiles=self._quantile_examples(edges),
            count=count.cpu(),
            density=density.cpu(),
            mean_nonzero=(self.total / count.clamp(min=1)).float().cpu(),
            mean_all=(self.total / tokens).float().cpu(),
            max=self.max.cpu(),
            min_nonzero=torch.where(count > 0, self.min, torch.zeros_like(self.min)).cpu(),
            hist_counts=self.hist.cpu(),
            hist_max=self.hist_top.cpu(),
            dead=((count == 0) | (density < dead_density)).cpu(),
            dead_density=float(dead_density),
        )
