"""Each job kind's typed parameters: built by its service, stored in the job row in the layout rows have always had,
read back equal, a wrong value refused once with one clear line, and rows written before the classes still load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mistudio_tui.db.jobs import create_job
from mistudio_tui.db.models import ActivationSet, Dataset, FeatureSet, Job, LabelingJob, LanguageModel, Tokenization
from mistudio_tui.jobs.kinds.activations import ExtractParams, ImportParams, SynthParams
from mistudio_tui.jobs.kinds.datasets import IngestParams, TokenizeParams
from mistudio_tui.jobs.kinds.diagnostics import CountParams, FloodParams, HangParams
from mistudio_tui.jobs.kinds.features import FeaturesParams
from mistudio_tui.jobs.kinds.label import LabelParams
from mistudio_tui.jobs.kinds.models import ModelAddParams
from mistudio_tui.jobs.kinds.sample import SampleParams
from mistudio_tui.jobs.params import JobParams, ParamsError
from mistudio_tui.jobs.registry import get_kind
from mistudio_tui.labeling.types import LabelingSettings
from mistudio_tui.services.datasets import CLEANING_DEFAULTS
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.studio import Studio
from tests.ui.populate import populate

# Rows as the code before the params classes wrote them (dict literals), and what each kind's class reads.
OLD_ROWS: dict[str, tuple[type[JobParams], dict[str, Any]]] = {
    "diag.count": (CountParams, {"steps": 12, "delay": 0, "tag": 7, "fail_at": 3}),
    "diag.hang": (HangParams, {"seconds": 120, "ignore_term": True}),
    "diag.flood": (FloodParams, {"messages": 100}),
    "sample": (
        SampleParams,
        {"datasets_dir": "/h/datasets", "models_dir": "/h/models", "time_budget_s": None, "max_steps": 600},
    ),
    "ingest": (
        IngestParams,
        {
            "source": "/data/corpus.jsonl",
            "source_type": "local",
            "out_dir": "/h/datasets/1-corpus",
            "text_field": None,
            "txt_mode": "lines",
            "hub_config": None,
            "hub_split": "train",
            "limit": None,
            "cleaning": CLEANING_DEFAULTS,
            "skip_bad_rows": False,
            "streaming": True,
            "resume": False,
        },
    ),
    "tokenize": (
        TokenizeParams,
        {
            "dataset_dir": "/h/datasets/1-corpus",
            "tokenizer": "gpt2",
            "out_dir": "/h/tokenizations/1-corpus-gpt2-ctx16",
            "context_size": 16,
            "prepend_bos": True,
            "packing": True,
            "separator": "eos",
            "max_tokens": None,
        },
    ),
    "model.add": (
        ModelAddParams,
        {
            "source": "/models/tiny",
            "source_type": "local",
            "revision": None,
            "path": "/models/tiny",
            "dtype": "float32",
            "quantization": None,
            "trust_remote_code": False,
        },
    ),
    "activations.extract": (
        ExtractParams,
        {
            "hooks": ["blocks.0.hook_resid_post"],
            "n_tokens": 256,
            "batch_size": 4,
            "shard_tokens": 128,
            "store_dtype": "float32",
            "exclude_bos": True,
            "exclude_special": True,
            "device": "cpu",
            "model_path": "/models/tiny",
            "model_dtype": "float32",
            "quantization": None,
            "trust_remote_code": False,
            "tokenization_dir": "/h/tokenizations/1-t",
            "out_dir": "/h/activations/1-a",
        },
    ),
    "activations.import": (
        ImportParams,
        {"path": "/data/acts.safetensors", "key": None, "out_dir": "/h/activations/2-imported-acts"},
    ),
    "activations.synth": (
        SynthParams,
        {
            "options": {
                "features": 64,
                "d_in": 8,
                "tokens": 1000,
                "target_l0": 4.0,
                "seed": 0,
                "hierarchy_roots": 0,
                "correlation": 0.0,
                "bias": 1.0,
                "shard_tokens": 65536,
            },
            "out_dir": "/h/activations/3-synth",
        },
    ),
    "features.extract": (
        FeaturesParams,
        {
            "n_tokens": 64,
            "top_k": 20,
            "n_quantiles": 5,
            "per_quantile": 4,
            "context_before": 12,
            "context_after": 4,
            "exclude_bos": True,
            "exclude_special": True,
            "dead_density": 1e-6,
            "batch_size": 8,
            "device": "cpu",
            "sae_dir": "/h/saes/1-trained",
            "hook": "blocks.1.hook_resid_post",
            "model_path": "/h/models/mine",
            "model_dtype": "float32",
            "is_causal_lm": True,
            "tokenization_dir": "/h/tokenizations/1-t",
            "out_dir": "/h/features/1-trained-features",
        },
    ),
    "label": (
        LabelParams,
        {
            "settings": LabelingSettings(base_url="http://localhost:8000/v1", model="m").to_dict(),
            "indices": [0, 2, 5],
            "skip": [2],
            "feature_dir": "/h/features/1-trained-features",
        },
    ),
}
# Keys a row written now has beyond an old row's (their defaults), by kind.
NEW_DEFAULTS: dict[str, dict[str, Any]] = {
    "diag.count": {"device": "cpu"},
    "tokenize": {"resume": False},
}


def stored(studio: Studio, spec: JobSpec) -> Job:
    """The job row exactly as the runner's submit writes it (without starting a worker)."""
    params = get_kind(spec.kind).row_params(spec.params)
    job = create_job(spec.kind, spec.title, params, spec.resource, os.getpid(), studio.paths.dir("logs"))
    return Job.get_by_id(job.id)


def check_row(studio: Studio, spec: JobSpec) -> Job:
    """The spec's params are its kind's class; the row holds their JSON and reads back equal."""
    kind = get_kind(spec.kind)
    assert kind.params is not None and isinstance(spec.params, kind.params)
    job = stored(studio, spec)
    assert job.params == spec.params.to_json()
    assert kind.params.from_json(job.params) == spec.params
    return job


@pytest.mark.parametrize("kind", sorted(OLD_ROWS))
def test_rows_written_before_the_params_classes_still_load_and_keep_their_layout(kind: str) -> None:
    params_type, row = OLD_ROWS[kind]
    assert get_kind(kind).params is params_type
    params = params_type.from_json(row)
    expected = {k: v for k, v in row.items() if v is not None} | NEW_DEFAULTS.get(kind, {})
    assert params.to_json() == expected
    assert params_type.from_json(params.to_json()) == params


def test_the_runner_refuses_a_wrong_value_before_any_row_exists(studio: Studio) -> None:
    with pytest.raises(ParamsError, match=r"^diag\.count\.steps: expected int, got str 'ten'$"):
        studio.runner.submit("diag.count", {"steps": "ten"})
    with pytest.raises(ParamsError, match=r"diag\.count: unknown field"):
        studio.runner.submit("diag.count", {"stpes": 3})
    with pytest.raises(TypeError, match="takes CountParams, not HangParams"):
        studio.runner.submit("diag.count", HangParams(seconds=1))
    assert not Job.select().exists()


def test_the_sample_spec_is_stored_as_its_params(studio: Studio) -> None:
    from mistudio_tui.services.sample import sample_spec

    job = check_row(studio, sample_spec(studio, time_budget_s=30))
    assert job.params == {
        "datasets_dir": str(studio.paths.dir("datasets")),
        "models_dir": str(studio.paths.dir("models")),
        "time_budget_s": 30,
    }
    with pytest.raises(ValueError, match=r"^--max-steps must be at least 1, got 0$"):
        sample_spec(studio, max_steps=0)


def test_ingest_and_tokenize_specs_are_stored_as_their_params(studio: Studio, tmp_path: Path) -> None:
    from mistudio_tui.services import datasets as svc

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "a b c"}\n')
    ingest = svc.add_dataset(studio, str(corpus), name="corpus", cleaning={"unicode_form": "nfkc"}, limit=5)
    job = check_row(studio, ingest)
    assert job.params["out_dir"] == Dataset.get().path and job.params["cleaning"]["unicode_form"] == "NFKC"
    assert set(job.params) == set(OLD_ROWS["ingest"][1]) - {"text_field", "hub_config"}  # None is left out

    populate(studio.paths.home)
    tokenize = svc.tokenize_dataset(studio, "tiny-stories", tokenizer="gpt2", context_size=16, max_tokens=100)
    job = check_row(studio, tokenize)
    assert job.params["out_dir"] == Tokenization.get(Tokenization.name == tokenize.resource.name).path
    assert set(job.params) == set(OLD_ROWS["tokenize"][1]) | {"resume"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cleaning": {"lowercase": True}}, "unknown cleaning option 'lowercase'"),
        ({"cleaning": {"min_chars": -1}}, "cleaning option 'min_chars' must be a non-negative integer, got -1"),
        ({"txt_mode": "pages"}, "txt mode must be 'lines' or 'file', not 'pages'"),
        ({"limit": 0}, "limit must be a positive number of rows"),
    ],
)
def test_a_bad_ingest_value_is_refused_before_the_dataset_row(
    studio: Studio, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    from mistudio_tui.services import datasets as svc

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "a b c"}\n')
    with pytest.raises(ValueError, match=message):
        svc.add_dataset(studio, str(corpus), **change)
    assert not Dataset.select().exists() and not any(studio.paths.dir("datasets").iterdir())


@pytest.mark.parametrize(
    ("change", "message"),
    [({"context_size": 1}, r"context size 1 is out of range \(2 to 1,000,000\)"), ({"max_tokens": 0}, "max tokens")],
)
def test_a_bad_tokenize_value_is_refused_before_the_row(studio: Studio, change: dict[str, Any], message: str) -> None:
    from mistudio_tui.services import datasets as svc

    populate(studio.paths.home)
    before = Tokenization.select().count()
    with pytest.raises(ValueError, match=message):
        svc.tokenize_dataset(studio, "tiny-stories", tokenizer="gpt2", **change)
    assert Tokenization.select().count() == before


def test_a_resumed_tokenization_reads_the_old_row_and_sets_resume(studio: Studio) -> None:
    from mistudio_tui.services import datasets as svc

    populate(studio.paths.home)
    tok = Tokenization.get()
    old = dict(OLD_ROWS["tokenize"][1])
    tok.job = Job.create(kind="tokenize", params=old, status="cancelled")
    tok.status = "cancelled"
    tok.save()
    spec = svc.resume_tokenization(studio, tok.id)
    assert spec.params.resume is True and spec.params.out_dir == Path(tok.path)
    assert spec.params.context_size == 16 and spec.params.tokenizer == tok.model.path
    check_row(studio, spec)


def test_model_and_activation_specs_are_stored_as_their_params(
    studio: Studio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mistudio_tui.services import models as svc

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    job = check_row(studio, svc.add_model(studio, str(folder), name="local"))
    assert job.params["path"] == job.params["source"] == str(folder.resolve())
    assert set(job.params) == set(OLD_ROWS["model.add"][1]) - {"revision", "quantization"}

    populate(studio.paths.home)
    extract = svc.extract_activations(studio, "tiny-gpt2", "tiny-stories-ctx64", hooks=["blocks.1.hook_mlp_out"])
    job = check_row(studio, extract)
    assert job.params["hooks"] == ["blocks.1.hook_mlp_out"] and job.params["out_dir"] == extract.resource.path
    assert set(job.params) == set(OLD_ROWS["activations.extract"][1]) - {"quantization"}

    acts = tmp_path / "acts.safetensors"
    acts.write_bytes(b"")
    job = check_row(studio, svc.import_activations(studio, str(acts), key="x"))
    assert job.params == {
        "path": str(acts.resolve()),
        "key": "x",
        "out_dir": ActivationSet.get_by_id(job.resource_id).path,
    }

    # building the spec needs no sae-lens (only the worker does): pretend the extra is there, as CI lacks it
    monkeypatch.setattr("mistudio_tui.ml.activations.synthetic.sae_lens_available", lambda: True)
    synth = svc.synth_activations(studio, {"features": 64, "d_in": 8, "tokens": 1000, "target_l0": 4.0})
    job = check_row(studio, synth)
    assert job.params["options"] == OLD_ROWS["activations.synth"][1]["options"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s, svc: svc.add_model(s, "org/remote", dtype="float8"), "dtype 'float8' is not one of float32"),
        (lambda s, svc: svc.add_model(s, "org/remote", quantization="2bit"), "quantization '2bit' must be 8bit"),
        (
            lambda s, svc: svc.extract_activations(s, "tiny-gpt2", "tiny-stories-ctx64", hooks=[]),
            "give at least one hook point",
        ),
        (
            lambda s, svc: svc.extract_activations(
                s, "tiny-gpt2", "tiny-stories-ctx64", hooks=["blocks.0.hook_resid_post"], store_dtype="float8"
            ),
            "extraction settings: store_dtype must be one of float32, float16, bfloat16, not 'float8'",
        ),
        (lambda s, svc: svc.synth_activations(s, {"features": 1}), "--features must be at least 2, got 1"),
    ],
)
def test_a_bad_model_or_activation_value_is_refused_before_any_row(studio: Studio, call: Any, message: str) -> None:
    from mistudio_tui.services import models as svc

    populate(studio.paths.home)
    models, sets = LanguageModel.select().count(), ActivationSet.select().count()
    with pytest.raises(ValueError, match=message):
        call(studio, svc)
    assert (LanguageModel.select().count(), ActivationSet.select().count()) == (models, sets)
    assert not any(studio.paths.dir("activations").iterdir()) and not any(studio.paths.dir("models").iterdir())


def test_a_resumed_extraction_reads_the_old_row_with_the_rows_folders(studio: Studio) -> None:
    from mistudio_tui.services import models as svc

    populate(studio.paths.home)
    aset = ActivationSet.get()
    aset.job = Job.create(kind="activations.extract", params=OLD_ROWS["activations.extract"][1], status="cancelled")
    aset.status = "cancelled"
    aset.save()
    spec = svc.resume_extraction(studio, aset.id)
    assert spec.params.out_dir == Path(aset.path) and spec.params.tokenization_dir == Path(aset.tokenization.path)
    assert spec.params.hooks == ("blocks.0.hook_resid_post",) and spec.params.shard_tokens == 128
    check_row(studio, spec)


def test_feature_and_label_specs_are_stored_as_their_params(studio: Studio) -> None:
    from mistudio_tui.services.features import extract_features
    from mistudio_tui.services.labeling import start_labeling

    populate(studio.paths.home)
    spec = extract_features(studio, "topk-run", n_tokens=500, top_k=3, device="cpu")
    job = check_row(studio, spec)
    assert (job.params["n_tokens"], job.params["top_k"], job.params["hook"]) == (500, 3, "blocks.0.hook_resid_post")
    assert job.params["out_dir"] == FeatureSet.get_by_id(spec.resource.id).path
    assert set(job.params) == set(OLD_ROWS["features.extract"][1])

    spec = start_labeling(studio, "topk-run-features", "http://localhost:9/v1", "m", features=[1, 3], concurrency=2)
    job = check_row(studio, spec)
    assert job.params["indices"] == [1, 3] and job.params["skip"] == [] and job.params["settings"]["concurrency"] == 2
    assert set(job.params) == set(OLD_ROWS["label"][1])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_tokens": 0}, "the number of tokens must be positive"),
        ({"top_k": 0}, "extraction option top_k must be at least 1, got 0"),
        ({"context_after": -1}, "extraction option context_after must be zero or more tokens, got -1"),
        ({"dead_density": 1.0}, r"extraction option dead_density must be in \[0, 1\), got 1.0"),
    ],
)
def test_a_bad_feature_option_is_refused_before_the_row(studio: Studio, options: dict[str, Any], message: str) -> None:
    from mistudio_tui.services.features import extract_features

    populate(studio.paths.home)
    before = FeatureSet.select().count(), sorted(studio.paths.dir("features").iterdir())
    with pytest.raises(ValueError, match=f"^{message}$"):
        extract_features(studio, "topk-run", **options)
    assert (FeatureSet.select().count(), sorted(studio.paths.dir("features").iterdir())) == before


def test_a_bad_label_setting_is_refused_before_the_run_row(studio: Studio) -> None:
    from mistudio_tui.services.labeling import start_labeling

    populate(studio.paths.home)
    with pytest.raises(ValueError, match="concurrency"):
        start_labeling(studio, "topk-run-features", "http://localhost:9/v1", "m", concurrency=0)
    with pytest.raises(ParamsError, match=r"^label\.indices\[1\]: expected int, got str 'two'$"):
        LabelParams.from_json(OLD_ROWS["label"][1] | {"indices": [1, "two"]})
    with pytest.raises(ValueError, match=r"^label: feature index -1 is negative$"):
        LabelParams.from_json(OLD_ROWS["label"][1] | {"indices": [-1, 2]})
    assert not LabelingJob.select().exists()


def test_a_resumed_labeling_run_reads_the_old_row_and_skips_what_was_labeled(studio: Studio) -> None:
    from mistudio_tui.db.features import add_label
    from mistudio_tui.services.labeling import resume_labeling

    populate(studio.paths.home)
    fset = FeatureSet.get()
    run = LabelingJob.create(feature_set=fset, status="cancelled")
    run.job = Job.create(kind="label", params=OLD_ROWS["label"][1], status="cancelled")
    run.save()
    add_label(fset.training_id, 5, semantic="five", method="llm", labeling_job=run.id)
    spec = resume_labeling(run.id)
    assert spec.params.skip == (5,) and spec.params.indices == (0, 2, 5)
    assert spec.params.feature_dir == Path(fset.path) and spec.params.settings.model == "m"
    check_row(studio, spec)


def test_typed_diag_params_run_in_a_worker_and_are_the_rows_json(studio: Studio) -> None:
    params = CountParams(steps=2, delay=0.0, tag=3.0)
    job = studio.runner.submit("diag.count", params)
    assert Job.get_by_id(job.id).params == params.to_json() == {"steps": 2, "delay": 0.0, "tag": 3.0, "device": "cpu"}
    done = studio.runner.wait(job.id, timeout=60)
    assert done.status == "completed" and done.result == {"steps": 2, "tag": 3.0}
