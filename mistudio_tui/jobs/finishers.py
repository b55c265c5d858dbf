"""Parent-side job hooks: turn a worker's results, metric rows and artifacts into database rows."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from mistudio_tui.db import features as feature_queries
from mistudio_tui.db import metrics as metric_queries
from mistudio_tui.db.jobs import resource_of
from mistudio_tui.db.models import Dataset, FeatureSet, Job, LanguageModel, Sweep, Training, utcnow
from mistudio_tui.db.ownership import write_marker
from mistudio_tui.db.states import JobState
from mistudio_tui.jobs import protocol as p


def apply_resource_fields(job: Job, status: str, result: dict[str, Any]) -> None:
    """Copy `result['resource']` onto the job's resource row (only fields the row has)."""
    resource = resource_of(job)
    fields = result.get("resource") if status in (JobState.COMPLETED, JobState.CANCELLED) else None
    if resource is None or not fields:
        return
    model = type(resource)
    values = {model._meta.fields[k]: v for k, v in fields.items() if k in model._meta.fields and k != "id"}
    if values:
        model.update(values).where(model.id == resource.id).execute()


def finish_sample(job: Job, status: str, result: dict[str, Any]) -> None:
    """Register the sample corpus and model built by the job."""
    if status != "completed":
        return
    ds, lm = result["dataset"], result["model"]
    dataset = Dataset.get_or_none(Dataset.name == ds["name"]) or Dataset(name=ds["name"])
    dataset.source_type = "sample"
    dataset.source = ds.get("source", "Python standard library docstrings")
    dataset.text_field = "text"
    dataset.job_id = job.id
    for key in ("path", "n_documents", "n_chars", "stats", "cleaning"):
        if key in ds:
            setattr(dataset, key, ds[key])
    dataset.status = "ready"
    dataset.save()
    model = LanguageModel.get_or_none(LanguageModel.name == lm["name"]) or LanguageModel(name=lm["name"])
    model.source_type = "sample"
    model.source = lm["path"]
    model.job_id = job.id
    for key, value in lm.items():
        if key in LanguageModel._meta.fields and key not in ("id", "name"):
            setattr(model, key, value)
    model.status = "ready"
    model.save()
    for row in (dataset, model):  # the job built these folders for these rows (a previous sample's were replaced)
        if row.path and Path(row.path).is_dir():
            with contextlib.suppress(OSError):
                write_marker(Path(row.path), row)


def train_metrics(job: Job, rows: list[dict[str, Any]]) -> None:
    """Store metric rows; a row with `training_id` (a group job) belongs to that run, others to the job's."""
    if job.resource_type != "training":
        return
    by_training: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        training_id = row.get("training_id", job.resource_id)
        if training_id is not None:
            by_training.setdefault(int(training_id), []).append(row)
    for training_id, run_rows in by_training.items():
        metric_queries.record_metrics(training_id, run_rows)


def train_artifact(job: Job, artifact: p.Artifact) -> None:
    """Store the feature-density histogram a training reports periodically."""
    training_id = artifact.meta.get("training_id", job.resource_id)
    if artifact.kind == "density_histogram" and job.resource_type == "training" and training_id is not None:
        metric_queries.record_density_histogram(int(training_id), artifact.meta)


def train_start(job: Job) -> None:
    """A resumed run replays from its checkpoint: drop curve points after it, and take the budget it runs with
    (`train --resume RUN --tokens N` changes it)."""
    if job.params.get("resume") and job.resource_id is not None:
        from pathlib import Path

        training = Training.get_or_none(Training.id == job.resource_id)
        train = job.params.get("train") or {}
        if training is not None and train.get("total_tokens") != (training.config or {}).get("train", {}).get(
            "total_tokens"
        ):
            config = {**training.config, "train": train}
            Training.update(config=config, total_tokens=int(train["total_tokens"])).where(
                Training.id == training.id
            ).execute()

        from mistudio_tui.ml.sae.checkpoint_files import latest_checkpoint_step

        step = latest_checkpoint_step(Path(job.params["out_dir"]))
        if step is not None:
            metric_queries.drop_after(job.resource_id, step)


def finish_train(job: Job, status: str, result: dict[str, Any]) -> None:
    apply_resource_fields(job, status, result)
    training = Training.get_or_none(Training.id == job.resource_id)
    if training is None:
        return
    if status == "completed":
        training.status = "completed"
        training.finished_at = utcnow()
    elif status == "cancelled":
        training.status = "paused" if result.get("checkpoint") else "cancelled"
    training.save()


def group_training_ids(job: Job) -> list[int]:
    """The trainings a group job trains (from its params)."""
    return [int(m["training_id"]) for m in job.params.get("members", [])]


def train_multi_start(job: Job) -> None:
    """Mark every run of the group running under this job; a resumed group drops curve points after each checkpoint."""
    from pathlib import Path

    from mistudio_tui.ml.sae.checkpoint_files import latest_checkpoint_step

    ids = group_training_ids(job)
    Training.update(status="running", job=job.id, error=None).where(Training.id.in_(ids)).execute()
    if job.params.get("resume"):
        for member in job.params.get("members", []):
            step = latest_checkpoint_step(Path(member["out_dir"]))
            if step is not None:
                metric_queries.drop_after(int(member["training_id"]), step)


def finish_train_multi(job: Job, status: str, result: dict[str, Any]) -> None:
    """Give every run of the group its own result fields and final state."""
    results = result.get("trainings") or {}
    checkpoints = result.get("checkpoints") or {}
    for training in Training.select().where(Training.id.in_(group_training_ids(job))):
        fields = (results.get(str(training.id)) or {}).get("resource") or {}
        training.device = job.device or training.device
        if status in (JobState.COMPLETED, JobState.CANCELLED):
            for key, value in fields.items():
                if key in Training._meta.fields and key != "id":
                    setattr(training, key, value)
        if status == "completed":
            training.status = "completed"
            training.finished_at = utcnow()
        elif status == "cancelled":
            training.status = "paused" if checkpoints.get(str(training.id)) is not None else "cancelled"
        else:
            training.status = status
            training.error = job.error
        training.save()


def finish_sweep(job: Job, status: str, result: dict[str, Any]) -> None:
    """A sweep that ran all its trials is 'completed' (the generic mapping would say 'ready')."""
    if status == "completed" and job.resource_id is not None:
        Sweep.update(status="completed").where(Sweep.id == job.resource_id).execute()


def finish_sae_eval(job: Job, status: str, result: dict[str, Any]) -> None:
    """Store an on-demand evaluation on the training named in the job's params (not the job's resource)."""
    training = Training.get_or_none(Training.id == job.params.get("training_id"))
    fields = result.get("resource") if status == "completed" else None
    if training is None or not fields:
        return
    values = {Training._meta.fields[k]: v for k, v in fields.items() if k in Training._meta.fields and k != "id"}
    Training.update(values).where(Training.id == training.id).execute()


def finish_features(job: Job, status: str, result: dict[str, Any]) -> None:
    """Insert one row per feature (carrying over the SAE's labels) from the table the worker wrote."""
    apply_resource_fields(job, status, result)
    if status != "completed":
        return
    fset = FeatureSet.get_by_id(job.resource_id)
    from mistudio_tui.ml.features.table import read_feature_table

    rows = read_feature_table(fset.path)
    from mistudio_tui.db.models import Feature

    Feature.delete().where(Feature.feature_set == fset.id).execute()
    feature_queries.bulk_insert_features(fset, rows)


def finish_labeling(job: Job, status: str, result: dict[str, Any]) -> None:
    from mistudio_tui.jobs.labeling_store import finish_labeling as finish

    finish(job, status, result)


def label_artifact(job: Job, artifact: p.Artifact) -> None:
    """A labeling job reports each finished label as an artifact: store it at once (resumable)."""
    if artifact.kind != "label":
        return
    from mistudio_tui.jobs.labeling_store import store_label

    store_label(job, artifact.meta)
