"""HostMonitor.sample: system-wide CPU, load, memory and disk readings are sane."""

from __future__ import annotations

from pathlib import Path

import psutil

from mistudio_tui.monitor.history import History
from mistudio_tui.monitor.host import HostMonitor


def test_sample_returns_sane_numbers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monitor = HostMonitor(home)
    monitor.sample()
    snap = monitor.sample()
    assert len(snap.cpu_per_core) == psutil.cpu_count()
    assert all(0.0 <= v <= 100.0 for v in snap.cpu_per_core)
    assert 0.0 <= snap.cpu_percent <= 100.0
    assert min(snap.cpu_per_core) <= snap.cpu_percent <= max(snap.cpu_per_core)
    assert snap.load_avg is not None and len(snap.load_avg) == 3 and min(snap.load_avg) >= 0.0
    assert 0 < snap.ram_used <= snap.ram_total
    assert 0.0 < snap.ram_percent <= 100.0
    assert abs(100 * snap.ram_used / snap.ram_total - snap.ram_percent) < 1.0
    assert 0 <= snap.swap_used <= snap.swap_total
    assert snap.disk_path == home
    assert snap.disk_total is not None and snap.disk_used is not None and snap.disk_percent is not None
    assert 0 < snap.disk_used <= snap.disk_total
    assert snap.disk_total == psutil.disk_usage(str(tmp_path)).total


def test_disk_of_a_home_not_yet_created_is_its_nearest_existing_parent(tmp_path: Path) -> None:
    snap = HostMonitor(tmp_path / "not" / "yet" / "there").sample()
    assert snap.disk_path == tmp_path
    assert snap.disk_total is not None and snap.disk_total > 0


def test_snapshots_feed_a_history(tmp_path: Path) -> None:
    monitor = HostMonitor(tmp_path)
    history = History(maxlen=2)
    for _ in range(3):
        snap = monitor.sample()
        history.record({"cpu": snap.cpu_percent, "ram": snap.ram_percent})
    assert len(history.series("cpu")) == len(history.series("ram")) == 2
    assert history.last("ram") == snap.ram_percent
