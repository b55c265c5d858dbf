"""JobSpec: a job ready to submit (the CLI waits on it, the TUI watches it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from mistudio_tui.db.models import BaseModel, Job
from mistudio_tui.jobs.params import JobParams

if TYPE_CHECKING:
    from mistudio_tui.jobs.interface import Runner


P = TypeVar("P", bound=JobParams)


@dataclass
class JobSpec(Generic[P]):
    """What to run (`kind` with its typed `params`) and the row it fills (`resource`)."""

    kind: str
    params: P
    title: str
    resource: BaseModel | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def resource_id(self) -> int:
        """The id of the row the job fills (the services that make one create it before the spec)."""
        if self.resource is None:
            raise ValueError(f"the {self.kind} job fills no row")
        return self.resource.id

    def submit(self, runner: Runner) -> Job:
        return runner.submit(self.kind, self.params, title=self.title, resource=self.resource)
