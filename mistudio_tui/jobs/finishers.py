"""Parent-side job hooks: turn a worker's results, metric rows and artifacts into database rows."""

from __future__ import annotations

from typing import Any

from mistudio_tui.db.jobs import resource_of
from mistudio_tui.db.models import Job
from mistudio_tui.db.states import JobState


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
