"""Which features fire together on the same token: exact counts for a chosen group, bounded partners for all.

For every feature the accumulator keeps `partners` (partner id, estimated count, error) slots, merged batch by
batch like a mergeable space-saving summary: pairs already tracked add their exact batch counts; untracked
pairs compete for the slots with count `floor + batch count`, where `floor[i]` bounds the true count of any
partner of i that is not (or no longer) tracked. So every estimate satisfies `est - err <= true <= est`;
any partner with a true count above `floor[i]` is kept; with at least as many slots as real partners, all
counts are exact. Memory is O(d_sae x partners); a batch costs O(tokens x active^2) for its pairs, small for
sparse codes (TopK / JumpReLU SAEs fire tens of latents per token).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

RANKINGS = ("jaccard", "conditional", "count")


class Partners(NamedTuple):
    """Each feature's co-firing partners [d_sae, P], best first; an id of -1 marks an empty slot."""

    ids: Tensor  # int64
    counts: Tensor  # int64 estimated co-firing tokens (an upper bound on the true count)
    jaccard: Tensor  # float32 count / (fired_i + fired_j - count)
    conditional: Tensor  # float32 P(partner fires | this feature fires) = count / fired_i
    error: Tensor  # int64 how much `counts` may exceed the true count (0 = exact)


class CooccurrenceAccumulator:
    """Counts features firing on the same token: dense [g, g] for `group`, bounded top partners for all."""

    def __init__(
        self,
        d_sae: int,
        group: Sequence[int] | None = None,
        partners: int = 32,
        max_active: int | None = None,
        pair_budget: int = 1 << 22,
        device: str | torch.device | None = None,
    ) -> None:
        if d_sae < 1:
            raise ValueError(f"d_sae must be at least 1, got {d_sae}")
        if partners < 0:
            raise ValueError(f"partners must be 0 (off) or more, got {partners}")
        if max_active is not None and max_active < 2:
            raise ValueError(f"max_active must be at least 2 (or None for every active feature), got {max_active}")
        self.d_sae = int(d_sae)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.n_partners = int(partners)
        self.max_active = max_active
        self.pair_budget = int(pair_budget)
        dev = self.device
        self.tokens_seen = 0
        self.fired = torch.zeros(self.d_sae, dtype=torch.int64, device=dev)
        self.group: Tensor | None = None
        self.group_counts: Tensor | None = None
        if group is not None:
            ids = torch.as_tensor(list(group), dtype=torch.int64)
            if ids.numel() == 0 or int(ids.min()) < 0 or int(ids.max()) >= self.d_sae:
                raise ValueError(f"group must list feature ids in 0..{self.d_sae - 1}, got {list(group)[:10]}")
            self.group = ids.to(dev)
            self.group_counts = torch.zeros(len(ids), len(ids), dtype=torch.int64, device=dev)
        p = max(self.n_partners, 1)
        self.partner_ids = torch.full((self.d_sae, p), -1, dtype=torch.int64, device=dev)
        self.partner_counts = torch.zeros(self.d_sae, p, dtype=torch.int64, device=dev)
        self.partner_error = torch.zeros(self.d_sae, p, dtype=torch.int64, device=dev)
        self.floor = torch.zeros(self.d_sae, dtype=torch.int64, device=dev)

    def update(self, codes: Tensor, valid_mask: Tensor | None = None) -> None:
        """Fold in codes [..., d_sae] (a feature fires where its code is > 0) and the valid mask [...]."""
        if codes.shape[-1] != self.d_sae:
            raise ValueError(f"codes must end in d_sae={self.d_sae} features, got shape {tuple(codes.shape)}")
        flat = codes.reshape(-1, self.d_sae).to(self.device)
        if valid_mask is None:
            valid_mask = torch.ones(flat.shape[0], dtype=torch.bool)
        if valid_mask.numel() != flat.shape[0]:
            raise ValueError(f"valid_mask has {valid_mask.numel()} tokens but the codes have {flat.shape[0]}")
        self.tokens_seen += int(valid_mask.sum())  # where the mask lives (the CPU, in extraction): no GPU wait
        valid = valid_mask.reshape(-1).to(self.device, torch.bool, non_blocking=True)
        active = (flat > 0) & valid[:, None]
        self.fired += active.sum(0)
        if self.group is not None and self.group_counts is not None:
            in_group = active[:, self.group].float()
            self.group_counts += (in_group.T @ in_group).round().long()
        if self.n_partners:
            self._count_pairs(flat, active)

    def _count_pairs(self, flat: Tensor, active: Tensor) -> None:
        """Count ordered pairs of distinct active features per token, a bounded number of pairs at a time."""
        n_active = active.sum(1)
        widest = int(n_active.max()) if n_active.numel() else 0
        if widest < 2:
            return
        width = min(widest, self.max_active) if self.max_active else widest
        strength, ids = flat.masked_fill(~active, 0).topk(width, dim=1)
        on = strength > 0
        rows = on.sum(1) >= 2
        ids, on = ids[rows], on[rows]
        step = max(1, self.pair_budget // (width * width))
        distinct = ~torch.eye(width, dtype=torch.bool, device=self.device)
        for lo in range(0, ids.shape[0], step):
            chunk, o = ids[lo : lo + step], on[lo : lo + step]
            both = o[:, :, None] & o[:, None, :] & distinct
            keys = (chunk[:, :, None] * self.d_sae + chunk[:, None, :])[both]
            pairs, counts = keys.unique(return_counts=True)
            self._merge(pairs // self.d_sae, pairs % self.d_sae, counts)

    def _merge(self, first: Tensor, second: Tensor, counts: Tensor) -> None:
        """Fold exact batch counts of pairs (first -> second), `first` ascending, into the partner slots."""
        slots, dev, d = self.n_partners, self.device, self.d_sae
        table = torch.where(
            self.partner_ids >= 0,
            torch.arange(d, device=dev)[:, None] * d + self.partner_ids,
            torch.full_like(self.partner_ids, -1),
        ).reshape(-1)
        sorted_table, where = table.sort()
        keys = first * d + second
        at = torch.searchsorted(sorted_table, keys).clamp_(max=len(sorted_table) - 1)
        hit = sorted_table[at] == keys
        self.partner_counts.view(-1).index_add_(0, where[at[hit]], counts[hit])

        first, second, counts = first[~hit], second[~hit], counts[~hit]
        if first.numel() == 0:
            return
        # one sort by (first ascending, count descending); batch counts are below 2**32
        order = torch.argsort((first << 32) - counts)
        first, second, counts = first[order], second[order], counts[order]
        rows, per_row = torch.unique_consecutive(first, return_counts=True)
        row_of = torch.repeat_interleave(torch.arange(len(rows), device=dev), per_row)
        rank = torch.arange(len(first), device=dev) - (per_row.cumsum(0) - per_row)[row_of]
        floor = self.floor[rows]
        estimate = floor[row_of] + counts

        # candidates beyond the first `slots` of a row are dropped: the floor must cover them
        dropped = rank >= slots
        raised = floor.clone()
        raised.scatter_reduce_(0, row_of[dropped], estimate[dropped], reduce="amax")

        take = ~dropped
        new_est = torch.full((len(rows), slots), -1, dtype=torch.int64, device=dev)
        new_ids = torch.full((len(rows), slots), -1, dtype=torch.int64, device=dev)
        new_est[row_of[take], rank[take]] = estimate[take]
        new_ids[row_of[take], rank[take]] = second[take]
        new_err = torch.where(new_ids >= 0, floor[:, None].expand(-1, slots), torch.zeros_like(new_ids))

        old_ids = self.partner_ids[rows]
        old_est = torch.where(old_ids >= 0, self.partner_counts[rows], torch.full_like(old_ids, -1))
        all_est = torch.cat([old_est, new_est], dim=1)
        all_ids = torch.cat([old_ids, new_ids], dim=1)
        all_err = torch.cat([self.partner_error[rows], new_err], dim=1)
        best, pick = all_est.topk(slots + 1, dim=1)
        self.floor[rows] = torch.maximum(raised, best[:, slots])
        pick = pick[:, :slots]
        self.partner_ids[rows] = all_ids.gather(1, pick)
        self.partner_counts[rows] = best[:, :slots].clamp(min=0)
        self.partner_error[rows] = all_err.gather(1, pick)

    def top_partners(self, by: str = "jaccard") -> Partners:
        """Every feature's tracked partners ranked by `by` (jaccard, conditional or count), as CPU tensors."""
        if by not in RANKINGS:
            raise ValueError(f"unknown ranking {by!r}; expected one of {', '.join(RANKINGS)}")
        if not self.n_partners:
            raise ValueError("this accumulator tracks no partners (partners=0)")
        ids, counts = self.partner_ids, self.partner_counts
        real = ids >= 0
        fired_i = self.fired[:, None].double()
        fired_j = self.fired[ids.clamp(min=0)].double()
        both = counts.double()
        jaccard = torch.where(real, both / (fired_i + fired_j - both).clamp(min=1), 0.0)
        conditional = torch.where(real, both / fired_i.clamp(min=1), 0.0)
        score = {"jaccard": jaccard, "conditional": conditional, "count": both}[by]
        order = score.masked_fill(~real, -1).argsort(dim=1, descending=True, stable=True)
        return Partners(
            ids.gather(1, order).cpu(),
            counts.gather(1, order).cpu(),
            jaccard.gather(1, order).float().cpu(),
            conditional.gather(1, order).float().cpu(),
            self.partner_error.gather(1, order).cpu(),
        )

    def partners_of(self, feature: int, by: str = "jaccard", top: int = 10) -> list[dict[str, float | int]]:
        """One feature's best `top` partners as dicts (id, count, jaccard, conditional, error)."""
        if not 0 <= feature < self.d_sae:
            raise ValueError(f"feature {feature} is out of range: expected 0..{self.d_sae - 1}")
        ranked = self.top_partners(by)
        rows = []
        for slot in range(min(top, ranked.ids.shape[1])):
            partner = int(ranked.ids[feature, slot])
            if partner < 0:
                break
            rows.append(
                {
                    "id": partner,
                    "count": int(ranked.counts[feature, slot]),
                    "jaccard": float(ranked.jaccard[feature, slot]),
                    "conditional": float(ranked.conditional[feature, slot]),
                    "error": int(ranked.error[feature, slot]),
                }
            )
        return rows

    def group_jaccard(self) -> Tensor:
        """Jaccard similarity [g, g] of the group's firing sets (1 on the diagonal where a feature fired)."""
        if self.group_counts is None:
            raise ValueError("this accumulator has no feature group; pass group=[...] to count one")
        counts = self.group_counts.double()
        single = counts.diagonal()
        union = single[:, None] + single[None, :] - counts
        return (counts / union.clamp(min=1)).float().cpu()
