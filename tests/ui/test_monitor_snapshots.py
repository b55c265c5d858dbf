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


@pytest.fixture
def inline_driver(monkeypatch):
    """Run the headless test driver as `mistudio monitor --inline` runs: the screen as tall as its content."""
    from textual.drivers.headless_driver import HeadlessDriver

    monkeypatch.setattr(HeadlessDriver, "is_inline", property(lambda self: True))


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("compact", [True, False], ids=["compact", "full"])
def test_inline_monitor_snapshot(snap_compare, studio, inline_driver, compact, size):
    running_jobs()
    sampler = fixed_sampler(studio.paths.home, fake_gpus())
    app = MonitorApp(studio.paths.home, interval=3600, compact=compact, sampler=sampler)
    assert snap_compare(app, press=["_", "_"], terminal_size=SIZES[size])


async def test_inline_monitor_draws_the_jobs_and_bars(studio, inline_driver):
    running_jobs()
    sampler = fixed_sampler(studio.paths.home, fake_gpus())
    for width in (40, 120):
        app = MonitorApp(studio.paths.home, interval=3600, sampler=sampler)
        async with app.run_test(size=(width, 40)) as pilot:
            await pilot.pause()
            assert app.is_inline
            panel = app.screen.query_one("MonitorPanel")
            assert panel.region.height > 10, width  # it got one line (the header and footer took the rest)
            for selector in ("#host", "#job-usage"):
                assert panel.region.contains_region(app.screen.query_one(selector).region), (width, selector)
            assert "train topk-16k" in str(app.screen.query_one("#job-usage").render())
