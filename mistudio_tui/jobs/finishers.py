"""Parent-side job hooks: turn a worker's results, metric rows and artifacts into database rows."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from mistudio_tui.db import features as feature_queries
from mistudio_tui.db.jobs import resource_of
from mistudio_tui.db.models import Dataset, FeatureSet, Job, LanguageModel
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
    dataset.job = job.id
    for key in ("path", "n_documents", "n_chars", "stats", "cleaning"):
        if key in ds:
            setattr(dataset, key, ds[key])
    dataset.status = "ready"
    dataset.save()
    model = LanguageModel.get_or_none(LanguageModel.name == lm["name"]) or LanguageModel(name=lm["name"])
    model.source_type = "sample"
    model.source = lm["path"]
    model.job = job.id
    for key, value in lm.items():
        if key in LanguageModel._meta.fields and key not in ("id", "name"):
            setattr(model, key, value)
    model.status = "ready"
    model.save()
    for row in (dataset, model):  # the job built these folders for these rows (a previous sample's were replaced)
        if row.path and Path(row.path).is_dir():
            with contextlib.suppress(OSError):
                write_marker(Path(row.path), row)


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
