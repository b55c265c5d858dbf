"""Monitor: host CPU/RAM/disk, every NVIDIA GPU, and which miStudio job uses what."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Sparkline, Static

from mistudio_tui.monitor.history import monitor_interval
from mistudio_tui.monitor.snapshot import MonitorSampler, MonitorSnapshot
from mistudio_tui.ui.screens.base import StudioScreen
from mistudio_tui.ui.widgets.monitor_view import GpuCard, host_text, jobs_text


class MonitorScreen(StudioScreen):
    """Refreshes every MISTUDIO_MONITOR_INTERVAL seconds (default 1) while visible."""

    TITLE_TEXT = "Monitor"

    def __init__(self) -> None:
        super().__init__()
        self.sampler: MonitorSampler | None = None
        self.last: MonitorSnapshot | None = None

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="monitor"):
            yield Static("Host", classes="section-title")
            yield Static("", id="host")
            yield Sparkline([], summary_function=max, id="cpu-spark")
            yield Static("GPUs", classes="section-title")
            yield Vertical(id="gpus")
            yield Static("", id="gpu-none", classes="hint")
            yield Static("Jobs", classes="section-title")
            yield Static("", id="job-usage")

    def on_mount(self) -> None:
        super().on_mount()
        self.sampler = MonitorSampler(self.studio.paths.home, nvml=getattr(self.app, "nvml_module", None))
        self.tick()
        self.set_interval(monitor_interval(), self.tick)

    def on_unmount(self) -> None:
        if self.sampler is not None:
            self.sampler.close()

    def tick(self) -> None:
        if self.sampler is None or not self.is_current:
            return
        snap = self.sampler.sample()
        self.last = snap
        width = self.size.width or 80
        self.query_one("#host", Static).update(host_text(snap, width))
        self.query_one("#cpu-spark", Sparkline).data = self.sampler.history.series("cpu") or [0]
        none = self.query_one("#gpu-none", Static)
        if not snap.gpu_available:
            none.update(f"No NVIDIA GPU: {snap.gpu_reason or 'NVML is not available'}. Host stats stay live.")
        else:
            none.update("" if snap.gpus else "NVML found no GPUs")
        container = self.query_one("#gpus", Vertical)
        cards = {card.index: card for card in container.query(GpuCard)}
        titles = {u.job.id: (u.job.title or u.job.kind) for u in snap.jobs}
        for gpu in snap.gpus:
            card = cards.get(gpu.index)
            if card is None:
                card = GpuCard(gpu.index)
                container.mount(card)
                self.call_after_refresh(self.tick)
                continue
            card.show(gpu, self.sampler.history, titles, snap.gpu_process_jobs)
        self.query_one("#job-usage", Static).update(jobs_text(snap.jobs, width))
