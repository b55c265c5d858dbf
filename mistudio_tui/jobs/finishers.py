"""Parent-side job hooks: turn a worker's results, metric rows and artifacts into database rows."""

from __future__ import annotations

from typing import Any

from mistudio_tui.db import metrics as metric_queries
from mistudio_tui.db.jobs import resource_of
from mistudio_tui.db.models import Job, Sweep, Training, utcnow
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
