"""NVIDIA GPU sampling through NVML (the `pynvml` module of nvidia-ml-py); no GPU is a normal state."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """One process holding a context on a GPU; `used_memory` is in bytes, None when NVML cannot tell."""

    pid: int
    used_memory: int | None


@dataclass(frozen=True, slots=True)
class GpuSnapshot:
    """One reading of one GPU; any value NVML could not give is None (shown as N/A)."""

    index: int
    name: str | None = None
    uuid: str | None = None
    util_gpu: int | None = None
    util_memory: int | None = None
    memory_used: int | None = None
    memory_total: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    processes: tuple[GpuProcess, ...] | None = None

    @property
    def memory_percent(self) -> float | None:
        """Used memory as a percentage of total, or None when either is unknown."""
        if self.memory_used is None or not self.memory_total:
            return None
        return 100.0 * self.memory_used / self.memory_total


class GpuMonitor:
    """Samples every NVIDIA GPU; initialises NVML on first use and reports why when there is no GPU."""

    def __init__(self, nvml: ModuleType | Any | None = None) -> None:
        self._nvml: Any = nvml  # the pynvml module (untyped), or a test's stand-in; set by the first sample
        self._lock = threading.Lock()
        self._started = False
        self._initialised = False
        self._reason: str | None = None
        self._count = 0
        self._handles: dict[int, Any] = {}
        self._names: dict[int, str] = {}
        self._uuids: dict[int, str] = {}

    @property
    def available(self) -> bool:
        """Whether NVML started and found at least one GPU."""
        with self._lock:
            self._ensure_started()
            return self._reason is None

    @property
    def reason(self) -> str | None:
        """Why no GPU is available (one line for the UI), or None when GPUs are available."""
        with self._lock:
            self._ensure_started()
            return self._reason

    @property
    def device_count(self) -> int:
        """How many GPUs NVML reported (0 when unavailable)."""
        with self._lock:
            self._ensure_started()
            return self._count

    def sample(self) -> list[GpuSnapshot]:
        """One snapshot per GPU in index order; empty when no GPU is available."""
        with self._lock:
            self._ensure_started()
            if self._reason is not None:
                return []
            return [self._sample_device(index) for index in range(self._count)]

    def close(self) -> None:
        """Shut NVML down (if this monitor started it); a later call to `sample` starts it again."""
        with self._lock:
            if self._initialised and self._nvml is not None:
                with contextlib.suppress(Exception):
                    self._nvml.nvmlShutdown()
            self._started = False
            self._initialised = False
            self._reason = None
            self._count = 0
            self._handles.clear()
            self._names.clear()
            self._uuids.clear()

    def __enter__(self) -> GpuMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_started(self) -> None:
        if self._started:
            return
        self._started = True
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                self._reason = "no NVIDIA GPU: the nvidia-ml-py package (pynvml) is not installed"
                return
            self._nvml = pynvml
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except Exception as exc:
            self._reason = _init_failure_reason(nvml, exc)
            return
        self._initialised = True
        try:
            self._count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            self._reason = _init_failure_reason(nvml, exc)
            return
        if self._count <= 0:
            self._reason = "no NVIDIA GPU: NVML found no devices"

    def _sample_device(self, index: int) -> GpuSnapshot:
        nvml = self._nvml
        handle = self._handle(index)
        if handle is None:
            return GpuSnapshot(index=index)
        name = self._names.get(index) or _query(lambda: str(nvml.nvmlDeviceGetName(handle)))
        if name is not None:
            self._names[index] = name
        uuid = self._uuids.get(index) or _query(lambda: str(nvml.nvmlDeviceGetUUID(handle)))
        if uuid is not None:
            self._uuids[index] = uuid
        util = _query(lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        memory = _query(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        power_mw = _query(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        limit_mw = _query(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
        return GpuSnapshot(
            index=index,
            name=name,
            uuid=uuid,
            util_gpu=None if util is None else int(util.gpu),
            util_memory=None if util is None else int(util.memory),
            memory_used=None if memory is None else int(memory.used),
            memory_total=None if memory is None else int(memory.total),
            temperature_c=_query(lambda: int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))),
            power_w=None if power_mw is None else power_mw / 1000.0,
            power_limit_w=None if limit_mw is None else limit_mw / 1000.0,
            sm_clock_mhz=_query(lambda: int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))),
            mem_clock_mhz=_query(lambda: int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM))),
            processes=self._processes(handle),
        )

    def _handle(self, index: int) -> Any | None:
        handle = self._handles.get(index)
        if handle is None:
            handle = _query(lambda: self._nvml.nvmlDeviceGetHandleByIndex(index))
            if handle is not None:
                self._handles[index] = handle
        return handle

    def _processes(self, handle: Any) -> tuple[GpuProcess, ...] | None:
        """Compute and graphics processes merged by pid; None only when both lists failed."""
        nvml = self._nvml
        lists = [
            _query(lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle)),
            _query(lambda: nvml.nvmlDeviceGetGraphicsRunningProcesses(handle)),
        ]
        if all(found is None for found in lists):
            return None
        merged: dict[int, int | None] = {}
        for found in lists:
            for info in found or ():
                pid = int(info.pid)
                used = getattr(info, "usedGpuMemory", None)
                used = None if used is None else int(used)
                previous = merged.get(pid)
                merged[pid] = used if previous is None else max(previous, used or 0)
        return tuple(GpuProcess(pid, used) for pid, used in merged.items())


def gpu_pids(snapshots: Iterable[GpuSnapshot]) -> set[int]:
    """Every pid that holds a context on any of the sampled GPUs."""
    return {proc.pid for snap in snapshots for proc in snap.processes or ()}


def _query(read: Callable[[], T]) -> T | None:
    """The value of one NVML query, or None when it fails (not supported, GPU lost, ...)."""
    try:
        return read()
    except Exception:
        return None


def _init_failure_reason(nvml: Any, exc: BaseException) -> str:
    """A one-line explanation of why NVML could not start."""
    not_found = getattr(nvml, "NVMLError_LibraryNotFound", None)
    not_loaded = getattr(nvml, "NVMLError_DriverNotLoaded", None)
    if not_found is not None and isinstance(exc, not_found):
        return "no NVIDIA GPU: the NVML library (libnvidia-ml.so.1) was not found"
    if not_loaded is not None and isinstance(exc, not_loaded):
        return "no NVIDIA GPU: the NVIDIA driver is not loaded"
    nvml_error = getattr(nvml, "NVMLError", None)
    if nvml_error is not None and isinstance(exc, nvml_error):
        return f"no NVIDIA GPU: NVML failed to start ({exc})"
    return f"no NVIDIA GPU: NVML failed to start ({type(exc).__name__}: {exc})"
