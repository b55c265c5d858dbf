"""Monitor panels rendered from a MonitorSnapshot: the full monitor and the compact side pane, at any width."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from mistudio_tui.monitor.history import History
from mistudio_tui.monitor.nvml import GpuSnapshot
from mistudio_tui.monitor.snapshot import JobUsage, MonitorSampler, MonitorSnapshot
from mistudio_tui.ui import format as fmt
from mistudio_tui.ui.jobview import JobView

GIB = 1024**3


def na(value: object, suffix: str = "") -> str:
    """'N/A' for a value NVML could not read."""
    return "N/A" if value is None else f"{value}{suffix}"


def gib(n: int | None) -> str:
    """Bytes as GiB with one decimal, 'N/A' when unknown."""
    return "N/A" if n is None else f"{n / GIB:.1f}"


SPARK_BLOCKS = " ▁▂▃▄▅▆▇█"


def meter(label: str, percent: float | None, detail: str, width: int) -> Text:
    """'CPU  ███████░░░  23%  detail' fitted to `width` columns (bars of one width line up)."""
    bar_width = max(6, min(30, width - 24))
    text = Text(f"{label:<5}")
    frac = None if percent is None else percent / 100
    style = "green" if (percent or 0) < 70 else "yellow" if (percent or 0) < 90 else "red"
    text.append(fmt.bar(frac, bar_width), style=style)
    text.append(f" {na(None if percent is None else round(percent), '%'):>4}")
    if detail:
        text.append(f"  {detail}", style="dim")
    return text


def host_text(snap: MonitorSnapshot, width: int) -> Text:
    """CPU (with one block per core when there is room), RAM, swap, the home's disk and the load average."""
    h = snap.host
    text = Text()
    text.append_text(meter("CPU", h.cpu_percent, f"{len(h.cpu_per_core)} cores", width))
    text.append("\n")
    if h.cpu_per_core and width >= 50:
        text.append("cores ", style="dim")
        text.append(spark(h.cpu_per_core), style="green")
        text.append("\n")
    unit = " GiB" if width >= 50 else "G"
    text.append_text(meter("RAM", h.ram_percent, f"{gib(h.ram_used)}/{gib(h.ram_total)}{unit}", width))
    text.append("\n")
    if h.swap_total:
        text.append_text(meter("swap", h.swap_percent, f"{gib(h.swap_used)}/{gib(h.swap_total)}{unit}", width))
        text.append("\n")
    home = " home" if width >= 50 else ""
    text.append_text(meter("disk", h.disk_percent, f"{gib(h.disk_used)}/{gib(h.disk_total)}{unit}{home}", width))
    if h.load_avg and width >= 50:
        text.append(f"\nload {h.load_avg[0]:.2f} {h.load_avg[1]:.2f} {h.load_avg[2]:.2f}", style="dim")
    return text


def spark(values: list[float] | tuple[float, ...], width: int | None = None) -> str:
    """Percentages (0–100, a fixed scale) as one row of block characters, the newest `width` values."""
    if width is not None:
        values = list(values)[-width:] if width > 0 else []
    return "".join(SPARK_BLOCKS[min(max(int(v / 100 * 8 + 0.5), 0), 8)] for v in values)


def history_text(history: History, series: list[tuple[str, str]], width: int) -> Text:
    """One history row per (label, series name): 'util ▂▃▅▇' on a fixed 0–100 scale, newest at the right."""
    text = Text()
    for label, name in series:
        if text:
            text.append("\n")
        text.append(f"{label:<5}", style="dim")
        text.append(spark(history.series(name), max(1, width - 5)), style="cyan")
    return text


def gpu_text(gpu: GpuSnapshot, jobs: dict[int, str], pid_jobs: dict[int, int], width: int) -> Text:
    """One GPU: name, utilisation and memory bars, temperature, power, clocks and its processes with their job."""
    text = Text()
    text.append(f"GPU {gpu.index} ", style="bold")
    text.append(f"{gpu.name or 'N/A'}\n")
    text.append_text(meter("util", gpu.util_gpu, "", width))
    text.append("\n")
    text.append_text(meter("mem", gpu.memory_percent, f"{gib(gpu.memory_used)}/{gib(gpu.memory_total)} GiB", width))
    power = "N/A" if gpu.power_w is None else f"{gpu.power_w:.0f}"
    limit = "" if gpu.power_limit_w is None else f"/{gpu.power_limit_w:.0f}"
    text.append(
        f"\n{na(gpu.temperature_c, '°C')} · {power}{limit} W · SM {na(gpu.sm_clock_mhz, ' MHz')}"
        + (f" · mem {na(gpu.mem_clock_mhz, ' MHz')}" if width >= 60 else ""),
        style="dim",
    )
    for proc in gpu.processes or ():
        job_id = pid_jobs.get(proc.pid)
        owner = f"job {job_id}: {jobs.get(job_id, '')}" if job_id is not None else "not miStudio"
        text.append(f"\n  pid {proc.pid} {gib(proc.used_memory)} GiB  {owner}"[: max(width, 20)])
    if gpu.processes is None:
        text.append("\n  processes: N/A", style="dim")
    return text


def jobs_text(usages: list[JobUsage], width: int) -> Text:
    """Per running job: title, progress with the latest loss, then CPU, RSS and GPU memory."""
    if not usages:
        return Text("no jobs running", style="dim")
    text = Text()
    for u in usages:
        if text:
            text.append("\n")
        text.append(f"#{u.job.id} {u.job.title or u.job.kind}"[:width], style="bold")
        text.append("\n")
        text.append_text(job_progress(u, width))
        cpu = "N/A" if u.cpu_percent is None else f"{u.cpu_percent:.0f}%"
        rss = "N/A" if u.rss is None else f"{gib(u.rss)}G"
        gpus = "".join(f" · gpu{i} {gib(m)}G" for i, m in u.gpu_memory.items())
        text.append(f"\n cpu {cpu} · rss {rss}{gpus}"[: width + 1], style="dim")
    return text


def job_progress(usage: JobUsage, width: int) -> Text:
    """' ████░░░░  45%  loss 0.0123' fitted to `width` columns."""
    loss = "" if usage.loss is None else f"  loss {usage.loss:.4g}"
    view = JobView(usage.job)
    bar_width = max(6, min(30, width - 24))
    text = Text(" ")
    text.append(view.progress_cell(bar_width), style="cyan")
    text.append(loss)
    return text


def compact_jobs_text(usages: list[JobUsage], width: int) -> Text:
    """The side pane's jobs: title, then progress bar and latest loss."""
    text = Text("Jobs", style="bold")
    if not usages:
        text.append("\n no jobs running", style="dim")
    for u in usages:
        title = f"#{u.job.id} {u.job.title or u.job.kind}"
        text.append(f"\n{title[:width]}")
        text.append("\n")
        text.append_text(job_progress(u, width))
    return text


def no_gpu_reason(snap: MonitorSnapshot) -> str:
    """Why there is no GPU reading, without the 'no NVIDIA GPU:' prefix the sampler puts in front."""
    return (snap.gpu_reason or "NVML is not available").removeprefix("no NVIDIA GPU: ")


def compact_resources_text(snap: MonitorSnapshot, width: int) -> Text:
    """The side pane's bars: utilisation and memory per GPU (or why there is none), then host CPU and RAM."""
    text = Text()
    if not snap.gpu_available:
        text.append("No NVIDIA GPU", style="bold")
        text.append(f"\n{no_gpu_reason(snap)[: width * 2]}", style="dim")
    for gpu in snap.gpus:
        text.append(f"GPU {gpu.index} ", style="bold")
        text.append(f"{gpu.name or 'N/A'}"[: max(4, width - 6)])
        text.append("\n")
        text.append_text(meter("util", gpu.util_gpu, "", width))
        text.append("\n")
        text.append_text(meter("mem", gpu.memory_percent, f"{gib(gpu.memory_used)}/{gib(gpu.memory_total)}G", width))
        text.append("\n")
    if snap.gpus:
        text.rstrip()
    h = snap.host
    text.append("\nHost", style="bold")
    text.append("\n")
    text.append_text(meter("CPU", h.cpu_percent, f"{len(h.cpu_per_core)} cores", width))
    text.append("\n")
    text.append_text(meter("RAM", h.ram_percent, f"{gib(h.ram_used)}/{gib(h.ram_total)}G", width))
    return text


class GpuCard(Vertical):
    """One GPU: numbers and processes, with utilisation and memory history."""

    def __init__(self, index: int) -> None:
        super().__init__(classes="gpu-card", id=f"gpu-{index}")
        self.index = index

    def compose(self) -> ComposeResult:
        yield Static("", classes="gpu-text")
        yield Static("", classes="gpu-history")

    def show(self, gpu: GpuSnapshot, history: History, jobs: dict[int, str], pid_jobs: dict[int, int]) -> None:
        """Draw one reading of this GPU."""
        width = self.content_size.width or 60
        self.query_one(".gpu-text", Static).update(gpu_text(gpu, jobs, pid_jobs, width))
        rows = [("util", f"gpu{self.index}.util"), ("mem", f"gpu{self.index}.mem")]
        self.query_one(".gpu-history", Static).update(history_text(history, rows, width))


class SampledView(Vertical):
    """Samples the monitor every `interval` seconds and redraws; subclasses implement `draw`."""

    def __init__(
        self, home: Path, interval: float, nvml: object | None = None, sampler: MonitorSampler | None = None
    ) -> None:
        super().__init__()
        self.interval = interval
        self.sampler = sampler if sampler is not None else MonitorSampler(home, nvml=nvml)
        self.last: MonitorSnapshot | None = None

    def on_mount(self) -> None:
        self.tick()
        self.set_interval(self.interval, self.tick)

    def on_unmount(self) -> None:
        self.sampler.close()

    def on_resize(self) -> None:
        if self.last is not None:
            self.draw(self.last)

    def tick(self) -> None:
        """Take one sample and draw it (skipped while the view is hidden, e.g. another mode is shown)."""
        if not self.screen.is_current:
            return
        self.last = self.sampler.sample()
        self.draw(self.last)

    def draw(self, snap: MonitorSnapshot) -> None:
        """Show `snap`."""


class MonitorPanel(SampledView):
    """The full monitor: host with CPU history, one card per GPU, and per-job usage."""

    DEFAULT_CSS = """
    MonitorPanel { height: 1fr; }
    MonitorPanel .gpu-cards { height: auto; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="monitor"):
            yield Static("Host", classes="section-title")
            yield Static("", id="host")
            yield Static("", id="host-history")
            # the jobs before the GPU cards: what runs is what a glance is for (and a short pane ends with the cards)
            yield Static("Jobs", classes="section-title")
            yield Static("", id="job-usage")
            yield Static("GPUs", classes="section-title")
            yield Vertical(id="gpus", classes="gpu-cards")
            yield Static("", id="gpu-none", classes="hint")

    def draw(self, snap: MonitorSnapshot) -> None:
        width = self.content_size.width or 80
        self.query_one("#host", Static).update(host_text(snap, width))
        rows = [("cpu", "cpu"), ("ram", "ram")]
        self.query_one("#host-history", Static).update(history_text(self.sampler.history, rows, width))
        none = self.query_one("#gpu-none", Static)
        if not snap.gpu_available:
            none.update(f"No NVIDIA GPU: {no_gpu_reason(snap)}. Host stats stay live.")
        else:
            none.update("" if snap.gpus else "NVML found no GPUs")
        container = self.query_one("#gpus", Vertical)
        cards = {card.index: card for card in container.query(GpuCard)}
        titles = {u.job.id: (u.job.title or u.job.kind) for u in snap.jobs}
        added = False
        for gpu in snap.gpus:
            card = cards.get(gpu.index)
            if card is None:
                container.mount(GpuCard(gpu.index))
                added = True
            else:
                card.show(gpu, self.sampler.history, titles, snap.gpu_process_jobs)
        if added:
            self.call_after_refresh(self.draw, snap)
        self.query_one("#job-usage", Static).update(jobs_text(snap.jobs, width))


class CompactMonitor(SampledView):
    """The side pane: running jobs with progress and loss, GPU and host bars; side by side when wide."""

    DEFAULT_CSS = """
    CompactMonitor { height: auto; layout: vertical; }
    CompactMonitor > Static { height: auto; width: 1fr; }
    CompactMonitor > #compact-jobs { margin-bottom: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="compact-jobs")
        yield Static("", id="compact-resources")

    def draw(self, snap: MonitorSnapshot) -> None:
        jobs = self.query_one("#compact-jobs", Static)
        resources = self.query_one("#compact-resources", Static)
        jobs.update(compact_jobs_text(snap.jobs, jobs.content_size.width or 38))
        resources.update(compact_resources_text(snap, resources.content_size.width or 38))
