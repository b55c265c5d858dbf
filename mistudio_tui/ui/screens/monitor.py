"""Monitor: host CPU/RAM/disk, every NVIDIA GPU, and which miStudio job uses what."""

from __future__ import annotations

from textual.app import ComposeResult

from mistudio_tui.monitor.history import DEFAULT_INTERVAL, monitor_interval
from mistudio_tui.ui.screens.base import StudioScreen
from mistudio_tui.ui.widgets.monitor_view import MonitorPanel


class MonitorScreen(StudioScreen):
    """Refreshes every MISTUDIO_MONITOR_INTERVAL seconds (default 1) while visible."""

    TITLE_TEXT = "Monitor"

    def compose_body(self) -> ComposeResult:
        try:
            interval = monitor_interval()
        except ValueError as exc:
            self.app.notify(f"{exc}; refreshing every {DEFAULT_INTERVAL:g} s", severity="warning")
            interval = DEFAULT_INTERVAL
        yield MonitorPanel(self.studio.paths.home, interval, nvml=getattr(self.app, "nvml_module", None))
