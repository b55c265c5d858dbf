"""One monitor reading: host, GPUs, and the miStudio jobs using them (shared by the screen and the side pane)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mistudio_tui.db.models import Job
from mistudio_tui.monitor.correlate import match_processes_to_jobs
from mistudio_tui.monitor.history import History
from mistudio_tui.monitor.host import HostMonitor, HostSnapshot
from mistudio_tui.monitor.nvml import GpuMonitor, GpuSnapshot, gpu_pids


@dataclass
class JobUsage:
    """A running job and what it uses: CPU (% of one core), RSS bytes, and GPU memory per GPU index."""

    job: Job
    cpu_percent: float | None = None
    rss: int | None = None
    gpu_memory: dict[int, int | None] = field(default_factory=dict)


@dataclass
class MonitorSnapshot:
    host: HostSnapshot
    gpus: list[GpuSnapshot]
    gpu_available: bool
    gpu_reason: str | None
    jobs: list[JobUsage]
    gpu_process_jobs: dict[int, int]  # GPU pid -> job id


class MonitorSampler:
    """Keeps the monitors and a history across samples; `sample()` is cheap (about a millisecond)."""

    def __init__(self, home: Path, nvml: object | None = None, history: int = 120) -> None:
        self.host = HostMonitor(home)
        self.gpu = GpuMonitor(nvml)
        self.history = History(maxlen=history)

    def sample(self) -> MonitorSnapshot:
        host = self.host.sample()
        gpus = self.gpu.sample()
        running = list(Job.select().where(Job.status == "running", Job.pid.is_null(False)))
        job_pids = {j.pid: j.id for j in running}
        mapping = match_processes_to_jobs(gpu_pids(gpus), job_pids) if gpus and job_pids else {}
        stats = self.host.process_stats(list(job_pids))
        usages = []
        for job in running:
            usage = JobUsage(job)
            st = stats.get(job.pid)
            if st is not None:
                usage.cpu_percent, usage.rss = st.cpu_percent, st.rss
            for gpu in gpus:
                for proc in gpu.processes or ():
                    if mapping.get(proc.pid) == job.id:
                        usage.gpu_memory[gpu.index] = (usage.gpu_memory.get(gpu.index) or 0) + (proc.used_memory or 0)
            usages.append(usage)
        self.history.append("cpu", host.cpu_percent)
        self.history.append("ram", host.ram_percent)
        for gpu in gpus:
            self.history.append(f"gpu{gpu.index}.util", gpu.util_gpu)
            self.history.append(f"gpu{gpu.index}.mem", gpu.memory_percent)
        return MonitorSnapshot(host, gpus, self.gpu.available, self.gpu.reason, usages, mapping)

    def close(self) -> None:
        self.gpu.close()
