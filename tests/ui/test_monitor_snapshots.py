"""Snapshots of the monitor app, compact and full, at 40x30 (a tmux side pane) and 120x40, with a fake NVML."""

from __future__ import annotations

import pytest

from mistudio_tui.ui.monitor_app import MonitorApp
from tests.monitor_fixtures import fake_gpus, fixed_sampler, running_jobs

SIZES = {"narrow": (40, 30), "wide": (120, 40)}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("compact", [True, False], ids=["compact", "full"])
def test_monitor_app_snapshot(snap_compare, studio, compact, size):
    running_jobs()
    sampler = fixed_sampler(studio.paths.home, fake_gpus())
    app = MonitorApp(studio.paths.home, interval=3600, compact=compact, sampler=sampler)
    assert snap_compare(app, press=["_", "_"], terminal_size=SIZES[size])


def test_compact_without_gpu_snapshot(snap_compare, studio):
    running_jobs()
    app = MonitorApp(studio.paths.home, interval=3600, compact=True, sampler=fixed_sampler(studio.paths.home))
    assert snap_compare(app, press=["_", "_"], terminal_size=SIZES["narrow"])
