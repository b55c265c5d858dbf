"""Feature-set export: JSON / JSONL / Neuronpedia round trips against the store and the database, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mistudio_tui.cli.main import main
from mistudio_tui.db.models import FeatureSet
from mistudio_tui.ml.features.accumulate import FeatureAccumulator
from mistudio_tui.ml.features.logit_lens import logit_lens
from mistudio_tui.ml.features.similarity import similar_by_decoder
from mistudio_tui.ml.features.store import FeatureSetReader, FeatureSetWriter
from mistudio_tui.services.feature_export import export_feature_set, parse_feature_indices
from tests.ui.populate import WORDS, populate

D_SAE = 12


@pytest.fixture
def feature_set(studio) -> FeatureSet:
    """The populated home's feature set, its store rewritten with a logit lens and similar features."""
    ids = populate(studio.paths.home)
    fset = FeatureSet.get_by_id(ids["featureset"])
    generator = torch.Generator().manual_seed(0)
    tokens = torch.tensor([[(3 * s + t) % len(WORDS) for t in range(10)] for s in range(8)])
    codes = torch.zeros(8, 10, D_SAE)
    for i in range(D_SAE - 1):
        codes[..., i] = (tokens == i).float() * (i + 1)
    valid = tokens != WORDS.index("<|endoftext|>")
    acc = FeatureAccumulator(D_SAE, top_k=4, n_quantiles=2, per_quantile=2, context=(3, 1), hist_bins=8)
    acc.update(codes, tokens, torch.arange(8), valid)
    W_dec = torch.randn(D_SAE, 16, generator=generator)
    lens = logit_lens(W_dec, torch.randn(len(WORDS), 16, generator=generator), top=3)
    FeatureSetWriter(fset.path).write(acc.finalize(), {}, logit_lens=lens, similar=similar_by_decoder(W_dec, top=2))
    return fset


def test_json_round_trip_matches_store_and_labels(feature_set: FeatureSet, tmp_path: Path) -> None:
    result = export_feature_set(feature_set, tmp_path / "out.json", "json")
    doc = json.loads((tmp_path / "out.json").read_text())
    assert result.n_features == D_SAE == len(doc["features"])
    assert doc["feature_set"]["name"] == feature_set.name
    with FeatureSetReader(feature_set.path) as reader:
        for record in doc["features"]:
            detail = reader.feature(record["index"])
            assert record["density"] == pytest.approx(detail.density)
            assert record["max_activation"] == pytest.approx(detail.max)
            assert record["dead"] == detail.dead
            assert len(record["top_examples"]) == len(detail.top_examples)
            for ex, stored in zip(record["top_examples"], detail.top_examples, strict=True):
                assert ex["tokens"][ex["marked"]] == WORDS[int(stored.token_ids[stored.marked])]
                assert ex["activations"][ex["marked"]] == pytest.approx(stored.value)
                assert len(ex["tokens"]) == len(ex["activations"]) == len(ex["token_ids"])
            promoted = [p["token_id"] for p in record["logit_lens"]["promoted"]]
            assert promoted == [int(t) for t in detail.promoted_ids]
    feature_1 = doc["features"][1]
    assert feature_1["semantic_label"] == "The word cat, as a noun."
    assert feature_1["label"]["technical"] == "cat" and feature_1["label"]["method"] == "manual"
    assert all(ex["tokens"][ex["marked"]] == " cat" for ex in feature_1["top_examples"])
    assert doc["features"][D_SAE - 1]["dead"] and not doc["features"][D_SAE - 1]["top_examples"]


def test_jsonl_holds_one_feature_per_line_for_the_chosen_indices(feature_set: FeatureSet, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.jsonl"
    path.parent.mkdir()  # an export makes no folders (see test_export_into_a_missing_folder_is_refused_naming_it)
    export_feature_set(feature_set, path, "jsonl", [5, 1, 2])
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["index"] for r in records] == [1, 2, 5]
    whole = json.loads(json.dumps(records[0]))
    assert whole == records[0]


def test_neuronpedia_layout(feature_set: FeatureSet, tmp_path: Path) -> None:
    folder = tmp_path / "np"
    export_feature_set(feature_set, folder, "neuronpedia", [1, 3])
    assert sorted(p.name for p in folder.iterdir()) == ["1.json", "3.json"]
    page = json.loads((folder / "3.json").read_text())
    with FeatureSetReader(feature_set.path) as reader:
        detail = reader.feature(3)
    assert page["index"] == 3 and page["frac_nonzero"] == pytest.approx(detail.density)
    assert page["pos_str"] == [WORDS[int(t)] for t in detail.promoted_ids]
    assert page["neg_values"] == pytest.approx([float(v) for v in detail.suppressed_values])
    assert sum(page["freq_hist_data_bar_heights"]) == detail.count
    top = [a for a in page["activations"] if a["bin_min"] == -1]
    assert len(top) == len(detail.top_examples)
    for act in page["activations"]:
        assert len(act["tokens"]) == len(act["values"])
        assert act["tokens"][act["qualifying_token_index"]] == WORDS[3]
        assert max(act["values"]) == pytest.approx(act["maxValue"])
    assert page["topkCosSimIndices"] == [int(i) for i in detail.similar_ids]
    explained = json.loads((folder / "1.json").read_text())["explanations"]
    assert explained[0]["description"] == "The word cat, as a noun."


def test_bad_requests_raise_clear_errors(feature_set: FeatureSet, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="out of range"):
        export_feature_set(feature_set, tmp_path / "x.json", "json", [99])
    with pytest.raises(ValueError, match="unknown export format"):
        export_feature_set(feature_set, tmp_path / "x.json", "csv")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        export_feature_set(feature_set, tmp_path / "file", "neuronpedia")
    assert not (tmp_path / "x.json").exists()


def test_parse_feature_indices() -> None:
    assert parse_feature_indices("0-3, 7,2") == [0, 1, 2, 3, 7]
    for bad in ("", "a", "5-2", "-1"):
        with pytest.raises(ValueError, match="--features"):
            parse_feature_indices(bad)


def test_cli_export(feature_set: FeatureSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.jsonl"
    code = main(["features", "export", feature_set.name, str(out), "--format", "jsonl", "--features", "0-2", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["features"] == 3
    assert [json.loads(line)["index"] for line in out.read_text().splitlines()] == [0, 1, 2]
    assert np.isfinite([json.loads(line)["density"] for line in out.read_text().splitlines()]).all()


def test_export_into_a_missing_folder_is_refused_naming_it(
    feature_set: FeatureSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "no" / "such" / "dir" / "out.json"
    for fmt in ("json", "neuronpedia"):
        assert main(["features", "export", feature_set.name, str(target), "--format", fmt]) == 1
        lines = [line for line in capsys.readouterr().err.splitlines() if line]
        assert len(lines) == 1 and f"the folder {tmp_path / 'no'} does not exist" in lines[0]
    assert not (tmp_path / "no").exists()


def test_neuronpedia_pages_skip_dead_features_unless_asked(
    feature_set: FeatureSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FeatureSetReader(feature_set.path) as reader:
        deads = [i for i in range(D_SAE) if reader.feature(i).dead]
    dead = D_SAE - 1  # the fixture never fires the last feature
    assert dead in deads
    assert main(["features", "export", feature_set.name, str(tmp_path / "np"), "--format", "neuronpedia"]) == 0
    assert f"{len(deads)} dead left out" in capsys.readouterr().out
    assert not (tmp_path / "np" / f"{dead}.json").exists() and (tmp_path / "np" / "0.json").exists()
    assert len(list((tmp_path / "np").iterdir())) == D_SAE - len(deads)
    argv = ["features", "export", feature_set.name, str(tmp_path / "all"), "--format", "neuronpedia", "--include-dead"]
    assert main(argv) == 0
    assert (tmp_path / "all" / f"{dead}.json").exists()
    result = export_feature_set(feature_set, tmp_path / "all.json", "json")
    assert result.n_features == D_SAE and result.n_dead_skipped == 0
