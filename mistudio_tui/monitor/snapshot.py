"""One monitor reading: host, GPUs, and the miStudio jobs using them (shared by the screen and the side pane)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mistudio_tui.db.models import Job, Training
from mistudio_tui.monitor.correlate import match_processes_to_jobs
from mistudio_tui.monitor.history import History
from mistudio_tui.monitor.host import HostMonitor, HostSnapshot, ProcessStats
from mistudio_tui.monitor.nvml import GpuMonitor, GpuSnapshot, gpu_pids


class HostSource(Protocol):
    """What the sampler needs from the host side (HostMonitor, or a fixed reading in tests)."""

    def sample(self) -> HostSnapshot: ...

    def process_stats(self, pids: list[int]) -> dict[int, ProcessStats]: ...


@dataclass
class JobUsage:
    """A running job and what it uses: CPU (% of one core), RSS bytes, GPU memory per GPU index, latest loss."""

    job: Job
    cpu_percent: float | None = None
    rss: int | None = None
    loss: float | None = None
    gpu_memory: dict[int, int | None] = field(default_factory=dict)


@dataclass
class MonitorSnapshot:
    """Everything one refresh of a monitor view shows."""

    host: HostSnapshot
    gpus: list[GpuSnapshot]
    gpu_available: bool
    gpu_reason: str | None
    jobs: list[JobUsage]
    gpu_process_jobs: dict[int, int]  # GPU pid -> job id


class MonitorSampler:
    """Keeps the monitors and a history across samples; `sample()` is cheap (about a millisecond)."""

    def __init__(
        self, home: Path, nvml: object | None = None, history: int = 120, host: HostSource | None = None
    ) -> None:
        self.host: HostSource = host if host is not None else HostMonitor(home)
        self.gpu = GpuMonitor(nvml)
        self.history = History(maxlen=history)

    def sample(self) -> MonitorSnapshot:
        """Read the host, every GPU and the running jobs (with their processes and latest training loss)."""
        host = self.host.sample()
        gpus = self.gpu.sample()
        running = list(Job.select().where(Job.status == "running", Job.pid.is_null(False)).order_by(Job.id))
        job_pids = {j.pid: j.id for j in running if j.pid is not None}  # (the query left out jobs without one)
        losses = latest_losses([j.id for j in running])
        mapping = match_processes_to_jobs(gpu_pids(gpus), job_pids) if gpus and job_pids else {}
        stats = self.host.process_stats(list(job_pids))
        usages = []
        for job in running:
            usage = JobUsage(job, loss=losses.get(job.id))
            st = stats.get(job.pid) if job.pid is not None else None
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
        """Shut NVML down."""
        self.gpu.close()


def latest_losses(job_ids: list[int]) -> dict[int, float]:
    """The latest recorded loss of the training each job runs, by job id (jobs without one are left out)."""
    if not job_ids:
        return {}
    rows = Training.select(Training.job, Training.loss).where(Training.job.in_(job_ids), Training.loss.is_null(False))
    return {row.job_id: float(row.loss) for row in rows if row.job_id is not None and row.loss is not None}
