"""The jobs panel: every job with live progress, elapsed and ETA; cancel; the selected job's log tail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from mistudio_tui.db.jobs import recent_jobs, shown_status
from mistudio_tui.db.models import Job
from mistudio_tui.db.states import JobState
from mistudio_tui.jobs.runner import tail_file
from mistudio_tui.ui import format as fmt
from mistudio_tui.ui.jobview import JobView
from mistudio_tui.ui.messages import JobProgress
from mistudio_tui.ui.screens.base import StudioScreen
from mistudio_tui.ui.widgets.record_table import RecordTable


class JobsScreen(StudioScreen):
    """All jobs, newest first (running ones on top)."""

    TITLE_TEXT = "Jobs"
    BINDINGS = [
        Binding("c", "cancel_job", "Cancel job", id="jobs.cancel"),
        Binding("r", "reload", "Refresh", id="jobs.refresh"),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(id="jobs-layout"):
            yield RecordTable(
                [
                    ("id", "ID", 4),
                    ("job", "Job", 26),
                    ("status", "Status", 11),
                    ("progress", "Progress", 18),
                    ("elapsed", "Elapsed", 8),
                    ("eta", "ETA", 7),
                    ("device", "Device", 7),
                ],
                flex="job",
                id="jobs-table",
            )
            yield Static("", id="job-detail", classes="detail")
            yield Static("", id="job-log", classes="log-tail")

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(1.0, self.tick)

    def tick(self) -> None:
        if self.is_current:
            self.reload()

    def reload(self) -> None:
        self.query_one(RecordTable).set_records([(job.id, self._cells(job)) for job in recent_jobs(200)])
        self.show_detail()

    def _cells(self, job: Job) -> tuple[Any, ...]:
        view = JobView(job)
        title = job.title or job.kind
        return (
            str(job.id),
            title,
            fmt.status_text(shown_status(job)),
            view.progress_cell(10),
            fmt.duration(view.elapsed),
            fmt.duration(view.eta),
            job.device or "-",
        )

    def selected_id(self) -> int | None:
        return self.query_one(RecordTable).selected_id

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        job_id = self.selected_id()
        detail = self.query_one("#job-detail", Static)
        log = self.query_one("#job-log", Static)
        if job_id is None:
            detail.update("No jobs yet. Jobs appear here when you build the sample, tokenize, extract or train.")
            log.update("")
            return
        job = Job.get_or_none(Job.id == job_id)
        if job is None:
            return
        lines = [f"[b]#{job.id} {escape(job.title or job.kind)}[/b]  {job.kind}  pid {job.pid or '-'}"]
        if job.progress_text and job.status != "completed":
            lines.append(f"progress: {escape(job.progress_text)}")
        if shown_status(job) == "paused":
            lines.append("paused with a checkpoint: resume it from Trainings (r) or `mistudio train --resume`")
        if job.error:
            lines.append(f"[red]error: {escape(job.error)}[/red]")
        lines.append(f"log: {escape(str(job.log_path))}")
        detail.update("\n".join(lines))
        tail = tail_file(Path(job.log_path), 12) if job.log_path else []
        log.update(Text("\n".join(tail) if tail else "(log is empty)", no_wrap=False))

    def action_cancel_job(self) -> None:
        job_id = self.selected_id()
        if job_id is None:
            return
        job = Job.get_by_id(job_id)
        if job.status not in JobState.ACTIVE:
            self.notify(f"job {job_id} is {job.status}; nothing to cancel", severity="warning")
            return
        self.studio.runner.cancel(job_id)
        self.notify(f"cancelling job {job_id}…")

    def action_reload(self) -> None:
        self.reload()

    @on(JobProgress)
    def progress_arrived(self, message: JobProgress) -> None:
        self.reload()
