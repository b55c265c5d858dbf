"""Monitor overhead: CPU used by the monitor at its default refresh (goal < 2% of one core).

Measured as process CPU time over wall time while it runs for N seconds:
1. the sampler alone (host + NVML + running jobs from the DB), in this process;
2. the compact side-pane app and the full monitor app, each headless in its own process (startup excluded).
Reference in the same run: an idle Textual app with a timer at the same interval (the floor any Textual pane pays).
The database holds two running jobs (this process and its parent as workers) so job lookups and process trees run.

Usage: python benchmarks/monitor.py [--quick] [--seconds S] [--interval S]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_line import bench_line

GOAL_PERCENT = 2.0

APP_CODE = """
import asyncio, sys
from pathlib import Path
from mistudio_tui.db.connection import open_database
home, interval, kind = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
open_database(home / "mistudio.db")
if kind == "reference":
    from textual.app import App
    from textual.widgets import Static

    class Idle(App):
        def compose(self):
            yield Static("idle")

        def on_mount(self):
            self.set_interval(interval, lambda: self.query_one(Static).update(str(asyncio.get_running_loop().time())))

    app = Idle()
else:
    from mistudio_tui.ui.monitor_app import MonitorApp

    app = MonitorApp(home, interval, compact=kind == "compact")

async def main():
    async with app.run_test(size=(40, 30)) as pilot:
        await pilot.pause()
        print("READY", flush=True)
        while True:
            await asyncio.sleep(3600)

asyncio.run(main())
"""


def cpu_seconds(proc: psutil.Process) -> float:
    """User plus system CPU time of one process."""
    times = proc.cpu_times()
    return times.user + times.system


def sampler_percent(home: Path, seconds: float, interval: float) -> tuple[float, float]:
    """CPU percent of one core used by sampling every `interval` seconds, and the mean time of one sample."""
    from mistudio_tui.monitor.snapshot import MonitorSampler

    sampler = MonitorSampler(home)
    sampler.sample()
    me = psutil.Process()
    start_cpu, start_wall = cpu_seconds(me), time.perf_counter()
    samples, busy = 0, 0.0
    next_at = start_wall
    while time.perf_counter() - start_wall < seconds:
        t0 = time.perf_counter()
        sampler.sample()
        busy += time.perf_counter() - t0
        samples += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))
    used = cpu_seconds(me) - start_cpu
    wall = time.perf_counter() - start_wall
    sampler.close()
    return 100.0 * used / wall, busy / max(samples, 1)


def app_percent(home: Path, kind: str, seconds: float, interval: float) -> float:
    """CPU percent of one core used by a headless app process after it drew its first frame."""
    env = dict(os.environ, MISTUDIO_HOME=str(home))
    child = subprocess.Popen(
        [sys.executable, "-c", APP_CODE, str(home), str(interval), kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if "READY" not in line:
            raise RuntimeError(f"the {kind} app did not start (exit code {child.poll()})")
        proc = psutil.Process(child.pid)
        time.sleep(min(2.0, interval * 2))
        start_cpu, start_wall = cpu_seconds(proc), time.perf_counter()
        time.sleep(seconds)
        used = cpu_seconds(proc) - start_cpu
        return 100.0 * used / (time.perf_counter() - start_wall)
    finally:
        child.terminate()
        child.wait(timeout=30)


def seed_jobs(home: Path) -> None:
    """Two running jobs whose worker pids are live processes (this one and its parent)."""
    from mistudio_tui.db.connection import open_database
    from mistudio_tui.db.models import Job, Training

    open_database(home / "mistudio.db")
    for pid, title in ((os.getpid(), "train bench"), (os.getppid(), "extract bench")):
        job = Job.create(kind="train", title=title, status="running", pid=pid, progress_done=1, progress_total=4)
        Training.create(name=title, job=job, loss=0.25, status="running")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s per measurement")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per measurement (default 20)")
    parser.add_argument("--interval", type=float, default=None, help="refresh interval (default: the monitor's)")
    args = parser.parse_args()
    from mistudio_tui.monitor.history import monitor_interval

    seconds = args.seconds or (5.0 if args.quick else 20.0)
    interval = args.interval or monitor_interval()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        seed_jobs(home)
        sampler, per_sample = sampler_percent(home, seconds, interval)
        reference = app_percent(home, "reference", seconds, interval)
        compact = app_percent(home, "compact", seconds, interval)
        full = app_percent(home, "full", seconds, interval)
    print(f"interval {interval:g} s, {seconds:g} s per measurement, {psutil.cpu_count()} cores")
    print(f"one sample takes {1000 * per_sample:.2f} ms")
    print(f"reference: idle Textual app with a {interval:g} s timer uses {reference:.2f}% of a core")
    print(bench_line("monitor_sampler_cpu", sampler, "%core", "<", GOAL_PERCENT))
    print(bench_line("monitor_compact_app_cpu", compact, "%core", "<", GOAL_PERCENT))
    print(bench_line("monitor_full_app_cpu", full, "%core", "<", GOAL_PERCENT))


if __name__ == "__main__":
    main()
