"""The 2-D decoder map: PCA fallback geometry and clear errors."""

from __future__ import annotations

import pytest
import torch

from mistudio_tui.ml.analysis.decoder_map import decoder_map, umap_available


def test_pca_map_separates_two_clusters_of_directions() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, generator=gen), torch.randn(16, generator=gen)
    rows = torch.cat([a + 0.05 * torch.randn(10, 16, generator=gen), b + 0.05 * torch.randn(10, 16, generator=gen)])
    coords, method = decoder_map(rows * torch.rand(20, 1, generator=gen) * 5, method="pca")
    assert method == "pca" and coords.shape == (20, 2)
    first, second = coords[:10, 0], coords[10:, 0]
    assert (first.max() < second.min()) or (second.max() < first.min())  # the first component splits them


def test_map_errors() -> None:
    with pytest.raises(ValueError, match="map method 'tsne'"):
        decoder_map(torch.randn(5, 4), method="tsne")
    with pytest.raises(ValueError, match="W_dec must have shape"):
        decoder_map(torch.randn(2, 4))
    if not umap_available():
        with pytest.raises(ValueError, match="pip install umap-learn"):
            decoder_map(torch.randn(5, 4), method="umap")
        assert decoder_map(torch.randn(5, 4))[1] == "pca"
