"""FeatureAccumulator against brute force over the full dense code tensor."""

from __future__ import annotations

import pytest
import torch

from mistudio_tui.ml.features.accumulate import FeatureAccumulator, FeatureStats

N_SEQ, SEQ_LEN, D_SAE = 200, 16, 64
CONTEXT = (3, 2)
SEQ_OFFSET = 1000  # sequence indices differ from row numbers, so the test sees which one is stored
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def synthetic(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse non-negative codes of varied scale and density, token ids, a mask without BOS and padding."""
    gen = torch.Generator().manual_seed(seed)
    shift = torch.linspace(0.3, 2.5, D_SAE)  # features from dense to rare
    scale = torch.rand(D_SAE, generator=gen) * 4 + 0.1
    codes = torch.relu(torch.randn(N_SEQ, SEQ_LEN, D_SAE, generator=gen) - shift) * scale
    codes[..., 5] = 0.0  # a dead feature
    codes[..., 9] = 0.0
    codes[3, 4, 9] = 0.7  # a feature that fires exactly once
    token_ids = torch.randint(3, 300, (N_SEQ, SEQ_LEN), generator=gen)
    valid = torch.ones(N_SEQ, SEQ_LEN, dtype=torch.bool)
    valid[:, 0] = False  # BOS
    lengths = torch.randint(SEQ_LEN - 5, SEQ_LEN + 1, (N_SEQ,), generator=gen)
    valid &= torch.arange(SEQ_LEN)[None, :] < lengths[:, None]  # right padding
    return codes, token_ids, valid


def accumulate(
    codes: torch.Tensor,
    token_ids: torch.Tensor,
    valid: torch.Tensor,
    chunk: int = 30,
    device: str = "cpu",
    **kwargs: object,
) -> FeatureStats:
    options: dict = dict(top_k=8, n_quantiles=4, per_quantile=3, context=CONTEXT, hist_bins=32, pad_id=-1)
    options.update(kwargs)
    acc = FeatureAccumulator(D_SAE, device=device, **options)
    for lo in range(0, codes.shape[0], chunk):
        hi = min(lo + chunk, codes.shape[0])
        acc.update(
            codes[lo:hi].to(device),
            token_ids[lo:hi].to(device),
            torch.arange(lo, hi, device=device) + SEQ_OFFSET,
            valid[lo:hi].to(device),
        )
    return acc.finalize()


def firing_values(codes: torch.Tensor, valid: torch.Tensor, feature: int) -> torch.Tensor:
    column = codes[..., feature][valid]
    return column[column > 0]


def check_window(
    stats: FeatureStats,
    codes: torch.Tensor,
    token_ids: torch.Tensor,
    valid: torch.Tensor,
    feature: int,
    value: float,
    sequence: int,
    position: int,
    tokens: torch.Tensor,
    acts: torch.Tensor,
    mask: torch.Tensor,
) -> None:
    """The example's value and window match the dense data at (sequence, position)."""
    row = sequence - SEQ_OFFSET
    assert valid[row, position]
    assert codes[row, position, feature].item() == pytest.approx(value, abs=0)
    before, _after = stats.context
    for w in range(tokens.shape[0]):
        t = position - before + w
        if 0 <= t < SEQ_LEN:
            assert tokens[w] == token_ids[row, t]
            assert mask[w] == valid[row, t]
            expected = codes[row, t, feature].item() if valid[row, t] else 0.0
            assert acts[w].item() == pytest.approx(expected, abs=0)
        else:
            assert tokens[w] == stats.pad_id
            assert not mask[w]
            assert acts[w] == 0


@pytest.mark.parametrize("device", DEVICES)
def test_density_means_max_and_topk_match_brute_force(device: str) -> None:
    codes, token_ids, valid = synthetic()
    stats = accumulate(codes, token_ids, valid, device=device)
    masked = codes * valid[..., None]
    fired = (masked > 0).reshape(-1, D_SAE)
    n_valid = int(valid.sum())
    assert stats.tokens_seen == n_valid
    assert torch.equal(stats.count, fired.sum(0))
    torch.testing.assert_close(stats.density, fired.sum(0).float() / n_valid)
    torch.testing.assert_close(stats.max, masked.reshape(-1, D_SAE).max(0).values)
    torch.testing.assert_close(stats.mean_all, masked.reshape(-1, D_SAE).sum(0) / n_valid)
    assert stats.dead[5] and stats.dead[9].item() is False and int(stats.dead.sum()) == 1

    for f in range(D_SAE):
        values = firing_values(codes, valid, f)
        if values.numel():
            torch.testing.assert_close(stats.mean_nonzero[f], values.mean())
            assert stats.min_nonzero[f] == values.min()
        expected = values.sort(descending=True).values[: stats.top_k]
        n = expected.numel()
        assert torch.equal(stats.top.value[f, :n], expected)  # exact, best first
        assert (stats.top.sequence[f, n:] == -1).all() and (stats.top.value[f, n:] == 0).all()
        for s in range(n):
            check_window(
                stats,
                codes,
                token_ids,
                valid,
                f,
                float(stats.top.value[f, s]),
                int(stats.top.sequence[f, s]),
                int(stats.top.position[f, s]),
                stats.top.tokens[f, s],
                stats.top.acts[f, s],
                stats.top.mask[f, s],
            )


@pytest.mark.parametrize("device", DEVICES)
def test_histogram_counts_every_firing_in_bounded_bins(device: str) -> None:
    codes, token_ids, valid = synthetic(seed=1)
    # growing scale across chunks forces the per-feature range to double and bins to merge
    codes = codes * torch.linspace(0.05, 3.0, N_SEQ)[:, None, None]
    stats = accumulate(codes, token_ids, valid, chunk=20, device=device)
    bins = stats.hist_bins
    for f in range(D_SAE):
        values = firing_values(codes, valid, f)
        if not values.numel():
            assert stats.hist_counts[f].sum() == 0
            continue
        top = stats.hist_max[f]
        assert stats.max[f] <= top < 2 * stats.max[f]
        expected = torch.bincount((values / top * bins).ceil().long().sub(1).clamp(0, bins - 1), minlength=bins)
        assert torch.equal(stats.hist_counts[f], expected)


@pytest.mark.parametrize("device", DEVICES)
def test_quantile_examples_lie_in_equal_mass_bands(device: str) -> None:
    codes, token_ids, valid = synthetic(seed=2)
    stats = accumulate(codes, token_ids, valid, device=device)
    nq, per = stats.n_quantiles, stats.per_quantile
    reservoir = 2 * nq * per
    covered = 0
    for f in range(D_SAE):
        values = firing_values(codes, valid, f)
        edges = stats.quantile_edges[f]
        if not values.numel():
            assert (stats.quantiles.sequence[f] == -1).all()
            continue
        assert edges[0] == values.min() and edges[-1] == values.max()
        assert (edges[1:] >= edges[:-1]).all()
        bin_width = float(stats.hist_max[f]) / stats.hist_bins
        true_edges = torch.quantile(values.double(), torch.linspace(0, 1, nq + 1, dtype=torch.float64))
        assert (edges[1:-1].double() - true_edges[1:-1]).abs().max() <= 2 * bin_width + 1e-6

        seen = set()
        for band in range(nq):
            kept = stats.quantiles.sequence[f, band] >= 0
            band_values = stats.quantiles.value[f, band][kept]
            assert (band_values >= edges[band]).all() and (band_values <= edges[band + 1]).all()
            assert (band_values[1:] <= band_values[:-1]).all()
            for s in kept.nonzero().flatten().tolist():
                key = (int(stats.quantiles.sequence[f, band, s]), int(stats.quantiles.position[f, band, s]))
                assert key not in seen
                seen.add(key)
                check_window(
                    stats,
                    codes,
                    token_ids,
                    valid,
                    f,
                    float(stats.quantiles.value[f, band, s]),
                    *key,
                    stats.quantiles.tokens[f, band, s],
                    stats.quantiles.acts[f, band, s],
                    stats.quantiles.mask[f, band, s],
                )
            in_band = torch.searchsorted(edges[1:-1].contiguous(), values, right=True) == band
            if values.numel() <= reservoir:
                # the reservoir holds every firing, so each band shows as many as it has, up to per_quantile
                assert int(kept.sum()) == min(per, int(in_band.sum()))
            else:
                assert int(kept.sum()) >= 1, f"feature {f} band {band} has no example"
                covered += 1
    assert covered >= nq * 20  # most features fire far more often than the reservoir holds


def test_planted_token_feature_top_examples_are_that_token() -> None:
    codes, token_ids, valid = synthetic(seed=3)
    planted, token = 7, 42
    token_ids[token_ids == token] = 43
    token_ids[::3, 6] = token
    token_ids[1::7, 11] = token
    on_token = token_ids == token
    codes[..., planted] = on_token * (3.0 + torch.rand(N_SEQ, SEQ_LEN))
    stats = accumulate(codes, token_ids, valid, chunk=25, top_k=10)
    before = stats.context[0]
    assert stats.count[planted] == int((on_token & valid).sum())
    assert (stats.top.tokens[planted, :, before] == token).all()
    acts = stats.top.acts[planted]
    assert (acts.argmax(dim=1) == before).all()
    assert (acts[:, before] > 3.0).all()


def test_chunking_does_not_change_the_result() -> None:
    codes, token_ids, valid = synthetic(seed=4)
    one = accumulate(codes, token_ids, valid, chunk=N_SEQ)
    many = accumulate(codes, token_ids, valid, chunk=7)
    for name in ("value", "sequence", "position", "tokens", "acts", "mask"):
        assert torch.equal(getattr(one.top, name), getattr(many.top, name))
    assert torch.equal(one.count, many.count)
    torch.testing.assert_close(one.mean_all, many.mean_all)


def test_excluded_positions_never_count() -> None:
    codes, token_ids, valid = synthetic(seed=5)
    codes[:, 0, :] = 100.0  # huge activations on BOS, which the mask excludes
    stats = accumulate(codes, token_ids, valid)
    assert (stats.max < 100.0).all()
    assert (stats.top.position != 0).all()
    assert stats.tokens_seen == int(valid.sum())


def test_bad_shapes_raise_clear_errors() -> None:
    acc = FeatureAccumulator(D_SAE, context=CONTEXT)
    codes = torch.zeros(2, 4, D_SAE)
    with pytest.raises(ValueError, match="codes must have shape"):
        acc.update(torch.zeros(2, 4, 3), torch.zeros(2, 4), torch.arange(2), torch.ones(2, 4))
    with pytest.raises(ValueError, match="token_ids and valid_mask"):
        acc.update(codes, torch.zeros(2, 5), torch.arange(2), torch.ones(2, 4))
    with pytest.raises(ValueError, match="sequence_index"):
        acc.update(codes, torch.zeros(2, 4), torch.arange(3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="hist_bins"):
        FeatureAccumulator(D_SAE, hist_bins=7)
