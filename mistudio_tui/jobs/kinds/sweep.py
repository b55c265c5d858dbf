"""The `sweep` kind: its typed parameters, parent-side hook and registration (the worker: `jobs/tasks/sweep.py`)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from mistudio_tui.db.models import Job, Sweep
from mistudio_tui.jobs.params import JobParams
from mistudio_tui.jobs.registry import JobKind, register


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepParams(JobParams):
    """Run (or resume) the trials of Sweep `sweep_id`; the search itself lives in the Sweep row."""

    kind: ClassVar[str] = "sweep"
    sweep_id: int
    resume: bool = False


def finish_sweep(job: Job, status: str, result: dict[str, Any]) -> None:
    """A sweep that ran all its trials is 'completed' (the generic mapping would say 'ready')."""
    if status == "completed" and job.resource_id is not None:
        Sweep.update(status="completed").where(Sweep.id == job.resource_id).execute()


register(
    JobKind(
        "sweep",
        "mistudio_tui.jobs.tasks.sweep:run",
        title="Hyperparameter sweep",
        cancel_grace_s=120.0,  # its running trials get the train kind's 60 s to checkpoint first
        finish=finish_sweep,
        params=SweepParams,
    )
)
