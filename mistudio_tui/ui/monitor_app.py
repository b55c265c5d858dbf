"""`mistudio monitor`: the monitor alone as a small app that reads only the database, NVML and psutil.

It never imports torch, so it starts fast and costs little in a tmux side pane.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header

from mistudio_tui.monitor.snapshot import MonitorSampler
from mistudio_tui.ui.widgets.monitor_view import CompactMonitor, MonitorPanel


class MonitorApp(App[None]):
    """The full monitor (`compact=False`) or the compact side pane; refreshes every `interval` seconds."""

    TITLE = "miStudio monitor"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (80, "-wide")]
    CSS = """
    MonitorApp.-compact Screen { padding: 0 1; height: auto; }
    Screen.-wide CompactMonitor { layout: horizontal; }
    Screen.-wide CompactMonitor > #compact-jobs { margin-bottom: 0; margin-right: 2; }
    .section-title { text-style: bold; margin-top: 1; }
    .gpu-card { height: auto; border: round $primary-background; padding: 0 1; margin-bottom: 1; }
    /* inline (below the prompt) the screen is as tall as its content: a 1fr panel would get no lines at all */
    Screen:inline MonitorPanel { height: auto; }
    Screen:inline MonitorPanel > VerticalScroll { height: auto; max-height: 80vh; }
    """
    BINDINGS = [Binding("q", "quit", "Quit", id="monitor.quit")]

    def __init__(
        self,
        home: Path,
        interval: float,
        compact: bool = False,
        nvml: object | None = None,
        sampler: MonitorSampler | None = None,
    ) -> None:
        super().__init__()
        self.home = Path(home)
        self.interval = interval
        self.compact = compact
        self.nvml_module = nvml
        self.sampler = sampler
        if compact:
            self.add_class("-compact")

    def compose(self) -> ComposeResult:
        if self.compact:
            yield CompactMonitor(self.home, self.interval, nvml=self.nvml_module, sampler=self.sampler)
            return
        yield Header(icon="◆")
        yield MonitorPanel(self.home, self.interval, nvml=self.nvml_module, sampler=self.sampler)
        yield Footer()
