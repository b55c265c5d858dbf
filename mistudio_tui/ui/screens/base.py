"""The frame every mode shares: header, body, the jobs strip and the footer of key hints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual import events
from textual.app import ComposeResult
from textual.containers import Container
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Header

from mistudio_tui.ui.messages import DataChanged, JobUpdate
from mistudio_tui.ui.widgets.jobs_bar import JobsBar
from mistudio_tui.ui.widgets.key_footer import KeyFooter

if TYPE_CHECKING:
    from mistudio_tui.app import MiStudioApp
    from mistudio_tui.studio import Studio


class StudioScreen(Screen[Any]):
    """Base of the mode screens: subclasses implement `compose_body` and `reload`."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (80, "-wide")]
    TITLE_TEXT = ""
    _styled_for: tuple[Any, ...] | None = None

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

    def style_inputs(self) -> tuple[Any, ...]:
        """The app state a suspended screen's styles depend on (a stylesheet or theme change is handled by Textual)."""
        return self.app.app_focus, self.app.size, self.app.theme

    def on_screen_suspend(self) -> None:
        self._styled_for = self.style_inputs()

    def post_message(self, message: Message) -> bool:
        if isinstance(message, events.ScreenResume) and self._styled_for == self.style_inputs():
            message.refresh_styles = False  # restyling every widget of a screen shown again costs ~50 ms for nothing
        return super().post_message(message)

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
    def studio(self) -> Studio:
        return cast("MiStudioApp", self.app).studio
