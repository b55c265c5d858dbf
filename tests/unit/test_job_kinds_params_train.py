"""The typed parameters of train, train.multi, sae.eval, sae.import and sweep: what services build is what the job row
holds and what the worker reads back; a wrong value is refused once, by name; rows written before the classes load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mistudio_tui.cli.train_cmd import training_summary
from mistudio_tui.db.jobs import create_job
from mistudio_tui.db.models import Job, Training
from mistudio_tui.jobs import sweep_planner
from mistudio_tui.jobs.kinds.sae import SAEEvalParams, SAEImportParams
from mistudio_tui.jobs.kinds.sweep import SweepParams
from mistudio_tui.jobs.kinds.train import MultiTrainParams, StreamSource, TrainParams
from mistudio_tui.jobs.params import FieldError, JobParams, ParamsError
from mistudio_tui.jobs.registry import get_kind
from mistudio_tui.services import multi_training, sae_io, sweeps, trainings
from mistudio_tui.services.spec import JobSpec
from tests.ui.populate import populate

ASET, HOOK = "tiny-L0-resid_post", "blocks.0.hook_resid_post"


def stored(studio, spec: JobSpec) -> Job:
    """The job row exactly as the runner's submit writes it (no worker started), read back from the database."""
    row = get_kind(spec.kind).row_params(spec.params)
    job = create_job(spec.kind, spec.title, row, spec.resource, os.getpid(), studio.paths.dir("logs"))
    return Job.get_by_id(job.id)


def specs(studio, tmp_path: Path) -> dict[str, JobSpec]:
    populate(studio.paths.home)
    folder = tmp_path / "an-sae"
    folder.mkdir()
    return {
        "train": trainings.new_training(studio, ASET, architecture="relu", total_tokens=1000, batch_size=100),
        "train.multi": multi_training.new_multi_training(
            studio, [HOOK], activations_ref=ASET, configs=[{"k": 4}, {"k": 8}], total_tokens=1000
        ),
        "train.multi streamed": multi_training.new_multi_training(
            studio, [HOOK], model_ref="tiny-gpt2", tokenization_ref="tiny-stories-ctx64", stream={"buffer_tokens": 512}
        ),
        "sae.eval": trainings.evaluate_training("topk-run", tokens=256, device="cpu"),
        "sae.import": sae_io.import_sae(studio, str(folder), hook=HOOK),
        "sweep": sweeps.new_sweep(sweeps.SweepRequest(activations=ASET, space="k=2,4 arch=topk,relu")),
    }


def test_each_kind_stores_its_params_and_the_worker_reads_the_same_value(studio, tmp_path: Path) -> None:
    for name, spec in specs(studio, tmp_path).items():
        kind = get_kind(spec.kind)
        assert isinstance(spec.params, kind.params), name
        job = stored(studio, spec)
        assert job.params == spec.params.to_json(), name  # home-relative paths read back absolute
        assert kind.params.from_json(job.params) == spec.params, name  # what worker_main hands the entry


def test_the_rows_keep_their_layout(studio, tmp_path: Path) -> None:
    """The keys and nesting rows had before the classes (db.home_params finds paths by these key names)."""
    made = specs(studio, tmp_path)
    train = stored(studio, made["train"]).params
    assert set(train) == {"sae", "train", "source", "out_dir", "resume", "metadata", "eval"}
    assert train["source"] == {"type": "activations", "dir": "/srv/mistudio/activations/1", "hook": HOOK}
    assert {"model_path", "model_dtype", "tokenization_dir", "is_causal_lm"} == set(train["eval"])
    assert train["sae"]["architecture"] == "standard" and train["sae"]["d_in"] == 32  # the one vocabulary inside
    group = stored(studio, made["train.multi"]).params
    assert set(group) == {"members", "train", "source", "resume", "metadata", "eval"}
    assert [set(m) for m in group["members"]] == [{"training_id", "label", "hook", "sae", "out_dir"}] * 2
    assert group["source"] == {"type": "activations", "dir": "/srv/mistudio/activations/1"}
    streamed = stored(studio, made["train.multi streamed"]).params["source"]
    assert streamed["type"] == "stream" and streamed["buffer_tokens"] == 512
    evaluation = stored(studio, made["sae.eval"]).params
    assert {"training_id", "sae_dir", "hook", "tokens", "device", "source", "eval", "previous"} <= set(evaluation)
    assert evaluation["source"]["held_out"] is True and evaluation["eval"]["context_size"] == 64
    imported = stored(studio, made["sae.import"]).params
    assert imported["source"] == str(tmp_path / "an-sae") and imported["hub"] is False and "out_dir" in imported
    assert stored(studio, made["sweep"]).params == {"sweep_id": made["sweep"].resource.id, "resume": False}


def test_the_training_row_holds_internal_names_and_shows_the_typed_one(studio, tmp_path: Path) -> None:
    spec = specs(studio, tmp_path)["train"]
    training = Training.get_by_id(spec.resource.id)
    assert training.architecture == training.config["sae"]["architecture"] == "standard"
    assert training.name.startswith("relu-L0-")  # run names use the name people type
    assert training_summary(training)["architecture"] == "relu"  # so does the CLI
    assert sweep_planner.shown_params({"architecture": "standard", "k": 4}) == {"architecture": "relu", "k": 4}


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"k": 1000}, "k", "k must be between 1 and d_sae=256, got 1000"),
        ({"architecture": "gated"}, "architecture", "architecture 'gated' is not supported; expected one of relu"),
        ({"total_tokens": 0}, "total_tokens", "total_tokens must be a positive integer, got 0"),
        ({"lr": float("nan")}, "lr", "lr must be a finite number, got nan"),
    ],
)
def test_a_wrong_training_value_is_refused_by_the_config_naming_the_field(options, field, message) -> None:
    with pytest.raises(FieldError, match=message.replace("(", r"\(")) as refused:
        trainings.training_config(32, expansion=8, **options)
    assert refused.value.field == field  # the form focuses this field


@pytest.mark.parametrize(
    ("cls", "row", "message"),
    [
        (SweepParams, {"sweep_id": "four"}, r"sweep\.sweep_id: expected int"),
        (SweepParams, {"sweep_id": 4, "trials": 3}, r"sweep: unknown field\(s\) trials"),
        (SAEEvalParams, {"training_id": 1, "sae_dir": "/x", "tokens": 0}, "--tokens must be positive, got 0"),
        (SAEImportParams, {"source": "a/b", "out_dir": "/x", "file": "f.pt"}, "a single file is read from a hub"),
        (StreamSource, {"model_path": "/m", "tokenization_dir": "/t", "batch_size": 0}, "batch_size must be positive"),
    ],
)
def test_a_wrong_row_is_refused_naming_the_field(cls: type[JobParams], row: dict[str, Any], message: str) -> None:
    with pytest.raises((ParamsError, ValueError), match=message):
        cls.from_json(row)


def test_a_submitted_dict_is_checked_by_the_kind_before_any_job_exists(studio) -> None:
    with pytest.raises(ParamsError, match=r"sweep\.sweep_id"):
        studio.runner.submit("sweep", {"sweep_id": None})
    with pytest.raises(TypeError, match="takes TrainParams, not SweepParams"):
        studio.runner.submit("train", SweepParams(sweep_id=1))
    assert not Job.select().exists()


def test_transcoders_refuse_several_processes_in_the_params() -> None:
    row = {**OLD_TRAIN_ROW, "source": {**OLD_TRAIN_ROW["source"], "hook_out": "blocks.0.hook_mlp_out"}}
    with pytest.raises(ValueError, match="transcoders train in one process"):
        TrainParams.from_json(row)


# Rows as the code before the typed classes wrote them (a ReLU run by its old name, nulls written out).
OLD_TRAIN_ROW: dict[str, Any] = {
    "sae": {"architecture": "relu", "d_in": 32, "d_sae": 256, "l1_coefficient": 0.004},
    "train": {"total_tokens": 2_000_000, "batch_size": 4096, "lr": None, "device": "auto", "dtype": "fp32",
              "seed": 0, "checkpoint_every": 500, "metrics_every": 10},
    "source": {"type": "activations", "dir": "/home/me/.local/share/mistudio/activations/1-acts", "hook": HOOK},
    "out_dir": "/home/me/.local/share/mistudio/saes/3-relu-L0-8k-a3f",
    "resume": False,
    "metadata": {"model_name": "gpt2", "context_size": 64, "prepend_bos": True, "dataset_path": None,
                 "hook_name": HOOK},
    "eval": {"model_path": "/m", "model_dtype": None, "tokenization_dir": "/t", "is_causal_lm": True},
    "nproc": 2,
}  # fmt: skip
OLD_GROUP_ROW: dict[str, Any] = {
    "members": [
        {"training_id": 5, "label": HOOK, "hook": HOOK, "out_dir": "/s/5",
         "sae": {"architecture": "topk", "d_in": 32, "d_sae": 128, "k": 8}},
        {"training_id": 6, "label": "run-6", "hook": HOOK, "out_dir": "/s/6",
         "sae": {"architecture": "relu", "d_in": 32, "d_sae": 128, "k": 32}},
    ],
    "train": {"total_tokens": 1000, "batch_size": 4096, "lr": None, "device": "auto", "dtype": "fp32", "seed": 0,
              "checkpoint_every": 500, "metrics_every": 10},
    "source": {"type": "stream", "model_path": "/m", "model_dtype": None, "tokenization_dir": "/t",
               "buffer_tokens": 4096},
    "resume": True,
    "metadata": {"model_name": "gpt2", "context_size": 64, "prepend_bos": True, "dataset_path": "stories"},
    "eval": {"model_path": "/m", "model_dtype": None, "tokenization_dir": "/t", "is_causal_lm": True},
}  # fmt: skip
OLD_EVAL_ROW: dict[str, Any] = {
    "training_id": 3, "sae_dir": "/s/3", "hook": HOOK, "tokens": None, "device": "auto",
    "source": {"dir": None, "hook": HOOK, "hook_out": None, "held_out": False},
    "eval": {"model_path": None, "model_dtype": None, "tokenization_dir": None, "is_causal_lm": False,
             "context_size": None},
    "previous": {"explained_variance": 0.9}, "ground_truth": None,
}  # fmt: skip
OLD_IMPORT_ROW: dict[str, Any] = {
    "source": "google/gemma-scope-2b-pt-res", "hub": True, "subfolder": None, "revision": None, "hook": None,
    "model_name": None, "model_d_model": None, "out_dir": "/s/9", "release": "gemma-scope-2b-pt-res-canonical",
    "sae_id": "layer_12/width_16k/canonical", "norm_scaling_factor": 1, "file": "layer_12/params.npz",
}  # fmt: skip


def test_rows_written_before_the_classes_still_load() -> None:
    train = TrainParams.from_json(OLD_TRAIN_ROW)
    assert train.sae.architecture == "standard" and train.sae.l1_coefficient == 0.004  # read through the one map
    assert train.nproc == 2 and train.out_dir.name == "3-relu-L0-8k-a3f" and train.eval.is_causal_lm
    assert train.train_config().metadata == {"model_name": "gpt2", "context_size": 64, "prepend_bos": True,
                                             "hook_name": HOOK}  # fmt: skip
    group = MultiTrainParams.from_json(OLD_GROUP_ROW)
    assert [m.sae.architecture for m in group.members] == ["topk", "standard"]
    assert isinstance(group.source, StreamSource) and group.source.buffer_tokens == 4096
    assert group.source.batch_size == 8  # the stream default the worker used to fill in
    evaluation = SAEEvalParams.from_json(OLD_EVAL_ROW)
    assert evaluation.source.dir is None and not evaluation.source.held_out and evaluation.eval.model_path is None
    imported = SAEImportParams.from_json(OLD_IMPORT_ROW)
    assert imported.file == "layer_12/params.npz" and imported.norm_scaling_factor == 1.0
    assert SweepParams.from_json({"sweep_id": 4, "resume": True}) == SweepParams(sweep_id=4, resume=True)


def test_a_resume_reads_an_old_run_config_by_its_shown_architecture(studio) -> None:
    """A run stored with 'relu' before the one vocabulary resumes into a job the worker reads as 'standard'."""
    populate(studio.paths.home)
    old = Training.get(Training.name == "topk-run")
    Training.update(
        status="paused",
        origin="trained",
        architecture="relu",
        config={"sae": {"architecture": "relu", "d_in": 32, "d_sae": 64}, "train": {"total_tokens": 1000}},
    ).where(Training.id == old.id).execute()
    spec = trainings.resume_training("topk-run")
    assert spec.params.sae.architecture == "standard" and spec.params.resume
    assert TrainParams.from_json(stored(studio, spec).params) == spec.params
