"""Monitor panels: host, GPU cards and per-job usage, rendered from a MonitorSnapshot at any width."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from mistudio_tui.monitor.history import History
from mistudio_tui.monitor.nvml import GpuSnapshot
from mistudio_tui.monitor.snapshot import JobUsage, MonitorSnapshot
from mistudio_tui.ui import format as fmt

GIB = 1024**3


def na(value: object, suffix: str = "") -> str:
    """'N/A' for a value NVML could not read."""
    return "N/A" if value is None else f"{value}{suffix}"


def gib(n: int | None) -> str:
    return "N/A" if n is None else f"{n / GIB:.1f}"


def meter(label: str, percent: float | None, detail: str, width: int) -> Text:
    """'CPU  ███████░░░  23%  detail' fitted to `width` columns."""
    bar_width = max(6, min(30, width - len(label) - len(detail) - 10))
    text = Text(f"{label:<5}")
    frac = None if percent is None else percent / 100
    style = "green" if (percent or 0) < 70 else "yellow" if (percent or 0) < 90 else "red"
    text.append(fmt.bar(frac, bar_width), style=style)
    text.append(f" {na(None if percent is None else round(percent), '%'):>4}")
    if detail:
        text.append(f"  {detail}", style="dim")
    return text


def host_text(snap: MonitorSnapshot, width: int) -> Text:
    h = snap.host
    text = Text()
    text.append_text(meter("CPU", h.cpu_percent, f"{len(h.cpu_per_core)} cores", width))
    text.append("\n")
    if h.cpu_per_core and width >= 50:
        cores = Text("cores ", style="dim")
        blocks = " ▁▂▃▄▅▆▇█"
        for pct in h.cpu_per_core:
            cores.append(blocks[min(int(pct / 100 * 8 + 0.5), 8)], style="green")
        text.append_text(cores)
        text.append("\n")
    text.append_text(meter("RAM", h.ram_percent, f"{gib(h.ram_used)}/{gib(h.ram_total)} GiB", width))
    text.append("\n")
    if h.swap_total:
        text.append_text(meter("swap", h.swap_percent, f"{gib(h.swap_used)}/{gib(h.swap_total)} GiB", width))
        text.append("\n")
    text.append_text(meter("disk", h.disk_percent, f"{gib(h.disk_used)}/{gib(h.disk_total)} GiB home", width))
    if h.load_avg and width >= 50:
        text.append(f"\nload {h.load_avg[0]:.2f} {h.load_avg[1]:.2f} {h.load_avg[2]:.2f}", style="dim")
    return text


def gpu_text(gpu: GpuSnapshot, jobs: dict[int, str], pid_jobs: dict[int, int], width: int) -> Text:
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
    if not usages:
        return Text("no jobs running", style="dim")
    text = Text()
    for u in usages:
        title = (u.job.title or u.job.kind)[: max(10, width - 34)]
        cpu = "N/A" if u.cpu_percent is None else f"{u.cpu_percent:.0f}%"
        rss = "N/A" if u.rss is None else f"{u.rss / GIB:.2f}G"
        gpus = " ".join(f"gpu{i}:{gib(m)}G" for i, m in u.gpu_memory.items())
        text.append(f"#{u.job.id} {title}  cpu {cpu} rss {rss} {gpus}\n")
    return text


class GpuCard(Vertical):
    """One GPU: numbers and processes, with utilisation history."""

    def __init__(self, index: int) -> None:
        super().__init__(classes="gpu-card", id=f"gpu-{index}")
        self.index = index

    def compose(self) -> ComposeResult:
        yield Static("", classes="gpu-text")
        yield Sparkline([], summary_function=max, classes="gpu-spark")

    def show(self, gpu: GpuSnapshot, history: History, jobs: dict[int, str], pid_jobs: dict[int, int]) -> None:
        width = self.size.width or 60
        self.query_one(".gpu-text", Static).update(gpu_text(gpu, jobs, pid_jobs, width))
        self.query_one(Sparkline).data = history.series(f"gpu{self.index}.util") or [0]
