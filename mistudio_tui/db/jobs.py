"""Job rows: creation, progress, state transitions, and start-up recovery of interrupted jobs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from mistudio_tui.db.models import ALL_MODELS, BaseModel, Job, Training, database, utcnow
from mistudio_tui.db.states import JobState

ACTIVE_STATES = JobState.ACTIVE  # kept for callers written before JobState
RESOURCE_STATUS = {
    "running": "running",
    "completed": "ready",
    "failed": "failed",
    "cancelled": "cancelled",
    "interrupted": "interrupted",
}
_MODELS_BY_TABLE = {m._meta.table_name: m for m in ALL_MODELS}


class ResourceBusy(ValueError):
    """Another queued or running job already holds the row a new job would fill (e.g. a second resume)."""


def resource_of(job: Job) -> BaseModel | None:
    """The row a job creates or updates, if any."""
    if not job.resource_type or job.resource_id is None:
        return None
    model = _MODELS_BY_TABLE.get(job.resource_type)
    return model.get_or_none(model.id == job.resource_id) if model else None


def create_job(
    kind: str,
    title: str,
    params: dict[str, Any],
    resource: BaseModel | None,
    runner_pid: int,
    log_dir: Path,
) -> Job:
    """Insert a queued job and point its resource's `job` at it."""
    with database.atomic():
        job = Job.create(
            kind=kind,
            title=title,
            params=params,
            status="queued",
            runner_pid=runner_pid,
            resource_type=resource._meta.table_name if resource is not None else None,
            resource_id=resource.id if resource is not None else None,
        )
        job.log_path = str(Path(log_dir) / f"job-{job.id}.log")
        job.save(only=[Job.log_path])
        if resource is not None and "job" in resource._meta.fields:
            _claim(job, type(resource), [resource.id])
        members = [m["training_id"] for m in (params or {}).get("members", []) if m.get("training_id")]
        if members:
            _claim(job, Training, members)
    return job


def _claim(job: Job, model: type[BaseModel], ids: list[int]) -> None:
    """Point rows `ids` at `job` in one conditional UPDATE that skips rows an active job holds; fewer rows changed
    than asked means another job got there first, and the whole creation is rolled back."""
    active = Job.select(Job.id).where(Job.status.in_(ACTIVE_STATES), Job.id != job.id)
    job_field = model._meta.fields["job"]  # every model a job fills has one
    free = job_field.is_null() | job_field.not_in(active)
    claimed = model.update(job=job.id).where(model.id.in_(ids), free).execute()
    if claimed == len(set(ids)):
        return
    row = model.select().where(model.id.in_(ids), job_field.in_(active)).first()
    holder = Job.get_or_none(Job.id == getattr(row, job_field.object_id_name)) if row is not None else None
    what = model._meta.table_name.replace("_", " ")
    name = getattr(row, "name", None) or (row.id if row is not None else ids[0])
    if holder is None:
        raise ResourceBusy(f"{what} '{name}' is held by another job; try again")
    raise ResourceBusy(
        f"{what} '{name}' is already being run by job {holder.id} ({holder.status}: {holder.title}); "
        f"wait for it or cancel it with `mistudio jobs cancel {holder.id}`"
    )


def _set_resource_status(job: Job, status: str, error: str | None = None) -> None:
    resource = resource_of(job)
    if resource is None or "status" not in resource._meta.fields:
        return
    model = type(resource)
    fields = model._meta.fields
    values: dict[str, Any] = {fields["status"]: RESOURCE_STATUS.get(status, status)}
    if "error" in fields:
        values[fields["error"]] = error
    model.update(values).where(model.id == resource.id).execute()
    members = [m["training_id"] for m in (job.params or {}).get("members", []) if m.get("training_id")]
    if members:  # several SAEs trained by one job (train.multi) share its state
        Training.update(status=RESOURCE_STATUS.get(status, status), error=error).where(
            Training.id.in_(members)
        ).execute()


def mark_running(job_id: int, pid: int) -> None:
    now = utcnow()
    with database.atomic():
        Job.update(status="running", pid=pid, started_at=now, updated_at=now).where(Job.id == job_id).execute()
        _set_resource_status(Job.get_by_id(job_id), "running")


def set_device(job_id: int, device: str) -> None:
    Job.update(device=device, updated_at=utcnow()).where(Job.id == job_id).execute()
    job = Job.get_by_id(job_id)
    resource = resource_of(job)
    if resource is not None and "device" in resource._meta.fields:
        type(resource).update(device=device).where(type(resource).id == resource.id).execute()


def set_progress(job_id: int, done: float, total: float | None, text: str, unit: str) -> None:
    Job.update(
        progress_done=done,
        progress_total=total,
        progress_text=text[:200],
        progress_unit=unit,
        updated_at=utcnow(),
    ).where(Job.id == job_id).execute()


def set_progress_text(job_id: int, text: str) -> None:
    Job.update(progress_text=text[:200], updated_at=utcnow()).where(Job.id == job_id).execute()


def finish_job(
    job_id: int,
    status: str,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    traceback: str | None = None,
    code: int | None = None,
) -> None:
    """Move a job to a terminal state (and its resource's status with it)."""
    now = utcnow()
    with database.atomic():
        Job.update(
            status=status,
            result=result,
            error=error,
            traceback=traceback,
            exit_code=code,
            finished_at=now,
            updated_at=now,
        ).where(Job.id == job_id).execute()
        _set_resource_status(Job.get_by_id(job_id), status, error)


def process_alive(pid: int | None, started_at: dt.datetime | None) -> bool:
    """True if `pid` runs and was created no later than the job started (guards against pid reuse)."""
    if not pid:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = dt.datetime.fromtimestamp(proc.create_time(), dt.UTC).replace(tzinfo=None)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return started_at is None or created <= started_at + dt.timedelta(seconds=5)


def recover_interrupted() -> list[int]:
    """Mark jobs whose worker (for queued jobs: runner) is gone as `interrupted`; return their ids."""
    lost: list[int] = []
    # read the rows first: writing while a SELECT is still open upgrades a read snapshot, which fails at once
    # ("database is locked", no busy wait) when another process wrote since it began
    for job in list(Job.select().where(Job.status.in_(JobState.ACTIVE))):
        if job.status == "running":
            alive = process_alive(job.pid, job.started_at)
        else:
            alive = process_alive(job.runner_pid, job.created_at)
        if not alive:
            lost.append(job.id)
            finish_job(job.id, "interrupted", error="the process running this job vanished (crash or reboot)")
    return lost


def recent_jobs(limit: int = 200) -> list[Job]:
    """Active jobs first, then the most recent ones."""
    active = list(Job.select().where(Job.status.in_(JobState.ACTIVE)).order_by(Job.id.desc()))
    rest = list(Job.select().where(Job.status.not_in(JobState.ACTIVE)).order_by(Job.id.desc()).limit(limit))
    return active + rest


def shown_status(job: Job) -> str:
    """The state to show: a training cancelled with a checkpoint kept is `paused` (resumable), not `cancelled`."""
    if job.status == "cancelled" and isinstance(job.result, dict):
        if job.result.get("checkpoint") is not None:
            return "paused"
        if any(step is not None for step in (job.result.get("checkpoints") or {}).values()):
            return "paused"
    return job.status


def progress_label(job: Job) -> str:
    """'45%', or the stage text while a job has no total; a completed job is '100%', not its last stage."""
    if job.status == "completed":
        return "100%"
    if job.progress_total:
        return f"{100 * min(max(job.progress_done / job.progress_total, 0.0), 1.0):.0f}%"
    return job.progress_text or "-"
