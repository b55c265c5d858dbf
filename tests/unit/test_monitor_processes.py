"""Real process trees: per-job CPU/RSS over a worker's descendants, and GPU-pid-to-job correlation."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from mistudio_tui.monitor import correlate
from mistudio_tui.monitor.correlate import match_processes_to_jobs
from mistudio_tui.monitor.host import HostMonitor

BUSY = "while True: pass"
IDLE = "import time; time.sleep(120)"

SpawnChain = Callable[[int, str], list[int]]


def chain_code(depth: int, leaf: str) -> str:
    """Code that starts a chain of `depth` processes, each the parent of the next; the last runs `leaf`."""
    code = leaf
    for _ in range(depth - 1):
        code = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {code!r}]).wait()"
    return code


@pytest.fixture
def spawn_chain() -> Iterator[SpawnChain]:
    """Start process chains (root -> child -> ...) and return their pids, root first; kill them afterwards."""
    started: list[tuple[subprocess.Popen[bytes], list[int]]] = []

    def spawn(depth: int, leaf: str) -> list[int]:
        root = subprocess.Popen([sys.executable, "-c", chain_code(depth, leaf)])
        pids = [root.pid]
        started.append((root, pids))
        deadline = time.monotonic() + 30
        while len(pids) < depth:
            kids = psutil.Process(pids[-1]).children()
            if kids:
                pids.append(kids[0].pid)
            elif time.monotonic() > deadline:
                raise AssertionError(f"process chain stopped at {len(pids)} of {depth}")
            else:
                time.sleep(0.02)
        return pids

    yield spawn
    for root, pids in started:
        for pid in reversed(pids):
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        root.wait(timeout=30)


def reaped_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- process_stats ----------------------------------------------------------------------------------------


def test_busy_descendant_counts_towards_its_worker(tmp_path: Path, spawn_chain: SpawnChain) -> None:
    worker, busy = spawn_chain(2, BUSY)
    monitor = HostMonitor(tmp_path)
    first = monitor.process_stats([worker])
    assert first[worker].children == (busy,)
    time.sleep(0.3)
    second = monitor.process_stats([worker])
    stats = second[worker]
    assert stats.children == (busy,)
    assert stats.cpu_percent > 0.0
    both_rss = psutil.Process(worker).memory_info().rss + psutil.Process(busy).memory_info().rss
    assert abs(stats.rss - both_rss) <= 0.1 * both_rss


def test_each_process_is_measured_once_per_call(tmp_path: Path, spawn_chain: SpawnChain) -> None:
    worker, busy = spawn_chain(2, BUSY)
    monitor = HostMonitor(tmp_path)
    monitor.process_stats([worker, busy])
    time.sleep(0.3)
    stats = monitor.process_stats([busy, worker])
    assert stats[busy].cpu_percent > 0.0
    assert stats[worker].cpu_percent >= stats[busy].cpu_percent
    assert stats[busy].children == ()


def test_gone_and_invalid_pids_are_skipped(tmp_path: Path) -> None:
    gone = reaped_pid()
    monitor = HostMonitor(tmp_path)
    stats = monitor.process_stats([gone, -5, os.getpid()])
    assert set(stats) == {os.getpid()}
    assert stats[os.getpid()].rss > 0


def test_worker_exiting_between_samples_is_dropped(tmp_path: Path, spawn_chain: SpawnChain) -> None:
    (worker,) = spawn_chain(1, IDLE)
    monitor = HostMonitor(tmp_path)
    assert worker in monitor.process_stats([worker])
    psutil.Process(worker).kill()
    psutil.Process(worker).wait(timeout=30)
    assert monitor.process_stats([worker, os.getpid()]).keys() == {os.getpid()}


def test_descendants_are_rescanned_after_the_refresh_period(tmp_path: Path, spawn_chain: SpawnChain) -> None:
    me = os.getpid()
    every_call = HostMonitor(tmp_path, children_refresh_s=0)
    cached = HostMonitor(tmp_path, children_refresh_s=3600)
    (first,) = spawn_chain(1, IDLE)
    assert first in every_call.process_stats([me])[me].children
    assert first in cached.process_stats([me])[me].children
    (second,) = spawn_chain(1, IDLE)
    assert second in every_call.process_stats([me])[me].children
    assert second not in cached.process_stats([me])[me].children
    psutil.Process(first).kill()
    psutil.Process(first).wait(timeout=30)
    assert first not in cached.process_stats([me])[me].children


# --- correlation ------------------------------------------------------------------------------------------


def test_grandchild_gpu_process_maps_to_the_worker_job(spawn_chain: SpawnChain) -> None:
    worker, child, grandchild = spawn_chain(3, IDLE)
    (other,) = spawn_chain(1, IDLE)
    matches = match_processes_to_jobs([grandchild, child, worker, other, os.getpid()], {worker: 7})
    assert matches == {grandchild: 7, child: 7, worker: 7}


def test_nearest_recorded_worker_wins(spawn_chain: SpawnChain) -> None:
    worker, child, grandchild = spawn_chain(3, IDLE)
    assert match_processes_to_jobs([grandchild], {worker: 1, child: 2}) == {grandchild: 2}


def test_vanished_processes_are_left_out(spawn_chain: SpawnChain) -> None:
    worker, child = spawn_chain(2, IDLE)
    gone = reaped_pid()
    assert match_processes_to_jobs([gone, child, -1, 0], {worker: 3}) == {child: 3}


def test_walk_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    visited: list[int] = []

    def endless_parent(pid: int) -> int:
        visited.append(pid)
        return pid + 1

    monkeypatch.setattr(correlate, "_parent_pid", endless_parent)
    assert match_processes_to_jobs([10], {10_000: 1}) == {}
    assert len(visited) <= correlate.MAX_DEPTH

    monkeypatch.setattr(correlate, "_parent_pid", lambda pid: 21 if pid == 20 else 20)
    assert match_processes_to_jobs([20], {99: 1}) == {}
