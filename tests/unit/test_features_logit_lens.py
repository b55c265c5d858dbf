"""Logit lens of decoder rows against brute force, chunked and unchunked, in every unembedding form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mistudio_tui.ml.features.logit_lens import logit_lens, unembedding_matrix

D_SAE, D_IN, VOCAB, TOP = 37, 12, 50, 5


def weights(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(D_SAE, D_IN, generator=gen), torch.randn(D_IN, VOCAB, generator=gen)


def test_matches_brute_force_top_and_bottom_tokens() -> None:
    W_dec, W_U = weights()
    lens = logit_lens(W_dec, W_U, top=TOP, chunk=8)
    logits = W_dec @ W_U
    order = logits.argsort(dim=1, descending=True)
    assert torch.equal(lens.promoted_ids, order[:, :TOP])
    assert torch.equal(lens.suppressed_ids, order.flip(1)[:, :TOP])
    torch.testing.assert_close(lens.promoted_values, logits.gather(1, order[:, :TOP]))
    torch.testing.assert_close(lens.suppressed_values, logits.gather(1, order.flip(1)[:, :TOP]))
    assert (lens.promoted_values[:, :-1] >= lens.promoted_values[:, 1:]).all()
    assert (lens.suppressed_values[:, :-1] <= lens.suppressed_values[:, 1:]).all()


def test_chunked_equals_unchunked() -> None:
    W_dec, W_U = weights(1)
    whole = logit_lens(W_dec, W_U, top=TOP, chunk=D_SAE)
    for chunk in (1, 5, 16):
        parts = logit_lens(W_dec, W_U, top=TOP, chunk=chunk)
        for a, b in zip(whole, parts, strict=True):
            torch.testing.assert_close(a, b)


def test_norm_weight_scales_the_direction_before_unembedding() -> None:
    W_dec, W_U = weights(2)
    scale = torch.rand(D_IN) * 2
    lens = logit_lens(W_dec, W_U, top=TOP, norm_weight=scale)
    expected = ((W_dec * scale) @ W_U).topk(TOP, dim=1)
    assert torch.equal(lens.promoted_ids, expected.indices)
    plain = logit_lens(W_dec, W_U, top=TOP)
    assert not torch.equal(lens.promoted_ids, plain.promoted_ids)


def test_accepts_linear_layer_and_vocab_first_weight() -> None:
    W_dec, W_U = weights(3)
    head = nn.Linear(D_IN, VOCAB, bias=False)
    with torch.no_grad():
        head.weight.copy_(W_U.T)
    reference = logit_lens(W_dec, W_U, top=TOP)
    for unembed in (head, W_U.T.contiguous()):
        lens = logit_lens(W_dec, unembed, top=TOP)
        assert torch.equal(lens.promoted_ids, reference.promoted_ids)
        assert torch.equal(lens.suppressed_ids, reference.suppressed_ids)
    assert logit_lens(W_dec, W_U, top=VOCAB + 10).promoted_ids.shape == (D_SAE, VOCAB)


def test_bad_shapes_raise() -> None:
    W_dec, _ = weights()
    with pytest.raises(ValueError, match="unembedding has shape"):
        unembedding_matrix(torch.zeros(7, 9), D_IN)
    with pytest.raises(ValueError, match="norm_weight"):
        logit_lens(W_dec, torch.zeros(D_IN, VOCAB), norm_weight=torch.ones(3))
    with pytest.raises(ValueError, match="W_dec"):
        logit_lens(torch.zeros(D_IN), torch.zeros(D_IN, VOCAB))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    W_dec, W_U = weights(4)
    cpu = logit_lens(W_dec, W_U, top=TOP, chunk=8)
    cuda = logit_lens(W_dec.cuda(), W_U, top=TOP, chunk=8)  # W_U follows W_dec's device
    assert torch.equal(cpu.promoted_ids, cuda.promoted_ids.cpu())
    torch.testing.assert_close(cpu.suppressed_values, cuda.suppressed_values.cpu(), atol=1e-4, rtol=1e-4)
