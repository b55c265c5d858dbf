"""The monitor app and the Monitor screen: live refresh from the DB, GPU errors as N/A, no GPU, CLI options."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mistudio_tui.cli.main import main
from mistudio_tui.db.models import Job, Training
from mistudio_tui.ui.monitor_app import MonitorApp
from mistudio_tui.ui.widgets.monitor_view import CompactMonitor, MonitorPanel
from tests.monitor_fixtures import fake_gpus, fixed_sampler, running_jobs


def shown(app: MonitorApp, selector: str) -> str:
    """The plain text of one Static in the app."""
    return str(app.query_one(selector).visual)


async def wait_for(pilot, predicate, attempts: int = 100) -> None:
    """Let the app run until `predicate()` holds (the refresh interval is short in these tests)."""
    for _ in range(attempts):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError("the monitor did not refresh")


async def test_compact_pane_follows_the_database(studio):
    train, _ = running_jobs()
    app = MonitorApp(
        studio.paths.home, interval=0.05, compact=True, sampler=fixed_sampler(studio.paths.home, fake_gpus())
    )
    async with app.run_test(size=(40, 30)) as pilot:
        await pilot.pause()
        jobs = shown(app, "#compact-jobs")
        assert "#1 train topk-16k" in jobs and "45%" in jobs and "loss 0.0123" in jobs
        resources = shown(app, "#compact-resources")
        assert "GPU 0 NVIDIA Fake A" in resources and "81%" in resources and "Host" in resources
        Job.update(progress_done=900).where(Job.id == train.id).execute()
        Training.update(loss=0.5).where(Training.job == train.id).execute()
        await wait_for(pilot, lambda: "90%" in shown(app, "#compact-jobs"))
        assert "loss 0.5" in shown(app, "#compact-jobs")
        Job.update(status="completed").where(Job.id == train.id).execute()
        await wait_for(pilot, lambda: "train topk-16k" not in shown(app, "#compact-jobs"))


async def test_compact_layout_goes_side_by_side_when_wide(studio):
    app = MonitorApp(studio.paths.home, interval=3600, compact=True, sampler=fixed_sampler(studio.paths.home))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        jobs, resources = app.query_one("#compact-jobs"), app.query_one("#compact-resources")
        assert jobs.region.y == resources.region.y and jobs.region.x < resources.region.x
        await pilot.resize_terminal(40, 30)
        await pilot.pause()
        assert resources.region.y > jobs.region.y and resources.region.x == jobs.region.x
        assert isinstance(app.query_one(CompactMonitor), CompactMonitor)


async def test_gpu_failing_mid_run_shows_na_for_that_value_only(studio):
    running_jobs()
    nvml = fake_gpus()
    app = MonitorApp(studio.paths.home, interval=0.05, sampler=fixed_sampler(studio.paths.home, nvml))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await wait_for(pilot, lambda: "54°C" in shown(app, "#gpu-0 .gpu-text"))
        card = shown(app, "#gpu-0 .gpu-text")
        assert "job 1: train topk-16k" in card and "not miStudio" in shown(app, "#gpu-1 .gpu-text")
        nvml.devices[0].failing["temperature"] = nvml.NVMLError_GpuIsLost
        await wait_for(pilot, lambda: "N/A ·" in shown(app, "#gpu-0 .gpu-text"))
        card = shown(app, "#gpu-0 .gpu-text")
        assert "81%" in card and "123/700 W" in card and "SM 1755 MHz" in card
        assert "54°C" in shown(app, "#gpu-1 .gpu-text")


async def test_no_gpu_panel_keeps_host_live(studio):
    app = MonitorApp(studio.paths.home, interval=3600, sampler=fixed_sampler(studio.paths.home))
    async with app.run_test(size=(80, 30)) as pilot:
        await pilot.pause()
        assert "No NVIDIA GPU" in shown(app, "#gpu-none") and "not found" in shown(app, "#gpu-none")
        assert "42%" in shown(app, "#host") and "4 cores" in shown(app, "#host")
        assert not app.query("#gpus GpuCard")
        assert isinstance(app.query_one(MonitorPanel), MonitorPanel)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan"])
def test_cli_rejects_a_bad_interval(value, capsys):
    assert main(["monitor", "--compact", "--interval", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--interval" in err[0]


def test_monitor_app_never_imports_torch(tmp_path):
    code = (
        "import asyncio, sys\n"
        "from mistudio_tui.cli.main import build_parser\n"
        "build_parser().parse_args(['monitor', '--compact'])\n"
        "from mistudio_tui.db.connection import open_database\n"
        "from mistudio_tui.ui.monitor_app import MonitorApp\n"
        f"open_database({str(tmp_path / 'mistudio.db')!r})\n"
        "async def run(compact):\n"
        f"    app = MonitorApp({str(tmp_path)!r}, 1.0, compact=compact)\n"
        "    async with app.run_test(size=(40, 30)) as pilot:\n"
        "        await pilot.pause()\n"
        "asyncio.run(run(True)); asyncio.run(run(False))\n"
        "print('HEAVY', [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout


async def test_monitor_screen_survives_a_bad_interval_setting(studio, monkeypatch):
    from mistudio_tui.app import MiStudioApp

    monkeypatch.setenv("MISTUDIO_MONITOR_INTERVAL", "fast")
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("6")
        await pilot.pause()
        assert app.screen.query_one(MonitorPanel).interval == 1.0
        assert any("MISTUDIO_MONITOR_INTERVAL" in str(n.message) for n in app._notifications)


def test_cli_runs_the_app_with_its_options(monkeypatch):
    runs = []

    def fake_run(self, inline=False):
        runs.append((self.compact, self.interval, inline, self.home))

    monkeypatch.setattr(MonitorApp, "run", fake_run)
    monkeypatch.setenv("MISTUDIO_MONITOR_INTERVAL", "2.5")
    assert main(["monitor", "--compact", "--inline"]) == 0
    assert main(["monitor", "--interval", "0.5"]) == 0
    assert [r[:3] for r in runs] == [(True, 2.5, True), (False, 0.5, False)]
    assert (runs[0][3] / "mistudio.db").exists()
