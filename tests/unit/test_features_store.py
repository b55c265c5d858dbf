"""Feature-set store: round trip, lazy torch-free reader, clear errors for broken folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mistudio_tui.ml.features.accumulate import FeatureAccumulator, FeatureStats
from mistudio_tui.ml.features.cooccurrence import CooccurrenceAccumulator
from mistudio_tui.ml.features.logit_lens import logit_lens
from mistudio_tui.ml.features.similarity import similar_by_decoder
from mistudio_tui.ml.features.store import (
    FEATURES_FILE,
    META_FILE,
    FeatureSetError,
    FeatureSetReader,
    FeatureSetWriter,
)

D_SAE, D_IN, VOCAB = 24, 8, 40
REPO = Path(__file__).resolve().parents[2]


def make_stats(seed: int = 0) -> tuple[FeatureStats, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    codes = torch.relu(torch.randn(30, 10, D_SAE, generator=gen) - torch.linspace(0.5, 2.5, D_SAE))
    codes[..., 4] = 0.0
    token_ids = torch.randint(0, VOCAB, (30, 10), generator=gen)
    valid = torch.ones(30, 10, dtype=torch.bool)
    valid[:, 0] = False
    acc = FeatureAccumulator(D_SAE, top_k=6, n_quantiles=3, per_quantile=2, context=(2, 1), hist_bins=16)
    acc.update(codes, token_ids, torch.arange(30), valid)
    return acc.finalize(dead_density=0.01), codes


def write_full(folder: Path, seed: int = 0) -> tuple[FeatureStats, dict]:
    stats, codes = make_stats(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    W_dec = torch.randn(D_SAE, D_IN, generator=gen)
    lens = logit_lens(W_dec, torch.randn(D_IN, VOCAB, generator=gen), top=4)
    similar = similar_by_decoder(W_dec, top=3)
    cooc = CooccurrenceAccumulator(D_SAE, partners=5)
    cooc.update(codes)
    partners = cooc.top_partners()
    FeatureSetWriter(folder).write(
        stats, {"sae": "demo", "hook": "blocks.1"}, logit_lens=lens, similar=similar, partners=partners
    )
    return stats, {"lens": lens, "similar": similar, "partners": partners}


def test_round_trip_feature_detail(tmp_path: Path) -> None:
    stats, extra = write_full(tmp_path / "fs")
    with FeatureSetReader(tmp_path / "fs") as reader:
        assert len(reader) == D_SAE
        assert reader.meta["extra"] == {"sae": "demo", "hook": "blocks.1"}
        assert reader.meta["tokens_seen"] == stats.tokens_seen
        for i in (0, 4, D_SAE - 1):
            detail = reader.feature(i)
            assert detail.index == i
            assert detail.count == int(stats.count[i])
            assert detail.density == pytest.approx(float(stats.density[i]))
            assert detail.max == pytest.approx(float(stats.max[i]))
            assert detail.mean_nonzero == pytest.approx(float(stats.mean_nonzero[i]))
            assert detail.dead == bool(stats.dead[i])
            n_top = int((stats.top.sequence[i] >= 0).sum())
            assert len(detail.top_examples) == n_top
            for s, ex in enumerate(detail.top_examples):
                assert ex.value == pytest.approx(float(stats.top.value[i, s]))
                assert ex.sequence == int(stats.top.sequence[i, s])
                assert ex.position == int(stats.top.position[i, s])
                assert ex.marked == stats.context[0]
                np.testing.assert_array_equal(ex.token_ids, stats.top.tokens[i, s].numpy())
                np.testing.assert_allclose(ex.activations, stats.top.acts[i, s].numpy())
                np.testing.assert_array_equal(ex.mask, stats.top.mask[i, s].numpy())
            assert len(detail.quantile_bands) == stats.n_quantiles
            for b, band in enumerate(detail.quantile_bands):
                assert band.low == pytest.approx(float(stats.quantile_edges[i, b]))
                assert band.high == pytest.approx(float(stats.quantile_edges[i, b + 1]))
                assert len(band.examples) == int((stats.quantiles.sequence[i, b] >= 0).sum())
                assert all(band.low <= ex.value <= band.high for ex in band.examples)
            np.testing.assert_array_equal(detail.hist_counts, stats.hist_counts[i].numpy())
            assert detail.hist_edges[-1] == pytest.approx(float(stats.hist_max[i]))
            np.testing.assert_array_equal(detail.promoted_ids, extra["lens"].promoted_ids[i].numpy())
            np.testing.assert_allclose(detail.suppressed_values, extra["lens"].suppressed_values[i].numpy())
            np.testing.assert_array_equal(detail.similar_ids, extra["similar"].ids[i].numpy())
            np.testing.assert_array_equal(detail.partner_ids, extra["partners"].ids[i].numpy())
        assert reader.feature(4).dead and reader.feature(4).top_examples == []
        np.testing.assert_allclose(reader.column("density"), stats.density.numpy())


def test_summary_table_rows(tmp_path: Path) -> None:
    stats, _ = write_full(tmp_path / "fs")
    rows = list(FeatureSetReader(tmp_path / "fs").summary_table(chunk=5))
    assert [r["index"] for r in rows] == list(range(D_SAE))
    before = stats.context[0]
    for r in rows:
        i = r["index"]
        assert r["density"] == pytest.approx(float(stats.density[i]))
        assert r["max"] == pytest.approx(float(stats.max[i]))
        assert r["dead"] == bool(stats.dead[i])
        kept = stats.top.sequence[i] >= 0
        assert r["top_token_ids"] == stats.top.tokens[i, :, before][kept].tolist()


def test_without_optional_results(tmp_path: Path) -> None:
    stats, _ = make_stats()
    FeatureSetWriter(tmp_path / "plain").write(stats)
    detail = FeatureSetReader(tmp_path / "plain").feature(1)
    assert detail.promoted_ids is None and detail.similar_ids is None and detail.partner_ids is None
    with pytest.raises(ValueError, match="no array 'similar_ids'"):
        FeatureSetReader(tmp_path / "plain").column("similar_ids")


def test_reader_imports_no_torch(tmp_path: Path) -> None:
    write_full(tmp_path / "fs")
    script = (
        "import sys\n"
        "from mistudio_tui.ml.features.store import FeatureSetReader\n"
        f"r = FeatureSetReader({str(tmp_path / 'fs')!r})\n"
        "d = r.feature(3)\n"
        "rows = list(r.summary_table())\n"
        "assert len(rows) == len(r) and d.index == 3\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_missing_and_corrupt_files_name_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "fs"
    with pytest.raises(FileNotFoundError, match=META_FILE):
        FeatureSetReader(folder)
    write_full(folder)
    data = (folder / FEATURES_FILE).read_bytes()

    (folder / FEATURES_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(FeatureSetError, match=FEATURES_FILE):
        FeatureSetReader(folder)
    (folder / FEATURES_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(FeatureSetError, match=FEATURES_FILE):
        FeatureSetReader(folder)
    (folder / FEATURES_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=FEATURES_FILE):
        FeatureSetReader(folder)

    (folder / FEATURES_FILE).write_bytes(data)
    meta = json.loads((folder / META_FILE).read_text())
    (folder / META_FILE).write_text(json.dumps({**meta, "d_sae": D_SAE + 1}))
    with pytest.raises(FeatureSetError, match="d_sae"):
        FeatureSetReader(folder)
    (folder / META_FILE).write_text(json.dumps({**meta, "optional": ["similar", "partners", "logit_lens"]}))
    FeatureSetReader(folder)
    (folder / META_FILE).write_text("{broken")
    with pytest.raises(FeatureSetError, match=META_FILE):
        FeatureSetReader(folder)
    (folder / META_FILE).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(FeatureSetError, match="miStudio feature set"):
        FeatureSetReader(folder)


def test_missing_array_and_bad_index(tmp_path: Path) -> None:
    stats, _ = make_stats()
    folder = tmp_path / "fs"
    FeatureSetWriter(folder).write(stats)
    meta = json.loads((folder / META_FILE).read_text())
    (folder / META_FILE).write_text(json.dumps({**meta, "optional": ["similar"]}))
    with pytest.raises(FeatureSetError, match="similar_ids"):
        FeatureSetReader(folder)
    (folder / META_FILE).write_text(json.dumps(meta))
    reader = FeatureSetReader(folder)
    with pytest.raises(ValueError, match=f"feature {D_SAE} is out of range"):
        reader.feature(D_SAE)
    with pytest.raises(ValueError, match="JSON"):
        FeatureSetWriter(tmp_path / "other").write(stats, {"bad": object()})
