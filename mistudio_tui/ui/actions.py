"""UI glue shared by screens: start a job from a form, confirm and run a cascading delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mistudio_tui.db.cascade import execute_delete, plan_delete
from mistudio_tui.db.jobs import ResourceBusy
from mistudio_tui.db.lookup import NotFound
from mistudio_tui.db.models import BaseModel
from mistudio_tui.db.states import RunState
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.ui.messages import DataChanged

if TYPE_CHECKING:
    from mistudio_tui.ui.modals.form import FormModal
    from mistudio_tui.ui.screens.base import StudioScreen

USER_ERRORS = (ValueError, FileNotFoundError, NotFound, PermissionError)


def submit_spec(screen: StudioScreen, spec: JobSpec[Any]) -> int | None:
    """Submit a built job, say so and let the screens reload (a row another job holds: say which, start nothing)."""
    try:
        job = spec.submit(screen.studio.runner)
    except ResourceBusy as exc:
        screen.notify(str(exc), severity="error", timeout=8)
        return None
    screen.notify(f"started: {spec.title} (job {job.id})")
    screen.post_message(DataChanged())
    return job.id


def start_spec(screen: StudioScreen, make_spec: Callable[[], JobSpec[Any]]) -> int | None:
    """Build the job (validation errors become a notification naming the problem) and submit it."""
    try:
        spec = make_spec()
    except USER_ERRORS as exc:
        screen.notify(str(exc), severity="error", timeout=8)
        return None
    return submit_spec(screen, spec)


def open_job_form(screen: StudioScreen, form: FormModal) -> None:
    """Show a form whose `build` makes the job: a bad value keeps the form open, a valid job starts on close."""

    def done(values: dict[str, Any] | None) -> None:
        if values is not None and form.built is not None:
            submit_spec(screen, form.built)

    screen.app.push_screen(form, done)


def confirm_delete(screen: StudioScreen, row: BaseModel) -> None:
    """Show what a delete cascades to; delete rows and owned files on confirmation."""
    from mistudio_tui.ui.modals.confirm import ConfirmModal

    status = getattr(row, "status", "")
    if status in RunState.ACTIVE:
        screen.notify(f"'{getattr(row, 'name', row.id)}' is {status}; cancel its job first", severity="warning")
        return
    plan = plan_delete(row, screen.studio.paths.home)

    def decided(ok: bool | None) -> None:
        if ok:
            execute_delete(plan)
            screen.notify(plan.done())
            screen.post_message(DataChanged())

    screen.app.push_screen(ConfirmModal("Delete", plan.describe()), decided)


def training_form_choices(screen: StudioScreen) -> tuple[list[tuple[str, int]], list[tuple[str, int]]] | None:
    """(ready activation sets, training templates with favourites first and starred) for a form that trains;
    None, with a hint, when there is nothing to train on yet."""
    from mistudio_tui.db.models import ActivationSet
    from mistudio_tui.services.templates import list_templates

    sets = [(a.name, a.id) for a in ActivationSet.select().where(ActivationSet.status == "ready")]
    if not sets:
        screen.notify("Extract activations first (Models screen, e)", severity="warning")
        return None
    return sets, [(t.name + (" ★" if t.favourite else ""), t.id) for t in list_templates()]
