"""Similar features by decoder cosine against a brute-force cosine matrix."""

from __future__ import annotations

import pytest
import torch

from mistudio_tui.ml.features.similarity import nearest_to, similar_by_decoder

D_SAE, D_IN, TOP = 45, 10, 6


def decoder(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(D_SAE, D_IN, generator=gen) * (torch.rand(D_SAE, 1, generator=gen) + 0.1)


def brute_cosine(W: torch.Tensor) -> torch.Tensor:
    unit = W / W.norm(dim=1, keepdim=True)
    return unit @ unit.T


def test_matches_brute_force_and_excludes_itself() -> None:
    W = decoder()
    result = similar_by_decoder(W, top=TOP, chunk=7)
    cos = brute_cosine(W)
    cos.fill_diagonal_(float("-inf"))
    expected = cos.topk(TOP, dim=1)
    assert torch.equal(result.ids, expected.indices)
    torch.testing.assert_close(result.cos, expected.values)
    assert not (result.ids == torch.arange(D_SAE)[:, None]).any()


def test_chunked_equals_unchunked() -> None:
    W = decoder(1)
    whole = similar_by_decoder(W, top=TOP, chunk=D_SAE)
    for chunk in (1, 4, 30):
        part = similar_by_decoder(W, top=TOP, chunk=chunk)
        assert torch.equal(whole.ids, part.ids)
        torch.testing.assert_close(whole.cos, part.cos)


def test_planted_duplicate_is_most_similar() -> None:
    W = decoder(2)
    W[11] = 3.0 * W[30]  # same direction, other norm
    result = similar_by_decoder(W, top=TOP)
    assert result.ids[11, 0] == 30 and result.ids[30, 0] == 11
    torch.testing.assert_close(result.cos[11, 0], torch.tensor(1.0))


def test_nearest_to_a_direction() -> None:
    W = decoder(3)
    hit = nearest_to(W[17] * 0.5, W, top=3)
    assert hit.ids[0] == 17
    expected = brute_cosine(torch.cat([W[17:18], W]))[0, 1:].topk(3)
    assert torch.equal(hit.ids, expected.indices)
    batch = nearest_to(W[[2, 9]], W, top=4)
    assert batch.ids.shape == (2, 4) and batch.ids[:, 0].tolist() == [2, 9]
    with pytest.raises(ValueError, match="direction must have shape"):
        nearest_to(torch.zeros(D_IN + 1), W)


def test_zero_rows_do_not_break_it() -> None:
    W = decoder(4)
    W[3] = 0.0
    result = similar_by_decoder(W, top=TOP)
    assert torch.isfinite(result.cos).all()
    assert (result.cos[3] == 0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    W = decoder(5)
    cpu = similar_by_decoder(W, top=TOP, chunk=8)
    cuda = similar_by_decoder(W.cuda(), top=TOP, chunk=8)
    assert torch.equal(cpu.ids, cuda.ids.cpu())
    torch.testing.assert_close(cpu.cos, cuda.cos.cpu(), atol=1e-5, rtol=1e-5)
