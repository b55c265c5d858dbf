"""The frame every mode shares: header, body, the jobs strip and the footer of key hints."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual import on
from textual.app import ComposeResult
from textual.containers import Container
from textual.widgets import Header

from mistudio_tui.ui.messages import DataChanged, JobArtifact, JobLog, JobProgress, JobStateChanged
from mistudio_tui.ui.speedups import KeepStylesOnResume
from mistudio_tui.ui.widgets.jobs_bar import JobsBar
from mistudio_tui.ui.widgets.key_footer import KeyFooter

if TYPE_CHECKING:  # the app imports the screens
    from mistudio_tui.app import MiStudioApp
    from mistudio_tui.studio import Studio


class StudioScreen(KeepStylesOnResume):
    """Base of the mode screens: subclasses implement `compose_body` and `reload`."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (80, "-wide")]
    TITLE_TEXT = ""

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        with Container(id="body"):
            yield from self.compose_body()
        yield JobsBar()
        yield KeyFooter()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.sub_title = self.TITLE_TEXT
        self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    def reload(self) -> None:
        """Re-read what this screen shows from the database."""

    # Subclasses add their own `@on` handlers: Textual runs those first, then these (no super() call needed).
    @on(JobStateChanged)
    def job_state_changed(self, message: JobStateChanged) -> None:
        """A job started or ended: the jobs bar and what this screen shows may change."""
        self.query_one(JobsBar).refresh_jobs()
        self.reload()

    @on(JobProgress)
    @on(JobLog)
    @on(JobArtifact)
    def job_moved(self, message: JobProgress | JobLog | JobArtifact) -> None:
        """The jobs bar follows running jobs (metric rows change no job: the bar refreshes itself each second)."""
        self.query_one(JobsBar).refresh_jobs()

    def on_data_changed(self, message: DataChanged) -> None:
        self.reload()

    @property
    def studio(self) -> Studio:
        """The app's studio: its home, database and job runner."""
        return cast("MiStudioApp", self.app).studio
