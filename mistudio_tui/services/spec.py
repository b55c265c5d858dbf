"""JobSpec: a job ready to submit (the CLI waits on it, the TUI watches it)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from mistudio_tui.db.models import BaseModel, Job
from mistudio_tui.db.ownership import OwningRow, create_owned_folder
from mistudio_tui.jobs.params import JobParams

if TYPE_CHECKING:
    from mistudio_tui.jobs.interface import Runner
    from mistudio_tui.studio import Studio


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


class FieldError(ValueError):
    """A value that would be refused; `field` names it, so a form can focus that field and say why beside it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


def slug(text: str, fallback: str = "item") -> str:
    """A filesystem- and CLI-friendly name: lowercase letters, digits, dots, dashes."""
    out = re.sub(r"[^a-zA-Z0-9._-]+", "-", text.strip()).strip("-.").lower()
    return out[:60] or fallback


def create_pending(studio: Studio, table: type[OwningRow], folder: str, /, **fields: Any) -> OwningRow:
    """A new pending `table` row whose files go in a new folder `<folder>/<id>-<slug of its name>` of the studio's
    storage (suffixed when that name is taken), marked as the row's own (see db.ownership)."""
    row = table.create(status="pending", **fields)
    row.path = str(create_owned_folder(row, studio.paths.dir(folder), f"{row.id}-{slug(row.name)}"))
    row.save()
    return row
