"""What the layers above see of the job runner: its events and a `Runner` protocol, not its internals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mistudio_tui.db.models import Job
from mistudio_tui.jobs.params import JobParams


@dataclass(slots=True)
class JobEvent:
    """Something happened to a job: `type` is state | progress | metrics | log | artifact."""

    job_id: int
    type: str
    status: str = ""
    data: Any = None


Listener = Callable[[JobEvent], None]


class Runner(Protocol):
    """Submits, cancels and waits on jobs; tells listeners what happens to them (`jobs.runner.JobRunner`)."""

    def submit(self, kind: str, params: JobParams | dict[str, Any], title: str = "", resource: Any = None) -> Job: ...

    def cancel(self, job_id: int) -> None: ...

    def wait(self, job_id: int, timeout: float | None = None) -> Job: ...

    def busy(self) -> bool: ...

    def add_listener(self, listener: Listener) -> None: ...

    def remove_listener(self, listener: Listener) -> None: ...
