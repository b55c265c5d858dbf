"""UI glue shared by screens: start a job from a form, confirm and run a cascading delete."""

from __future__ import annotations

from collections.abc import Callable

from peewee import Model
from textual.screen import Screen

from mistudio_tui.db.cascade import execute_delete, plan_delete
from mistudio_tui.db.lookup import NotFound
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.ui.messages import DataChanged

USER_ERRORS = (ValueError, FileNotFoundError, NotFound, PermissionError)


def start_spec(screen: Screen, make_spec: Callable[[], JobSpec]) -> int | None:
    """Build the job (validation errors become a notification naming the problem) and submit it."""
    try:
        spec = make_spec()
    except USER_ERRORS as exc:
        screen.notify(str(exc), severity="error", timeout=8)
        return None
    job = spec.submit(screen.app.studio.runner)
    screen.notify(f"started: {spec.title} (job {job.id})")
    screen.post_message(DataChanged())
    return job.id


def confirm_delete(screen: Screen, row: Model) -> None:
    """Show what a delete cascades to; delete rows and owned files on confirmation."""
    from mistudio_tui.ui.modals.confirm import ConfirmModal

    if getattr(row, "status", "") in ("running", "queued"):
        screen.notify(f"'{getattr(row, 'name', row.id)}' is {row.status}; cancel its job first", severity="warning")
        return
    plan = plan_delete(row, screen.app.studio.paths.home)

    def decided(ok: bool | None) -> None:
        if ok:
            execute_delete(plan)
            screen.notify(plan.done())
            screen.post_message(DataChanged())

    screen.app.push_screen(ConfirmModal("Delete", plan.describe()), decided)
