"""Messages the app posts to screens."""

from __future__ import annotations

from textual.message import Message

from mistudio_tui.jobs.interface import JobEvent


class JobUpdate(Message, bubble=False):
    """A job of this app's runner changed (state, progress, metrics, log, artifact)."""

    # bubble=False: the app forwards it to the active screen, and it must not bubble back up to the app.

    def __init__(self, event: JobEvent) -> None:
        super().__init__()
        self.event = event


class DataChanged(Message, bubble=False):
    """Rows were added, changed or deleted: screens showing them should reload."""

    def __init__(self, table: str = "") -> None:
        super().__init__()
        self.table = table
