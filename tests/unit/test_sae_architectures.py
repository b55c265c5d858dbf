"""SAE architectures: hand-computed loss terms, inference semantics, sparse kernels vs dense autograd."""

from __future__ import annotations

import math

import pytest
import torch

from mistudio_tui.ml.sae.architectures import (
    BatchTopKSAE,
    JumpReLUSAE,
    MatryoshkaSAE,
    StandardSAE,
    TopKSAE,
    create_sae,
)
from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig
from mistudio_tui.ml.sae.dense_ops import auxk_codes, batch_topk_codes, column_counts, float_counts
from mistudio_tui.ml.sae.sparse_ops import (
    SparseCodes,
    row_dots_gather,
    row_dots_sddmm,
    select_batch_topk,
    select_topk,
    sparse_decode,
    sparse_encode,
)


def _set(sae: torch.nn.Module, **tensors: list) -> None:
    with torch.no_grad():
        for name, value in tensors.items():
            getattr(sae, name).copy_(torch.tensor(value, dtype=torch.float32))


S = 1 / math.sqrt(2)


def test_standard_loss_terms_by_hand() -> None:
    sae = StandardSAE(SAEConfig(d_in=2, d_sae=2, architecture="standard"))
    _set(sae, W_enc=[[1, 0], [0, 1]], W_dec=[[2, 0], [0, 1]], b_enc=[0, 0], b_dec=[0, 0])
    x = torch.tensor([[1.0, -1.0], [3.0, 2.0]])
    out = sae.loss(x, sparsity_coefficient=0.5)
    # token 1: codes [1, 0], x_hat [2, 0], squared error 1 + 1 = 2, decoder-norm-weighted L1 = 1 * 2 = 2
    # token 2: codes [3, 2], x_hat [6, 2], squared error 9, weighted L1 = 3 * 2 + 2 * 1 = 8
    assert out.mse.item() == pytest.approx((2 + 9) / 2)
    assert out.sparsity.item() == pytest.approx(0.5 * (2 + 8) / 2)
    assert out.total.item() == pytest.approx(5.5 + 2.5)
    assert out.l0.item() == pytest.approx(1.5)
    assert out.l1.item() == pytest.approx((1 + 5) / 2)
    assert out.aux.item() == 0.0
    assert out.fired.tolist() == [2, 1]


def test_standard_subtracts_b_dec_only_when_asked() -> None:
    x = torch.tensor([[1.0, -1.0]])
    for apply, expected_mse in ((True, 1.0), (False, 2.0)):
        sae = StandardSAE(SAEConfig(d_in=2, d_sae=2, architecture="standard", apply_b_dec_to_input=apply))
        _set(sae, W_enc=[[1, 0], [0, 1]], W_dec=[[1, 0], [0, 1]], b_enc=[0, 0], b_dec=[1, 0])
        # apply: pre = x - b_dec = [0, -1] -> codes 0, x_hat = b_dec = [1, 0]: error (0)^2 + (1)^2 = 1
        # not applied: pre = [1, -1] -> codes [1, 0], x_hat = [2, 0]: error 1 + 1 = 2
        assert sae.loss(x, 0.0).mse.item() == pytest.approx(expected_mse)


def _topk_sae(cls: type, k: int = 1) -> TopKSAE:
    sae = cls(SAEConfig(d_in=2, d_sae=3, k=k, aux_k=1, architecture=cls.architecture))
    _set(sae, W_enc=[[1, 0, 1], [0, 1, 1]], W_dec=[[1, 0], [0, 1], [S, S]], b_enc=[0, 0, 0], b_dec=[0, 0])
    return sae


@pytest.mark.parametrize("sparse", [True, False])
def test_topk_loss_terms_and_auxk_by_hand(sparse: bool) -> None:
    sae = _topk_sae(TopKSAE)
    sae.use_sparse_kernels = sparse
    x = torch.tensor([[2.0, 1.0]])
    # pre = [2, 1, 3]: latent 2 wins with 3, x_hat = 3 * [s, s]
    mse = (3 * S - 2) ** 2 + (3 * S - 1) ** 2
    out = sae.loss(x)
    assert out.mse.item() == pytest.approx(mse, rel=1e-5)
    assert out.aux.item() == 0.0 and out.total.item() == pytest.approx(mse, rel=1e-5)
    assert out.l0.item() == 1.0 and out.l1.item() == pytest.approx(3.0)
    assert out.fired.tolist() == [0, 0, 1]
    # latent 0 dead: AuxK reconstructs the residual x - x_hat with its pre-activation 2 along [1, 0]
    out = sae.loss(x, dead_mask=torch.tensor([True, False, False]))
    residual = (2 - 3 * S, 1 - 3 * S)
    aux = (2 - residual[0]) ** 2 + (0 - residual[1]) ** 2  # scale min(1 dead / aux_k 1, 1) = 1
    assert out.aux.item() == pytest.approx(aux, rel=1e-5)
    assert out.total.item() == pytest.approx(mse + aux / 32, rel=1e-5)


@pytest.mark.parametrize("sparse", [True, False])
def test_batch_topk_loss_terms_and_threshold_by_hand(sparse: bool) -> None:
    sae = _topk_sae(BatchTopKSAE)
    sae.use_sparse_kernels = sparse
    x = torch.tensor([[2.0, 1.0], [0.5, 0.0]])
    # pre rows [2, 1, 3] and [0.5, 0, 0.5]; k * batch = 2 picks 3 and 2, both in row 1
    err_1 = (2 + 3 * S - 2) ** 2 + (3 * S - 1) ** 2
    err_2 = 0.5**2  # row 2 gets no latent: x_hat = b_dec = 0
    out = sae.loss(x)
    assert out.mse.item() == pytest.approx((err_1 + err_2) / 2, rel=1e-5)
    assert out.l0.item() == pytest.approx(1.0)
    assert out.fired.tolist() == [1, 0, 1]
    assert sae.threshold.tolist() == pytest.approx([2.0, 2.0, 2.0])  # the smallest kept activation
    # inference runs as JumpReLU with that threshold: row 1 keeps 3 (> 2) only, row 2 keeps nothing
    codes = sae.eval().encode(x)
    torch.testing.assert_close(codes, torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 0.0]]))


@pytest.mark.parametrize("sparse", [True, False])
def test_batch_topk_selects_per_row_in_its_topk_phase_and_batch_wide_after(sparse: bool) -> None:
    sae = _topk_sae(BatchTopKSAE)
    sae.use_sparse_kernels = sparse
    x = torch.tensor([[2.0, 1.0], [0.5, 0.1]])  # pre rows [2, 1, 3] and [0.5, 0.1, 0.6]
    sae.start_step(4, 10)  # the first half: every row keeps its own largest (latent 2 in both)
    assert sae.loss(x).fired.tolist() == [0, 0, 2]
    assert int(sae.threshold_updates) == 0  # the inference threshold is learned from batch-wide cuts only
    sae.start_step(5, 10)  # then the batch's 2 largest, 3 and 2, both in row 1
    assert sae.loss(x).fired.tolist() == [1, 0, 1]
    assert sae.threshold.tolist() == pytest.approx([2.0] * 3)
    sae.start_step(0, 1)  # a one-step run is batch-wide, so it still learns a threshold
    assert sae.batch_topk


def test_batch_topk_threshold_is_calibrated_to_the_mean_cut_of_the_given_batches() -> None:
    sae = _topk_sae(BatchTopKSAE)
    batches = [
        torch.tensor([[2.0, 1.0], [0.5, 0.1]]),  # the 2 largest pre-activations are 3 and 2: cut 2
        torch.tensor([[1.0, 0.0], [0.0, 0.0]]),  # pre [1, 0, 1] and zeros: cut 1
        -torch.ones(2, 2),  # nothing positive: skipped
    ]
    sae.calibrate_threshold(batches)
    assert sae.threshold.tolist() == pytest.approx([1.5] * 3)


def test_jumprelu_loss_terms_and_threshold_gradient_by_hand() -> None:
    cfg = SAEConfig(d_in=2, d_sae=2, architecture="jumprelu", jumprelu_bandwidth=2.0, jumprelu_pre_act_coefficient=0)
    sae = JumpReLUSAE(cfg)
    _set(sae, W_enc=[[1, 0], [0, 1]], W_dec=[[1, 0], [0, 1]], b_enc=[0, 0], b_dec=[0, 0], threshold=[0.5, 2.0])
    x = torch.tensor([[1.0, 1.5]])
    out = sae.loss(x, sparsity_coefficient=0.3)
    # pre [1, 1.5] vs thresholds [0.5, 2]: codes [1, 0], x_hat [1, 0], error 1.5^2, L0 = 1
    assert out.mse.item() == pytest.approx(2.25)
    assert out.sparsity.item() == pytest.approx(0.3)
    assert out.total.item() == pytest.approx(2.55)
    out.total.backward()
    # (pre - threshold) / bandwidth = [0.25, -0.25], inside the rectangle for both latents.
    # latent 0: dL/dcode = 0 (exact reconstruction); L0 term gives -(1/2) * 0.3 = -0.15
    # latent 1: dL/dcode = 2 * (0 - 1.5) = -3, jump term -(2/2) * (-3) = 3; plus the L0 term -0.15
    assert sae.threshold.grad.tolist() == pytest.approx([-0.15, 2.85])


def test_jumprelu_pre_activation_loss_gives_a_dead_latent_a_way_back() -> None:
    """A latent below its threshold on every row gets no gradient from the MSE or the L0 term; the pre-activation
    loss pulls its pre-activations up toward the threshold (weighted by its decoder norm)."""
    for coefficient in (0.0, 0.5):
        cfg = SAEConfig(d_in=2, d_sae=2, architecture="jumprelu", jumprelu_pre_act_coefficient=coefficient)
        sae = JumpReLUSAE(cfg)
        _set(sae, W_enc=[[1, 0], [0, 1]], W_dec=[[1, 0], [0, 2]], b_enc=[0, 0], b_dec=[0, 0], threshold=[0.5, 3.0])
        out = sae.loss(torch.tensor([[1.0, 1.5], [1.0, 1.0]]), sparsity_coefficient=0.3)
        out.total.backward()
        # latent 1 is dead (pre 1.5 and 1 < 3): the loss is 0.5 * mean(relu(3 - pre)) * ||W_dec_1|| = 0.5 * 1.75 * 2
        assert out.sparsity.item() == pytest.approx(0.3 + coefficient * 1.75 * 2)
        assert sae.b_enc.grad[1].item() == pytest.approx(-coefficient * 2)


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "matryoshka"])
@pytest.mark.parametrize("variant", ["b_dec_subtracted", "plain", "skip_transcoder"])
def test_sparse_kernels_match_dense_autograd(architecture: str, variant: str, device: str) -> None:
    torch.manual_seed(0)
    extra: dict = {"matryoshka_widths": [5, 13, 40]} if architecture == "matryoshka" else {}
    if variant == "skip_transcoder":  # rows are [input (12) | target (7)]
        extra.update(d_out=7, skip_connection=True)
    cfg = SAEConfig(
        d_in=12, d_sae=40, k=3, aux_k=5, architecture=architecture,
        apply_b_dec_to_input=variant == "b_dec_subtracted", **extra,
    )  # fmt: skip
    sae = create_sae(cfg).to(device)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(0, 0.1)
        if sae.W_skip is not None:
            sae.W_skip.normal_()
    x = torch.randn(24, cfg.row_width, device=device)
    dead = torch.zeros(40, dtype=torch.bool, device=device)
    dead[::3] = True
    results = {}
    for sparse in (True, False):
        sae.use_sparse_kernels = sparse
        sae.zero_grad()
        out = sae.loss(x, dead_mask=dead)
        out.total.backward()
        results[sparse] = (out.terms(), {n: p.grad.clone() for n, p in sae.named_parameters()})
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-5)
    assert results[True][0]["aux"] > 0
    for name, grad in results[True][1].items():
        torch.testing.assert_close(grad, results[False][1][name], rtol=1e-4, atol=1e-5)


def test_sparse_encode_input_gradient_matches_dense() -> None:
    torch.manual_seed(1)
    x = torch.randn(6, 5, requires_grad=True)
    W_enc, b_enc, b_dec = torch.randn(5, 9), torch.randn(9), torch.randn(5)
    W_dec = torch.randn(9, 5)
    main, _ = sparse_encode(x, W_enc, b_enc, b_dec, k=2)
    (sparse_decode(main, W_dec) ** 2).sum().backward()
    grad_sparse = x.grad.clone()
    x.grad = None
    pre = (x - b_dec) @ W_enc + b_enc
    values, index = pre.topk(2, dim=-1)
    codes = torch.zeros_like(pre).scatter(-1, index, values.relu())
    ((codes @ W_dec) ** 2).sum().backward()
    torch.testing.assert_close(grad_sparse, x.grad)


def test_batch_topk_selection_is_exact_even_when_one_row_dominates() -> None:
    torch.manual_seed(2)
    pre = torch.randn(16, 64)
    pre[3] += 100.0  # row 3 holds the whole global top 16, more than the 4k candidates kept per row
    for matrix in (pre, torch.randn(16, 64)):
        crow, cols, values = select_batch_topk(matrix, k=1)
        rows = torch.repeat_interleave(torch.arange(16), crow.diff())
        expected = set(matrix.flatten().topk(16).indices.tolist())
        assert set((rows * 64 + cols).tolist()) == expected
        assert torch.equal(values, matrix[rows, cols])


def test_topk_selection_sorted_csr() -> None:
    pre = torch.randn(5, 20)
    crow, cols, values = select_topk(pre, 4)
    assert crow.tolist() == [0, 4, 8, 12, 16, 20]
    per_row = cols.view(5, 4)
    assert torch.equal(per_row, per_row.sort(dim=-1).values)
    assert torch.equal(values.view(5, 4).sort(dim=-1).values, pre.topk(4).values.sort(dim=-1).values)


@pytest.mark.parametrize("architecture", ["standard", "topk", "batchtopk", "jumprelu", "matryoshka"])
def test_encode_decode_accept_any_leading_shape(architecture: str) -> None:
    sae = create_sae(SAEConfig(d_in=8, d_sae=16, k=3, architecture=architecture), torch.Generator().manual_seed(0))
    x = torch.randn(2, 3, 8)
    codes = sae.encode(x)
    assert codes.shape == (2, 3, 16)
    torch.testing.assert_close(codes.reshape(6, 16), sae.encode(x.reshape(6, 8)))
    assert sae.decode(codes).shape == (2, 3, 8)
    torch.testing.assert_close(sae(x), sae.decode(codes))
    if architecture == "topk":
        assert int((codes > 0).sum(-1).max()) <= 3


def test_unit_norm_decoder_projection_and_renormalisation() -> None:
    sae = create_sae(SAEConfig(d_in=8, d_sae=16, k=2), torch.Generator().manual_seed(0))
    sae.W_dec.grad = torch.randn(16, 8)
    sae.before_optimizer_step()
    parallel = (sae.W_dec.grad * sae.W_dec).sum(dim=1)
    assert parallel.abs().max() < 1e-5
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    sae.after_optimizer_step()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(16))


def test_jumprelu_threshold_stays_fp32_when_the_sae_is_cast() -> None:
    sae = create_sae(SAEConfig(d_in=8, d_sae=16, architecture="jumprelu"))
    sae.to(torch.bfloat16)
    assert sae.W_enc.dtype == torch.bfloat16
    assert sae.threshold.dtype == torch.float32
    assert sae.encode(torch.randn(4, 8, dtype=torch.bfloat16)).shape == (4, 16)


def test_standard_sae_starts_with_small_decoder_and_tied_encoder() -> None:
    sae = create_sae(SAEConfig(d_in=8, d_sae=16, architecture="standard", decoder_init_norm=0.1))
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.full((16,), 0.1))
    torch.testing.assert_close(sae.W_enc, sae.W_dec.t())


@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "jumprelu"])
def test_data_init_gives_every_latent_the_same_starting_firing_rate(architecture: str) -> None:
    # Anisotropic data: without the b_enc init, latents aligned with the big directions win every TopK slot.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 8, generator=gen) * torch.tensor([20.0, 10.0, 1, 1, 1, 1, 1, 1]) + 3.0
    sae = create_sae(SAEConfig(d_in=8, d_sae=40, k=4, architecture=architecture), gen)
    with torch.no_grad():
        sae.b_dec.copy_(x.mean(0))
    sae.initialize_from_batch(x)
    gate = sae.threshold if architecture == "jumprelu" else 0.0
    rates = (sae.pre_activations(x) > gate).float().mean(0)
    torch.testing.assert_close(rates, torch.full((40,), 4 / 40), atol=1.5 / 4000, rtol=0)
    if architecture == "topk":
        fired = torch.count_nonzero(sae.encode(x), dim=0)
        assert bool((fired > 0).all())  # every latent takes part in the TopK from the start


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="architecture 'gated'"):
        SAEConfig(d_in=8, architecture="gated")
    with pytest.raises(ValueError, match="d_in"):
        SAEConfig(d_in=0)
    with pytest.raises(ValueError, match="k must be between 1 and d_sae=16"):
        SAEConfig(d_in=8, d_sae=16, k=17)
    with pytest.raises(ValueError, match="lr_decay 'exp'"):
        TrainConfig(lr_decay="exp")
    with pytest.raises(ValueError, match=r"unknown field.*bogus"):
        TrainConfig.from_dict({"bogus": 1})
    assert SAEConfig(d_in=8).d_sae == 64
    assert TrainConfig(dtype="bfloat16").dtype == "bf16"
    assert TrainConfig.from_dict(TrainConfig(lr=1e-3).to_dict()) == TrainConfig(lr=1e-3)


def test_both_sampled_product_kernels_agree() -> None:
    torch.manual_seed(3)
    pre = torch.randn(7, 30)
    crow, cols, _ = select_batch_topk(pre, 3)
    left, right = torch.randn(7, 5), torch.randn(30, 5)
    rows = torch.repeat_interleave(torch.arange(7), crow.diff())
    expected = (left[rows] * right[cols]).sum(-1)
    torch.testing.assert_close(row_dots_sddmm(crow, cols, left, right), expected)
    torch.testing.assert_close(row_dots_gather(crow, cols, left, right), expected)


def test_dense_batch_topk_is_exact_or_a_superset_when_one_row_dominates() -> None:
    torch.manual_seed(3)
    for boost in (0.0, 100.0):  # with the boost, row 3 holds all 16 of the batch's top values (> 4k candidates)
        pre = torch.randn(16, 64)
        pre[3] += boost
        codes, top, fired = batch_topk_codes(pre, k=1)
        expected = set(pre.relu().flatten().topk(16).indices.tolist())
        kept = set(codes.flatten().nonzero().squeeze(1).tolist())
        assert expected <= kept
        assert torch.equal(fired, torch.count_nonzero(codes, dim=0))
        if boost == 0.0:
            assert kept == expected
            assert torch.equal(top.sort().values, pre.flatten().topk(16).values.relu().sort().values)


def test_dense_batch_topk_keeps_only_positive_values_when_fewer_than_k_n_are() -> None:
    pre = torch.full((4, 8), -1.0)
    pre[0, 2], pre[2, 5] = 3.0, 0.5  # two positive values, k * n = 8 slots
    codes, top, fired = batch_topk_codes(pre, k=2)
    assert codes.nonzero().tolist() == [[0, 2], [2, 5]]
    assert codes[0, 2] == 3.0 and codes[2, 5] == 0.5
    assert fired.tolist() == [0, 0, 1, 0, 0, 1, 0, 0]
    assert sorted(top.tolist())[-2:] == [0.5, 3.0] and top.min() == 0.0


def test_dense_auxk_codes_pick_only_dead_latents_and_are_zero_without_any() -> None:
    pre = torch.tensor([[3.0, -1.0, 2.0, 0.5], [1.0, 4.0, -2.0, 0.1]])
    dead = torch.tensor([False, True, True, False])
    codes = auxk_codes(pre, dead, aux_k=1)
    torch.testing.assert_close(codes, torch.tensor([[0.0, 0.0, 2.0, 0.0], [0.0, 4.0, 0.0, 0.0]]))
    assert not auxk_codes(pre, torch.zeros(4, dtype=torch.bool), aux_k=2).any()


def test_batch_topk_threshold_ignores_batches_without_positive_values() -> None:
    sae = _topk_sae(BatchTopKSAE)
    sae._update_threshold(torch.tensor([0.0, 0.0]))
    assert sae.threshold.tolist() == [0.0, 0.0, 0.0] and int(sae.threshold_updates) == 0
    sae._update_threshold(torch.tensor([0.0, 2.0, 5.0]))
    assert sae.threshold.tolist() == pytest.approx([2.0] * 3) and int(sae.threshold_updates) == 1
    sae._update_threshold(torch.tensor([4.0]))
    assert sae.threshold.tolist() == pytest.approx([2.0 * 0.99 + 4.0 * 0.01] * 3)


@pytest.mark.parametrize("architecture", ["standard", "topk", "batchtopk", "jumprelu", "matryoshka"])
def test_dense_losses_under_bf16_autocast_stay_close_to_fp32(architecture: str) -> None:
    torch.manual_seed(4)
    sae = create_sae(SAEConfig(d_in=16, d_sae=64, k=4, architecture=architecture))
    sae.use_sparse_kernels = False
    x = torch.randn(32, 16)
    full = sae.loss(x, dead_mask=torch.ones(64, dtype=torch.bool))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = sae.loss(x, dead_mask=torch.ones(64, dtype=torch.bool))
    half.total.backward()
    assert half.total.dtype == torch.float32
    assert half.mse.item() == pytest.approx(full.mse.item(), rel=0.05)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in sae.parameters())


def test_topk_encode_reuses_no_input_and_keeps_gradients_when_asked() -> None:
    torch.manual_seed(5)
    sae = create_sae(SAEConfig(d_in=8, d_sae=32, k=3, architecture="topk"))
    x = torch.randn(6, 8)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    values, index = pre.topk(3, dim=-1)
    expected = torch.zeros_like(pre).scatter(-1, index, values.relu())
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), expected)  # codes written into the pre-activations' memory
    codes = sae.encode(x)  # with autograd: a fresh tensor, gradients reach the encoder
    codes.sum().backward()
    torch.testing.assert_close(codes.detach(), expected.detach())
    assert sae.W_enc.grad is not None and sae.W_enc.grad.abs().sum() > 0


def test_float_column_counts_are_exact() -> None:
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(3000, 7, generator=gen) < torch.linspace(0, 1, 7)
    mask[:, 0] = False
    mask[:, 6] = True
    expected = torch.count_nonzero(mask, dim=0)
    values = (torch.rand(3000, 7, generator=gen) + 0.1) * mask  # non-negative codes, active where the mask is set
    for active in (mask, values, values.to(torch.bfloat16)):
        assert torch.equal(float_counts(active), expected) and float_counts(active).dtype == torch.int64
        assert torch.equal(column_counts(active), expected)
    assert float_counts(mask).tolist()[0] == 0 and float_counts(mask).tolist()[6] == 3000


def test_matryoshka_loss_sums_the_squared_errors_of_every_prefix() -> None:
    sae = MatryoshkaSAE(SAEConfig(d_in=2, d_sae=3, k=2, architecture="matryoshka", matryoshka_widths=[1, 2]))
    _set(sae, W_enc=[[1, 0, S], [0, 1, S]], W_dec=[[1, 0], [0, 1], [S, S]], b_enc=[0, 0, 0], b_dec=[0, 0])
    assert sae.cfg.matryoshka_widths == [1, 2, 3]  # d_sae is always the last level
    x = torch.tensor([[2.0, 1.0], [0.0, 0.5]])
    for sparse in (True, False):
        sae.use_sparse_kernels = sparse
        out = sae.loss(x)
        # pre-activations [[2, 1, 3 S], [0, .5, .5 S]]: BatchTopK keeps the 4 largest, 3S, 2, 1, .5
        codes = torch.tensor([[2.0, 1.0, 3 * S], [0.0, 0.5, 0.0]])
        errors = [((x - codes[:, :w] @ sae.W_dec[:w]) ** 2).sum() / 2 for w in (1, 2, 3)]
        assert out.mse.item() == pytest.approx(errors[2].item(), rel=1e-6)
        assert out.total.item() == pytest.approx(sum(e.item() for e in errors), rel=1e-6)
        torch.testing.assert_close(out.x_hat, codes @ sae.W_dec.detach())


def test_matryoshka_widths_default_to_doubling_and_are_checked() -> None:
    assert SAEConfig(d_in=8, d_sae=64, architecture="matryoshka").matryoshka_widths == [4, 8, 16, 32, 64]
    assert SAEConfig(d_in=8, d_sae=64, architecture="matryoshka", matryoshka_widths=[8, 64]).matryoshka_widths == [
        8,
        64,
    ]
    cfg = SAEConfig(d_in=8, d_sae=64, architecture="matryoshka", matryoshka_widths=[16, 32])
    assert SAEConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="matryoshka_widths must increase strictly"):
        SAEConfig(d_in=8, d_sae=64, architecture="matryoshka", matryoshka_widths=[32, 16])
    with pytest.raises(ValueError, match="matryoshka_widths must increase strictly"):
        SAEConfig(d_in=8, d_sae=64, architecture="matryoshka", matryoshka_widths=[8, 128])
    with pytest.raises(ValueError, match="matryoshka_widths applies to the matryoshka architecture only"):
        SAEConfig(d_in=8, d_sae=64, architecture="batchtopk", matryoshka_widths=[8])


def test_sparse_codes_column_range_keeps_csr_order() -> None:
    pre = torch.randn(6, 20, generator=torch.Generator().manual_seed(6))
    codes = SparseCodes(*select_topk(pre, 5), n_cols=20)
    dense = codes.to_dense()
    for start, end in ((0, 7), (7, 20), (3, 4)):
        part = codes.columns(start, end)
        expected = torch.zeros_like(dense)
        expected[:, start:end] = dense[:, start:end]
        torch.testing.assert_close(part.to_dense(), expected)
        assert part.crow[-1] == part.cols.numel()
