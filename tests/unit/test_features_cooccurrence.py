"""Co-occurrence counts against brute force: exact for a group, bounded partners with error guarantees."""

from __future__ import annotations

import pytest
import torch

from mistudio_tui.ml.features.cooccurrence import CooccurrenceAccumulator

N_TOKENS, K = 600, 4


def topk_codes(d_sae: int, seed: int = 0, planted: tuple[tuple[int, int], ...] = ()) -> torch.Tensor:
    """TopK-SAE-like codes: K active features per token, with planted pairs that often fire together."""
    gen = torch.Generator().manual_seed(seed)
    pre = torch.randn(N_TOKENS, d_sae, generator=gen)
    for a, b in planted:
        boost = (torch.rand(N_TOKENS, generator=gen) < 0.3) * 5.0
        pre[:, a] += boost
        pre[:, b] += boost
    values, ids = pre.topk(K, dim=1)
    return torch.zeros_like(pre).scatter(1, ids, values.clamp(min=0) + 0.1)


def brute_counts(codes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    fired = ((codes > 0) & valid[:, None]).double()
    return (fired.T @ fired).long()


def feed(acc: CooccurrenceAccumulator, codes: torch.Tensor, valid: torch.Tensor, chunk: int = 64) -> None:
    for lo in range(0, codes.shape[0], chunk):
        acc.update(codes[lo : lo + chunk], valid[lo : lo + chunk])


def test_group_counts_and_jaccard_are_exact() -> None:
    d_sae = 30
    codes = topk_codes(d_sae, planted=((3, 7),))
    valid = torch.rand(N_TOKENS, generator=torch.Generator().manual_seed(9)) > 0.1
    group = [3, 7, 0, 12]
    acc = CooccurrenceAccumulator(d_sae, group=group, partners=0)
    feed(acc, codes, valid)
    counts = brute_counts(codes, valid)
    assert torch.equal(acc.group_counts, counts[group][:, group])
    assert acc.tokens_seen == int(valid.sum())
    jac = acc.group_jaccard()
    i, j = 0, 1
    union = counts[3, 3] + counts[7, 7] - counts[3, 7]
    assert jac[i, j].item() == pytest.approx(counts[3, 7].item() / union.item())
    assert jac[0, 0] == 1.0
    assert jac[0, 1] > jac[0, 2]  # the planted pair is far more related than chance


def test_partners_exact_when_slots_suffice() -> None:
    d_sae = 16
    codes = topk_codes(d_sae, seed=1)
    valid = torch.ones(N_TOKENS, dtype=torch.bool)
    valid[::5] = False
    acc = CooccurrenceAccumulator(d_sae, partners=d_sae, pair_budget=64)  # tiny budget: many sub-chunks
    feed(acc, codes, valid)
    counts = brute_counts(codes, valid)
    fired = counts.diagonal()
    ranked = acc.top_partners("count")
    assert (ranked.error == 0).all()
    for i in range(d_sae):
        got = {int(j): int(c) for j, c in zip(ranked.ids[i], ranked.counts[i], strict=True) if j >= 0}
        expected = {j: int(counts[i, j]) for j in range(d_sae) if j != i and counts[i, j] > 0}
        assert got == expected
        assert (ranked.counts[i, :-1] >= ranked.counts[i, 1:]).all()
    by_jaccard = acc.top_partners("jaccard")
    for i in (0, 5):
        for slot in range(3):
            j = int(by_jaccard.ids[i, slot])
            c = counts[i, j].item()
            assert by_jaccard.jaccard[i, slot].item() == pytest.approx(c / (fired[i] + fired[j] - c).item())
            assert by_jaccard.conditional[i, slot].item() == pytest.approx(c / fired[i].item())
        assert (by_jaccard.jaccard[i, :-1] >= by_jaccard.jaccard[i, 1:]).all()
    rows = acc.partners_of(0, by="conditional", top=3)
    assert [r["id"] for r in rows] == acc.top_partners("conditional").ids[0, :3].tolist()


def test_bounded_partners_keep_heavy_hitters_with_error_bounds() -> None:
    d_sae = 40
    codes = topk_codes(d_sae, seed=2, planted=((0, 1), (2, 3), (4, 5)))
    valid = torch.ones(N_TOKENS, dtype=torch.bool)
    acc = CooccurrenceAccumulator(d_sae, partners=3)
    feed(acc, codes, valid, chunk=50)
    counts = brute_counts(codes, valid)
    ranked = acc.top_partners("count")
    assert (ranked.error > 0).any()  # slots were contested and evicted
    for i in range(d_sae):
        for j, est, err in zip(ranked.ids[i], ranked.counts[i], ranked.error[i], strict=True):
            if j < 0:
                continue
            true = counts[i, j]
            assert est - err <= true <= est
        kept = set(ranked.ids[i].tolist())
        for j in range(d_sae):
            if j != i and counts[i, j] > acc.floor[i]:
                assert j in kept, f"feature {i} lost heavy partner {j}"
    for a, b in ((0, 1), (2, 3), (4, 5)):
        assert ranked.ids[a, 0] == b and ranked.ids[b, 0] == a


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="group must list feature ids"):
        CooccurrenceAccumulator(8, group=[1, 8])
    acc = CooccurrenceAccumulator(8, partners=0)
    with pytest.raises(ValueError, match="d_sae=8"):
        acc.update(torch.zeros(4, 9))
    with pytest.raises(ValueError, match="no feature group"):
        acc.group_jaccard()
    with pytest.raises(ValueError, match="tracks no partners"):
        acc.top_partners()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_keeps_the_bounds() -> None:
    d_sae = 40
    codes = topk_codes(d_sae, seed=3, planted=((0, 1),))
    valid = torch.ones(N_TOKENS, dtype=torch.bool)
    exact = []
    for device in ("cpu", "cuda"):
        acc = CooccurrenceAccumulator(d_sae, group=[0, 1, 2], partners=d_sae, device=device)
        feed(acc, codes.to(device), valid.to(device))
        ranked = acc.top_partners("count")
        real = ranked.ids >= 0
        rows = torch.arange(d_sae)[:, None].expand_as(ranked.ids)[real]
        keys = (rows * d_sae + ranked.ids[real]).tolist()
        table = dict(zip(keys, ranked.counts[real].tolist(), strict=True))
        exact.append((acc.group_counts.cpu(), table))
    assert torch.equal(exact[0][0], exact[1][0]) and exact[0][1] == exact[1][1]
    # with few slots, ties may be broken differently per device, but the error bounds hold on CUDA too
    acc = CooccurrenceAccumulator(d_sae, partners=3, device="cuda")
    feed(acc, codes.cuda(), valid.cuda())
    counts = brute_counts(codes, valid)
    ranked = acc.top_partners("count")
    real = ranked.ids >= 0
    true = counts.gather(1, ranked.ids.clamp(min=0))
    assert ((ranked.counts - ranked.error <= true) & (true <= ranked.counts))[real].all()
