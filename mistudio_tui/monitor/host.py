"""Host sampling with psutil: CPU, load, RAM, swap, the home's disk, and per-job process trees."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import psutil


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """One reading of the host; RAM `used` is total minus available, so it agrees with `ram_percent`."""

    cpu_percent: float
    cpu_per_core: tuple[float, ...]
    load_avg: tuple[float, float, float] | None
    ram_used: int
    ram_total: int
    ram_percent: float
    swap_used: int
    swap_total: int
    swap_percent: float
    disk_path: Path
    disk_used: int | None
    disk_total: int | None
    disk_percent: float | None


class ProcessStats(NamedTuple):
    """A process and its descendants together: CPU in percent of one core, RSS in bytes, descendant pids."""

    cpu_percent: float
    rss: int
    children: tuple[int, ...]


class HostMonitor:
    """Samples the host; keeps psutil Process objects across calls so CPU percentages cover the interval.

    Finding a job's descendants scans every process on the host, so the list is reused for
    `children_refresh_s` seconds (0: rescan on every call); CPU and memory are read on every call.
    """

    def __init__(self, home: Path, children_refresh_s: float = 5.0) -> None:
        self.home = Path(home)
        self.children_refresh_s = children_refresh_s
        self._lock = threading.Lock()
        self._procs: dict[int, psutil.Process] = {}
        self._trees: dict[int, tuple[psutil.Process, float, list[psutil.Process]]] = {}
        psutil.cpu_percent(interval=None, percpu=True)

    def sample(self) -> HostSnapshot:
        """CPU since the previous sample, load average, memory, swap and the home's file-system usage."""
        per_core = tuple(float(v) for v in psutil.cpu_percent(interval=None, percpu=True))
        ram = psutil.virtual_memory()
        swap = psutil.swap_memory()
        disk_path = _existing_ancestor(self.home)
        try:
            disk = psutil.disk_usage(str(disk_path))
        except OSError:
            disk = None
        try:
            one, five, fifteen = psutil.getloadavg()
            load: tuple[float, float, float] | None = (float(one), float(five), float(fifteen))
        except (OSError, AttributeError):
            load = None
        return HostSnapshot(
            cpu_percent=sum(per_core) / len(per_core) if per_core else 0.0,
            cpu_per_core=per_core,
            load_avg=load,
            ram_used=int(ram.total - ram.available),
            ram_total=int(ram.total),
            ram_percent=float(ram.percent),
            swap_used=int(swap.used),
            swap_total=int(swap.total),
            swap_percent=float(swap.percent),
            disk_path=disk_path,
            disk_used=None if disk is None else int(disk.used),
            disk_total=None if disk is None else int(disk.total),
            disk_percent=None if disk is None else float(disk.percent),
        )

    def process_stats(self, pids: Iterable[int]) -> dict[int, ProcessStats]:
        """Per pid: CPU and RSS summed over it and its descendants; pids that are gone are left out.

        CPU covers the time since this monitor last saw each process, so a process seen for the first time
        counts 0 on that call.
        """
        with self._lock:
            now = time.monotonic()
            kept: dict[int, psutil.Process] = {}
            trees: dict[int, tuple[psutil.Process, float, list[psutil.Process]]] = {}
            usage: dict[int, tuple[float, int] | None] = {}
            stats: dict[int, ProcessStats] = {}
            for pid in dict.fromkeys(pids):
                root = self._tracked(pid, kept)
                if root is None or self._usage(root, usage) is None:
                    continue
                tree = self._trees.get(pid)
                if tree is None or tree[0] is not root or now - tree[1] >= self.children_refresh_s:
                    try:
                        tree = (root, now, root.children(recursive=True))
                    except psutil.Error:
                        continue
                trees[pid] = tree
                descendants = tree[2]
                cpu, rss = usage[root.pid] or (0.0, 0)
                child_pids: list[int] = []
                for fresh in descendants:
                    proc = self._tracked(fresh.pid, kept, fresh)
                    measured = None if proc is None else self._usage(proc, usage)
                    if measured is None:
                        continue
                    cpu += measured[0]
                    rss += measured[1]
                    child_pids.append(fresh.pid)
                stats[pid] = ProcessStats(cpu, rss, tuple(child_pids))
            self._procs = kept
            self._trees = trees
            return stats

    def _tracked(
        self, pid: int, kept: dict[int, psutil.Process], fresh: psutil.Process | None = None
    ) -> psutil.Process | None:
        """The Process kept from earlier calls when it is still the same process, else a new one."""
        if pid in kept:
            return kept[pid]
        proc = self._procs.get(pid)
        if proc is not None and (proc == fresh if fresh is not None else proc.is_running()):
            kept[pid] = proc
            return proc
        if fresh is None:
            try:
                fresh = psutil.Process(pid)
            except (psutil.Error, ValueError):
                return None
        kept[pid] = fresh
        return fresh

    @staticmethod
    def _usage(proc: psutil.Process, usage: dict[int, tuple[float, int] | None]) -> tuple[float, int] | None:
        """CPU percent and RSS of one process, measured once per call (None when it is gone)."""
        if proc.pid not in usage:
            try:
                with proc.oneshot():
                    usage[proc.pid] = (float(proc.cpu_percent(interval=None)), int(proc.memory_info().rss))
            except psutil.Error:
                usage[proc.pid] = None
        return usage[proc.pid]


def _existing_ancestor(path: Path) -> Path:
    """`path` itself or the nearest parent that exists (the home may not be created yet)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")
