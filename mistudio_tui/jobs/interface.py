"""What the layers above see of the job runner: its events and a `Runner` protocol, not its internals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from mistudio_tui.db.models import Job
from mistudio_tui.jobs.params import JobParams


class EventType(StrEnum):
    """What a `JobEvent` reports, and what its `data` holds."""

    STATE = "state"  # the job's status changed; data: {"pid": …} | {"device": …} | {"error": …}
    PROGRESS = "progress"  # data: a `reporting.Progress`
    METRICS = "metrics"  # data: the metric rows (dicts with a step) that arrived since the last event
    LOG = "log"  # data: one log line (str)
    ARTIFACT = "artifact"  # data: a `reporting.Artifact`


@dataclass(slots=True)
class JobEvent:
    """Something happened to a job (`type` says what; a plain string is checked against `EventType`)."""

    job_id: int
    type: EventType
    status: str = ""
    data: Any = None

    def __post_init__(self) -> None:
        self.type = EventType(self.type)  # a misspelt type fails here, not silently in every listener


Listener = Callable[[JobEvent], None]


class Runner(Protocol):
    """Submits, cancels and waits on jobs; tells listeners what happens to them (`jobs.runner.JobRunner`)."""

    max_parallel: int  # how many of its jobs run at once (the others wait, queued)

    def submit(self, kind: str, params: JobParams | dict[str, Any], title: str = "", resource: Any = None) -> Job: ...

    def cancel(self, job_id: int) -> None: ...

    def wait(self, job_id: int, timeout: float | None = None) -> Job: ...

    def busy(self) -> bool: ...

    def running_ids(self) -> list[int]: ...

    def add_listener(self, listener: Listener) -> None: ...

    def remove_listener(self, listener: Listener) -> None: ...
