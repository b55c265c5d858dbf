"""GpuMonitor against a fake NVML: values, per-query failures, missing GPUs and lifecycle."""

from __future__ import annotations

import dataclasses

import pytest

from mistudio_tui.monitor.nvml import GpuMonitor, GpuProcess, GpuSnapshot, gpu_pids
from tests.fake_nvml import QUERIES, FakeDevice, FakeNvml, NVMLError_GpuIsLost, NVMLError_NotSupported

# The snapshot fields each fake query feeds.
FIELDS_BY_QUERY = {
    "name": ("name",),
    "uuid": ("uuid",),
    "utilization": ("util_gpu", "util_memory"),
    "memory": ("memory_used", "memory_total"),
    "temperature": ("temperature_c",),
    "power": ("power_w",),
    "power_limit": ("power_limit_w",),
    "sm_clock": ("sm_clock_mhz",),
    "mem_clock": ("mem_clock_mhz",),
}
VALUE_FIELDS = tuple(f.name for f in dataclasses.fields(GpuSnapshot) if f.name not in ("index", "processes"))


def expected_values(device: FakeDevice) -> dict[str, object]:
    """What a healthy reading of `device` must show, in snapshot units."""
    return {
        "name": device.name,
        "uuid": device.uuid,
        "util_gpu": device.util_gpu,
        "util_memory": device.util_memory,
        "memory_used": device.memory_used,
        "memory_total": device.memory_total,
        "temperature_c": device.temperature_c,
        "power_w": device.power_mw / 1000,
        "power_limit_w": device.power_limit_mw / 1000,
        "sm_clock_mhz": device.sm_clock_mhz,
        "mem_clock_mhz": device.mem_clock_mhz,
    }


def values_of(snap: GpuSnapshot) -> dict[str, object]:
    return {name: getattr(snap, name) for name in VALUE_FIELDS}


def test_every_query_has_a_field_mapping() -> None:
    assert set(FIELDS_BY_QUERY) | {"handle", "compute_processes", "graphics_processes"} == set(QUERIES)
    assert {f for fields in FIELDS_BY_QUERY.values() for f in fields} == set(VALUE_FIELDS)


def test_samples_every_gpu_with_its_values() -> None:
    fake = FakeNvml.with_gpus(3)
    monitor = GpuMonitor(nvml=fake)
    assert monitor.available and monitor.reason is None and monitor.device_count == 3
    snaps = monitor.sample()
    assert [s.index for s in snaps] == [0, 1, 2]
    for snap, device in zip(snaps, fake.devices, strict=True):
        assert values_of(snap) == expected_values(device)
        assert snap.processes == ()
        assert snap.memory_percent == pytest.approx(100 * device.memory_used / device.memory_total)


def test_processes_merge_compute_and_graphics_lists_by_pid() -> None:
    device = FakeDevice(
        compute_processes=[(100, 2**30), (101, None)],
        graphics_processes=[(100, 2**30), (102, 5 * 2**20), (101, 7 * 2**20)],
    )
    snap = GpuMonitor(nvml=FakeNvml([device])).sample()[0]
    assert snap.processes is not None
    by_pid = {p.pid: p.used_memory for p in snap.processes}
    assert len(snap.processes) == len(by_pid) == 3
    assert by_pid == {100: 2**30, 101: 7 * 2**20, 102: 5 * 2**20}
    assert gpu_pids([snap]) == {100, 101, 102}


def test_init_is_lazy_and_happens_once() -> None:
    fake = FakeNvml.with_gpus(1)
    monitor = GpuMonitor(nvml=fake)
    assert fake.init_calls == 0
    monitor.sample()
    monitor.sample()
    assert monitor.available
    assert fake.init_calls == 1


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (FakeNvml.NVMLError_LibraryNotFound(), "library"),
        (FakeNvml.NVMLError_DriverNotLoaded(), "driver is not loaded"),
        (FakeNvml.NVMLError_Unknown(), "Unknown Error"),
        (OSError("libnvidia-ml.so.1: cannot open shared object file"), "cannot open shared object"),
    ],
)
def test_init_failure_means_no_gpu_with_a_reason(error: BaseException, words: str) -> None:
    fake = FakeNvml([FakeDevice()], init_error=error)
    monitor = GpuMonitor(nvml=fake)
    assert monitor.sample() == []
    assert monitor.available is False
    reason = monitor.reason
    assert reason is not None and reason.startswith("no NVIDIA GPU") and "\n" not in reason
    assert words in reason
    assert monitor.device_count == 0
    monitor.close()
    assert fake.shutdown_calls == 0


def test_zero_devices_is_unavailable() -> None:
    fake = FakeNvml([])
    monitor = GpuMonitor(nvml=fake)
    assert monitor.sample() == []
    assert not monitor.available
    assert "no devices" in (monitor.reason or "")
    monitor.close()
    assert fake.shutdown_calls == 1


@pytest.mark.parametrize("query", sorted(FIELDS_BY_QUERY))
def test_one_failing_query_blanks_only_its_values_on_that_gpu(query: str) -> None:
    fake = FakeNvml.with_gpus(2)
    fake.devices[1].compute_processes = [(4242, 2**20)]
    fake.devices[1].failing[query] = NVMLError_NotSupported
    snaps = GpuMonitor(nvml=fake).sample()
    assert values_of(snaps[0]) == expected_values(fake.devices[0])
    wanted = expected_values(fake.devices[1])
    for name in FIELDS_BY_QUERY[query]:
        wanted[name] = None
    assert values_of(snaps[1]) == wanted
    assert snaps[1].processes == (GpuProcess(4242, 2**20),)


def test_one_process_list_failing_keeps_the_other() -> None:
    device = FakeDevice(compute_processes=[(7, 100)], failing={"graphics_processes": NVMLError_NotSupported})
    snap = GpuMonitor(nvml=FakeNvml([device])).sample()[0]
    assert snap.processes == (GpuProcess(7, 100),)


def test_both_process_lists_failing_gives_none() -> None:
    device = FakeDevice(
        compute_processes=[(7, 100)],
        failing={"compute_processes": NVMLError_NotSupported, "graphics_processes": NVMLError_NotSupported},
    )
    snap = GpuMonitor(nvml=FakeNvml([device])).sample()[0]
    assert snap.processes is None
    assert snap.util_gpu == device.util_gpu


def test_gpu_without_a_handle_is_listed_with_no_values() -> None:
    fake = FakeNvml.with_gpus(2)
    fake.devices[0].failing["handle"] = NVMLError_GpuIsLost
    snaps = GpuMonitor(nvml=fake).sample()
    assert snaps[0] == GpuSnapshot(index=0)
    assert values_of(snaps[1]) == expected_values(fake.devices[1])


def test_gpu_failing_mid_run_does_not_break_the_others() -> None:
    fake = FakeNvml.with_gpus(2)
    monitor = GpuMonitor(nvml=fake)
    first = monitor.sample()
    assert values_of(first[0]) == expected_values(fake.devices[0])
    fake.devices[0].failing = dict.fromkeys(QUERIES, NVMLError_GpuIsLost)
    lost, healthy = monitor.sample()
    assert values_of(healthy) == expected_values(fake.devices[1])
    # Name and uuid were read while the GPU was healthy, so the lost GPU stays identifiable.
    assert (lost.name, lost.uuid) == (first[0].name, first[0].uuid)
    assert all(v is None for k, v in values_of(lost).items() if k not in ("name", "uuid"))
    assert lost.processes is None


def test_close_shuts_down_once_and_sampling_restarts() -> None:
    fake = FakeNvml.with_gpus(1)
    with GpuMonitor(nvml=fake) as monitor:
        assert len(monitor.sample()) == 1
    assert fake.shutdown_calls == 1 and not fake.initialised
    monitor.close()
    assert fake.shutdown_calls == 1
    assert len(monitor.sample()) == 1
    assert fake.init_calls == 2
    monitor.close()
    assert fake.shutdown_calls == 2


def test_real_pynvml_never_raises() -> None:
    monitor = GpuMonitor()
    try:
        snaps = monitor.sample()
        if monitor.available:
            assert len(snaps) == monitor.device_count > 0
            assert all(s.name for s in snaps)
        else:
            assert snaps == []
            assert (monitor.reason or "").startswith("no NVIDIA GPU")
    finally:
        monitor.close()
