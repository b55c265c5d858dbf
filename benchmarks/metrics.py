"""Metrics at scale benchmark.

1. Curve query latency for one run among N runs × S steps each (full: 1,000 × 10,000; goal < 20 ms).
   Reference in the same run: the same query in a database holding only that run.
2. Keystroke-to-frame latency on the Trainings screen (Pilot, 120x40) while a fake run streams metric batches at
   20 Hz through the app's job-event path (goal < 100 ms, p95). Reference: the same keys with nothing streaming.

Usage: python benchmarks/metrics.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_line import bench_line

from mistudio_tui.db import metrics as mq
from mistudio_tui.db.models import Training, TrainingMetric, database

BATCH = 4096


def raw_series(n_steps: int, spike_step: int | None = None, spike: float = 100.0) -> list[dict[str, Any]]:
    """A plausible training curve: decaying loss with wiggle, L0 settling, EV rising; an optional loss spike."""
    rows = []
    for s in range(n_steps):
        rows.append(
            {
                "step": s,
                "tokens": s * BATCH,
                "loss": 1.0 / (1 + s / 100) + 0.01 * math.sin(s),
                "mse": 0.8 / (1 + s / 100),
                "l0": 32 + 4 * math.sin(s / 50),
                "explained_variance": min(0.99, s / max(n_steps, 1)),
                "dead_fraction": 0.02,
                "lr": 3e-4,
                "tokens_per_s": 50_000.0 + 1000 * math.sin(s / 7),
            }
        )
    if spike_step is not None:
        rows[spike_step]["loss"] = spike
    return rows


def keep(row: dict[str, Any], metrics: tuple[str, ...] | None) -> dict[str, Any]:
    """The row with only `step`, `tokens` and the given metrics (all when None)."""
    if metrics is None:
        return row
    return {k: v for k, v in row.items() if k in ("step", "tokens", *metrics)}


def fill(
    n_runs: int, n_steps: int, spike_run: int, spike_step: int, metrics: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """N runs with S steps each, stored compacted exactly as `bulk_load` would; run `spike_run` has a loss spike.

    One run is compacted in Python; the other runs' rows are copied from it inside SQLite in one statement.
    """
    with database.atomic():
        Training.insert_many(
            [{"name": f"run-{i:05d}", "status": "completed", "steps": n_steps - 1} for i in range(n_runs)]
        ).execute()
    ids = [t for (t,) in Training.select(Training.id).order_by(Training.id).tuples()]
    spike_id = ids[spike_run]
    template_id = ids[0] if spike_run != 0 else ids[-1]
    plain = mq.compact([mq.clean_row(keep(r, metrics)) for r in raw_series(n_steps)])
    spiked = mq.compact([mq.clean_row(keep(r, metrics)) for r in raw_series(n_steps, spike_step)])
    mq.insert_rows(spike_id, spiked)
    if n_runs > 1:
        mq.insert_rows(template_id, plain)
        table, run = TrainingMetric._meta.table_name, TrainingMetric.training.column_name
        names = ("step", "tokens", *mq.METRICS, "span", "envelope")
        columns, copied = ", ".join(names), ", ".join(f"m.{name}" for name in names)
        with database.atomic():
            database.execute_sql(
                f'INSERT INTO "{table}" ({run}, {columns}) SELECT t.id, {copied} '
                f'FROM "{Training._meta.table_name}" t JOIN "{table}" m ON m.{run} = ? '
                "WHERE t.id NOT IN (?, ?)",
                (template_id, template_id, spike_id),
            )
    return {"ids": ids, "spike_id": spike_id, "points": len(plain)}


def time_curve(training_id: int, repeats: int) -> float:
    """Median seconds of one `curve` query (first call not counted)."""
    mq.curve(training_id, "loss")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        mq.curve(training_id, "loss")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_query(n_runs: int, n_steps: int) -> tuple[float, float, float]:
    """(seconds to fill, median query s among n_runs, median query s alone)."""
    from mistudio_tui.db.connection import close_database, open_database

    with tempfile.TemporaryDirectory() as tmp:
        open_database(Path(tmp) / "alone.db")
        alone = fill(1, n_steps, 0, n_steps // 3)
        ref = time_curve(alone["spike_id"], 30)
        close_database()
        open_database(Path(tmp) / "many.db")
        t0 = time.perf_counter()
        many = fill(n_runs, n_steps, n_runs // 2, n_steps // 3)
        filled = time.perf_counter() - t0
        value = time_curve(many["spike_id"], 30)
        close_database()
    return filled, value, ref


def stream(
    app: Any, training_id: int, job_id: int, series: list[dict[str, Any]], stop: threading.Event, hz: float = 20.0
) -> None:
    """Record metric batches for a running training and announce them as the runner does, until stopped."""
    from mistudio_tui.jobs.runner import JobEvent

    step = 10_000
    while not stop.is_set() and step + 10 <= len(series):
        rows = series[step : step + 10]
        mq.record_metrics(training_id, rows)
        app._on_runner_event(JobEvent(job_id, "metrics", "running", rows))
        step += 10
        stop.wait(1 / hz)


async def keystroke_latencies(streaming: bool, presses: int) -> list[float]:
    """Seconds from each key press to the frame after it (events processed and screen refreshed)."""
    from mistudio_tui.app import MiStudioApp
    from mistudio_tui.db.models import Job
    from mistudio_tui.studio import Studio

    with tempfile.TemporaryDirectory() as tmp:
        studio = Studio(Path(tmp), max_parallel=1)
        try:
            fill(20, 10_000, 0, 100)
            job = Job.create(kind="train", status="running", resource_type="training")
            live = Training.create(name="live", status="running", job=job, total_tokens=10**9)
            job.resource_id = live.id
            job.save()
            mq.bulk_load(live.id, raw_series(10_000))
            app = MiStudioApp(studio, offer_sample=False)
            latencies = []
            async with app.run_test(size=(120, 40)) as pilot:
                await pilot.press("3")
                await pilot.pause()
                stop = threading.Event()
                args = (app, live.id, job.id, raw_series(100_000), stop)
                feeder = threading.Thread(target=stream, args=args, daemon=False)
                if streaming:
                    feeder.start()
                try:
                    for i in range(presses):
                        key = ("down", "up", "m")[i % 3]
                        t0 = time.perf_counter()
                        await pilot.press(key)
                        await pilot.pause()
                        latencies.append(time.perf_counter() - t0)
                        await asyncio.sleep(0.02)
                finally:
                    stop.set()
                    if feeder.is_alive():
                        feeder.join()
        finally:
            studio.close()
    return latencies


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, math.ceil(0.95 * len(values)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 runs × 10,000 steps and fewer key presses")
    args = parser.parse_args()
    n_runs = 100 if args.quick else 1000
    presses = 15 if args.quick else 60
    os.environ.setdefault("MISTUDIO_HOME", tempfile.mkdtemp(prefix="mistudio-bench-"))

    filled, query_s, ref_s = bench_query(n_runs, 10_000)
    print(
        f"filled {n_runs} runs x 10,000 steps in {filled:.1f}s; curve query {query_s * 1e3:.2f} ms "
        f"(alone in its database: {ref_s * 1e3:.2f} ms, ratio {query_s / ref_s:.2f})"
    )
    idle = asyncio.run(keystroke_latencies(False, presses))
    busy = asyncio.run(keystroke_latencies(True, presses))
    print(f"keystroke-to-frame idle: median {statistics.median(idle) * 1e3:.1f} ms, p95 {p95(idle) * 1e3:.1f} ms")
    print(f"keystroke-to-frame streaming: median {statistics.median(busy) * 1e3:.1f} ms, p95 {p95(busy) * 1e3:.1f} ms")
    print(bench_line(f"metrics_curve_query_{n_runs}x10000", query_s * 1e3, "ms", "<=", 20))
    print(bench_line("metrics_curve_query_vs_alone", query_s / ref_s, "x", "<=", 2.0))
    print(bench_line("trainings_keystroke_p95_streaming", p95(busy) * 1e3, "ms", "<=", 100))
    print(
        bench_line(
            "trainings_keystroke_streaming_vs_idle", statistics.median(busy) / statistics.median(idle), "x", "<=", 2.0
        )
    )


if __name__ == "__main__":
    main()
