"""A fake NVML module for tests: the pynvml names the monitor uses, with devices and failures set per test."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2

NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999


class NVMLError(Exception):
    """Like pynvml.NVMLError: carries the NVML return code in `value`."""

    code = NVML_ERROR_UNKNOWN

    def __init__(self, value: int | None = None) -> None:
        self.value = self.code if value is None else value
        super().__init__(self.value)

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")


class NVMLError_Uninitialized(NVMLError):
    code = NVML_ERROR_UNINITIALIZED


class NVMLError_NotSupported(NVMLError):
    code = NVML_ERROR_NOT_SUPPORTED


class NVMLError_DriverNotLoaded(NVMLError):
    code = NVML_ERROR_DRIVER_NOT_LOADED


class NVMLError_LibraryNotFound(NVMLError):
    code = NVML_ERROR_LIBRARY_NOT_FOUND


class NVMLError_GpuIsLost(NVMLError):
    code = NVML_ERROR_GPU_IS_LOST


class NVMLError_Unknown(NVMLError):
    code = NVML_ERROR_UNKNOWN


_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}

# Every query the monitor makes, by the name a test uses to make it fail.
QUERIES = (
    "handle",
    "name",
    "uuid",
    "utilization",
    "memory",
    "temperature",
    "power",
    "power_limit",
    "sm_clock",
    "mem_clock",
    "compute_processes",
    "graphics_processes",
)


@dataclass
class FakeDevice:
    """One fake GPU; `failing` maps a query name (see QUERIES) to the error it raises."""

    name: str = "NVIDIA Fake 80GB"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    util_gpu: int = 37
    util_memory: int = 12
    memory_used: int = 3 * 2**30
    memory_total: int = 80 * 2**30
    temperature_c: int = 54
    power_mw: int = 123_456
    power_limit_mw: int = 700_000
    sm_clock_mhz: int = 1755
    mem_clock_mhz: int = 2619
    compute_processes: list[tuple[int, int | None]] = field(default_factory=list)
    graphics_processes: list[tuple[int, int | None]] = field(default_factory=list)
    failing: dict[str, type[NVMLError]] = field(default_factory=dict)

    def check(self, query: str) -> None:
        """Raise the configured error when `query` is set to fail."""
        error = self.failing.get(query)
        if error is not None:
            raise error()


class FakeNvml:
    """Stands in for the pynvml module: pass an instance as `GpuMonitor(nvml=...)`."""

    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    NVML_CLOCK_SM = NVML_CLOCK_SM
    NVML_CLOCK_MEM = NVML_CLOCK_MEM
    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_Unknown = NVMLError_Unknown

    def __init__(self, devices: list[FakeDevice] | None = None, init_error: BaseException | None = None) -> None:
        self.devices = list(devices or [])
        self.init_error = init_error
        self.init_calls = 0
        self.shutdown_calls = 0
        self.initialised = False
        self.calls: dict[str, int] = {}

    @classmethod
    def with_gpus(cls, count: int) -> FakeNvml:
        """A fake with `count` healthy GPUs, each with its own name and uuid."""
        return cls(
            [FakeDevice(name=f"NVIDIA Fake {i}", uuid=f"GPU-fake-{i:04d}", util_gpu=10 + i) for i in range(count)]
        )

    def _device(self, handle: Any, query: str) -> FakeDevice:
        if not self.initialised:
            raise NVMLError_Uninitialized()
        self.calls[query] = self.calls.get(query, 0) + 1
        device: FakeDevice = handle
        device.check(query)
        return device

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise self.init_error
        self.initialised = True

    def nvmlShutdown(self) -> None:
        if not self.initialised:
            raise NVMLError_Uninitialized()
        self.shutdown_calls += 1
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        if not self.initialised:
            raise NVMLError_Uninitialized()
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeDevice:
        return self._device(self.devices[index], "handle")

    def nvmlDeviceGetName(self, handle: FakeDevice) -> str:
        return self._device(handle, "name").name

    def nvmlDeviceGetUUID(self, handle: FakeDevice) -> str:
        return self._device(handle, "uuid").uuid

    def nvmlDeviceGetUtilizationRates(self, handle: FakeDevice) -> SimpleNamespace:
        device = self._device(handle, "utilization")
        return SimpleNamespace(gpu=device.util_gpu, memory=device.util_memory)

    def nvmlDeviceGetMemoryInfo(self, handle: FakeDevice) -> SimpleNamespace:
        device = self._device(handle, "memory")
        free = device.memory_total - device.memory_used
        return SimpleNamespace(total=device.memory_total, free=free, used=device.memory_used)

    def nvmlDeviceGetTemperature(self, handle: FakeDevice, sensor: int) -> int:
        device = self._device(handle, "temperature")
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError_NotSupported()
        return device.temperature_c

    def nvmlDeviceGetPowerUsage(self, handle: FakeDevice) -> int:
        return self._device(handle, "power").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeDevice) -> int:
        return self._device(handle, "power_limit").power_limit_mw

    def nvmlDeviceGetClockInfo(self, handle: FakeDevice, clock_type: int) -> int:
        if clock_type == NVML_CLOCK_SM:
            return self._device(handle, "sm_clock").sm_clock_mhz
        if clock_type == NVML_CLOCK_MEM:
            return self._device(handle, "mem_clock").mem_clock_mhz
        raise NVMLError_NotSupported()

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeDevice) -> list[SimpleNamespace]:
        device = self._device(handle, "compute_processes")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in device.compute_processes]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeDevice) -> list[SimpleNamespace]:
        device = self._device(handle, "graphics_processes")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in device.graphics_processes]
