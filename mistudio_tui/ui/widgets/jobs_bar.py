"""A one-line strip on every screen: what is running now (press j for the jobs panel)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from mistudio_tui.db.models import Job
from mistudio_tui.db.states import JobState
from mistudio_tui.ui.jobview import JobView

# On a narrow terminal the footer shows only a screen's first keys: say where the rest are.
IDLE_TEXT = "no jobs running · j: jobs · ?: keys"


class JobsBar(Static):
    """Summarises running and queued jobs; refreshed by the app on job events and once a second."""

    DEFAULT_CSS = """
    JobsBar { height: 1; padding: 0 1; background: $boost; color: $text-muted; }
    JobsBar.-busy { color: $text; }
    """

    def on_mount(self) -> None:
        self.refresh_jobs()
        self.set_interval(1.0, self.refresh_jobs)

    def refresh_jobs(self) -> None:
        jobs = list(Job.select().where(Job.status.in_(JobState.ACTIVE)).order_by(Job.id))
        running = [j for j in jobs if j.status == "running"]
        queued = len(jobs) - len(running)
        self.set_class(bool(jobs), "-busy")
        if not jobs:
            self.update(IDLE_TEXT, layout=False)  # one line high: a new text needs no relayout
            return
        parts = " · ".join(JobView(j).short() for j in running[:3])
        more = f" +{len(running) - 3}" if len(running) > 3 else ""
        waiting = f" · {queued} queued" if queued else ""
        self.update(Text(f"▶ {len(running)} running: {parts}{more}{waiting} · j: jobs"), layout=False)
