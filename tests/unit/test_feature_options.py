"""Extraction options from the CLI through the service into the job's parameters, and their validation."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from mistudio_tui.cli.feature_cmd import extraction_options
from mistudio_tui.cli.main import build_parser
from mistudio_tui.cli.output import CliError
from mistudio_tui.db.models import FeatureSet, Training
from mistudio_tui.jobs.tasks.features import special_ids
from mistudio_tui.services.features import EXTRACTION_DEFAULTS, extract_features
from tests.ui.populate import populate


def parse(*argv: str):
    return build_parser().parse_args(["features", "extract", "sae", *argv])


def test_cli_options_reach_the_job_params(studio) -> None:
    populate(studio.paths.home)
    training = Training.get()
    args = parse(
        "--tokens",
        "2k",
        "--context",
        "5,2",
        "--include-bos",
        "--dead-density",
        "0.01",
        "--top-k",
        "7",
        "--quantiles",
        "3",
        "--per-quantile",
        "2",
    )
    spec = extract_features(studio, training.id, n_tokens=args.n_tokens, **extraction_options(args))
    params = spec.params
    assert params.n_tokens == 2000
    assert (params.context_before, params.context_after) == (5, 2)
    assert params.exclude_bos is False and params.exclude_special is True
    assert params.dead_density == 0.01 and params.top_k == 7
    assert (params.n_quantiles, params.per_quantile) == (3, 2)
    assert FeatureSet.get_by_id(spec.resource.id).config["context_before"] == 5


def test_defaults_apply_when_options_are_left_out(studio) -> None:
    populate(studio.paths.home)
    spec = extract_features(studio, Training.get().id, **extraction_options(parse()))
    for key, value in EXTRACTION_DEFAULTS.items():
        assert getattr(spec.params, key) == value


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("context_before", -1, "context_before"),
        ("top_k", 0, "top_k"),
        ("dead_density", 1.5, "dead_density"),
        ("per_quantile", 0, "per_quantile"),
    ],
)
def test_bad_option_values_name_the_option(studio, option, value, words) -> None:
    populate(studio.paths.home)
    before = FeatureSet.select().count()
    with pytest.raises(ValueError, match=words):
        extract_features(studio, Training.get().id, **{option: value})
    assert FeatureSet.select().count() == before


@pytest.mark.parametrize("text", ["a,b", "1,2,3", "-1,2"])
def test_bad_context_is_rejected_by_the_parser(text: str, capsys) -> None:
    with pytest.raises(CliError, match="--context") as raised:
        parse("--context", text)
    assert raised.value.code == 2


def test_single_context_number_means_both_sides() -> None:
    assert parse("--context", "6").context == (6, 6)


def test_bos_and_special_exclusion_choose_the_ignored_ids() -> None:
    tokens = SimpleNamespace(meta={"bos_token_id": 0, "special_token_ids": [0, 5, 9]})
    assert special_ids(tokens) == [0, 5, 9]
    assert special_ids(tokens, exclude_bos=True, exclude_special=False) == [0]
    assert special_ids(tokens, exclude_bos=False, exclude_special=False) == []
    assert special_ids(tokens, exclude_bos=False, exclude_special=True) == [5, 9]


def test_export_service_imports_no_torch() -> None:
    code = (
        "import sys\nimport mistudio_tui.services.feature_export\n"
        "print('HEAVY', [m for m in ('torch', 'transformers', 'textual') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "HEAVY []" in out.stdout
