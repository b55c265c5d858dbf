"""Messages the app posts to screens: one class per kind of job event, made from the runner's `JobEvent` in one place.

Screens handle them with `@on(JobProgress)` and so on (`@on(JobMessage)` hears them all). Progress and metrics of
one job merge while they wait in a queue (`can_replace`): a busy screen handles one message for the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from mistudio_tui.jobs.interface import EventType, JobEvent
from mistudio_tui.reporting import Artifact, Progress


# bubble=False (on each class: Textual's default is True): the app forwards each one to the active screen, and it
# must not bubble back up to the app.
# eq=False: messages compare by identity, as Textual's own do.
@dataclass(eq=False)
class JobMessage(Message, bubble=False):
    """Something happened to job `job_id` of this app's runner."""

    job_id: int


@dataclass(eq=False)
class JobStateChanged(JobMessage, bubble=False):
    """The job's status changed (`detail` holds the pid, the device or the error when the event had one)."""

    status: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class JobProgress(JobMessage, bubble=False):
    """How far the job is; only the latest counts, so a newer one of the same job replaces a waiting one."""

    progress: Progress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobProgress) and message.job_id == self.job_id


@dataclass(eq=False)
class JobLog(JobMessage, bubble=False):
    """A line of the job's log."""

    text: str


@dataclass(eq=False)
class JobMetrics(JobMessage, bubble=False):
    """Metric rows the job recorded (already in the database).

    A waiting batch merges into the next one of the same job: Textual drops the older message when `can_replace`
    says yes (it is asked once, just before), so its rows are put in front of the newer message's first.
    """

    rows: list[dict[str, Any]]

    def can_replace(self, message: Message) -> bool:
        if not isinstance(message, JobMetrics) or message.job_id != self.job_id:
            return False
        message.rows = [*self.rows, *message.rows]
        return True


@dataclass(eq=False)
class JobArtifact(JobMessage, bubble=False):
    """The job wrote something the parent knows of (a checkpoint, a histogram, a label)."""

    artifact: Artifact


def job_message(event: JobEvent) -> JobMessage:
    """The message for a runner event (the only place a `JobEvent` becomes a UI message)."""
    match event.type:
        case EventType.STATE:
            return JobStateChanged(event.job_id, event.status, dict(event.data or {}))
        case EventType.PROGRESS:
            return JobProgress(event.job_id, event.data)
        case EventType.METRICS:
            return JobMetrics(event.job_id, list(event.data or []))
        case EventType.LOG:
            return JobLog(event.job_id, str(event.data))
        case EventType.ARTIFACT:
            return JobArtifact(event.job_id, event.data)
    raise ValueError(f"unknown job event type {event.type!r}")


class DataChanged(Message, bubble=False):
    """Rows were added, changed or deleted: screens showing them should reload."""

    def __init__(self, table: str = "") -> None:
        super().__init__()
        self.table = table
