"""Fixed monitor inputs for UI tests: a host reading that never changes and DB rows for running jobs."""

from __future__ import annotations

from pathlib import Path

from mistudio_tui.db.models import Job, Training
from mistudio_tui.monitor.host import HostSnapshot, ProcessStats
from mistudio_tui.monitor.snapshot import MonitorSampler
from tests.fake_nvml import FakeDevice, FakeNvml

GIB = 2**30
TRAIN_PID = 4_100_001
EXTRACT_PID = 4_100_002
STRANGER_PID = 4_100_003


class FixedHost:
    """A HostSource with one constant reading, so snapshots do not depend on the machine."""

    def sample(self) -> HostSnapshot:
        return HostSnapshot(
            cpu_percent=42.5,
            cpu_per_core=(10.0, 75.0, 50.0, 35.0),
            load_avg=(1.5, 1.25, 1.0),
            ram_used=12 * GIB,
            ram_total=32 * GIB,
            ram_percent=37.5,
            swap_used=1 * GIB,
            swap_total=4 * GIB,
            swap_percent=25.0,
            disk_path=Path("/srv"),
            disk_used=200 * GIB,
            disk_total=500 * GIB,
            disk_percent=40.0,
        )

    def process_stats(self, pids: list[int]) -> dict[int, ProcessStats]:
        return {pid: ProcessStats(99.0, 3 * GIB, ()) for pid in pids}


def fake_gpus() -> FakeNvml:
    """Two GPUs: the training job's worker on GPU 0, a process that is not miStudio's on GPU 1."""
    return FakeNvml(
        [
            FakeDevice(name="NVIDIA Fake A", util_gpu=81, compute_processes=[(TRAIN_PID, 5 * GIB)]),
            FakeDevice(
                name="NVIDIA Fake B",
                util_gpu=5,
                memory_used=70 * GIB,
                compute_processes=[(STRANGER_PID, 2 * GIB)],
            ),
        ]
    )


def running_jobs() -> tuple[Job, Job]:
    """A training at 45% with a loss, and a feature extraction at 10%, both running."""
    train = Job.create(
        kind="train", title="train topk-16k", status="running", pid=TRAIN_PID, progress_done=450, progress_total=1000
    )
    Training.create(name="topk-16k", job=train, loss=0.0123, status="running")
    extract = Job.create(
        kind="extract_features",
        title="features of topk-16k",
        status="running",
        pid=EXTRACT_PID,
        progress_done=1,
        progress_total=10,
    )
    return train, extract


def fixed_sampler(home: Path, nvml: FakeNvml | None = None) -> MonitorSampler:
    """A sampler over the fixed host and the given fake NVML (default: no GPU)."""
    no_gpu = FakeNvml(init_error=FakeNvml.NVMLError_LibraryNotFound())
    return MonitorSampler(home, nvml=nvml if nvml is not None else no_gpu, host=FixedHost())
