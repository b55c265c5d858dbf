"""The frame every mode shares: header, body, the jobs strip and the footer of key hints."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Container
from textual.screen import Screen
from textual.widgets import Footer, Header

from mistudio_tui.ui.messages import DataChanged, JobUpdate
from mistudio_tui.ui.widgets.jobs_bar import JobsBar


class StudioScreen(Screen):
    """Base of the mode screens: subclasses implement `compose_body` and `reload`."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (80, "-wide")]
    TITLE_TEXT = ""

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        with Container(id="body"):
            yield from self.compose_body()
        yield JobsBar()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.sub_title = self.TITLE_TEXT
        self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    def reload(self) -> None:
        """Re-read what this screen shows from the database."""

    def on_job_update(self, message: JobUpdate) -> None:
        """A job changed; by default reload when one ends (metric rows change no job: the bar refreshes itself)."""
        if message.event.type == "metrics":
            return
        self.query_one(JobsBar).refresh_jobs()
        if message.event.type == "state":
            self.reload()

    def on_data_changed(self, message: DataChanged) -> None:
        self.reload()

    @property
    def studio(self):  # -> Studio
        return self.app.studio
