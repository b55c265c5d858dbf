"""Metrics at scale benchmark.

1. Curve query latency for one run among N runs × S steps each (full: 1,000 × 10,000; goal < 20 ms).
   Reference in the same run: the same query in a database holding only that run.
2. Keystroke-to-frame latency (`frame_latency.key_to_frame`: key posted → first frame emitted after it was handled)
   on the Trainings list and on a live run's detail screen (Pilot, 120x40) while a fake run streams metric batches at
   20 Hz through the app's job-event path (goal < 100 ms, p95). Reference: the same keys with nothing streaming.
   The old figure (Pilot press + pause, which waits for the whole app to be idle) is printed as "pilot round trip".

Usage: python benchmarks/metrics.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
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


def series_row(s: int, n_steps: int) -> dict[str, Any]:
    """Step `s` of a plausible training curve: decaying loss with wiggle, L0 settling, EV rising."""
    return {
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


def raw_series(n_steps: int, spike_step: int | None = None, spike: float = 100.0) -> list[dict[str, Any]]:
    """A plausible training curve of `n_steps` rows; an optional loss spike."""
    rows = [series_row(s, n_steps) for s in range(n_steps)]
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


def stream(app: Any, training_id: int, job_id: int, stop: threading.Event, hz: float = 20.0) -> None:
    """Record metric batches (10 steps each) for a running training and announce them as the runner does."""
    from mistudio_tui.jobs.runner import JobEvent

    step = 10_000
    while not stop.is_set():
        rows = [series_row(s, 100_000) for s in range(step, step + 10)]
        mq.record_metrics(training_id, rows)
        app._on_runner_event(JobEvent(job_id, "metrics", "running", rows))
        step += 10
        stop.wait(1 / hz)


LIST_KEYS = ("down", "up", "m")
DETAIL_KEYS = ("m", "l", "m")
KEY_GAP_S = (0.05, 0.8)  # a person's pauses: some keys land while a live redraw runs (the screens hold those for 0.5 s)


async def keystroke_latencies(streaming: bool, presses: int) -> dict[str, list[float]]:
    """Milliseconds from each key to the frame after it, on the runs list and on a live run's detail screen.

    Keys: `list` (down/up/m on the list), `detail` (m/l on the detail), `open` (enter: the detail screen's first
    frame), `pilot` (the old press+pause round trip on the list, for comparison). Keys come at random intervals.
    """
    from frame_latency import frame_probe, key_to_frame, pilot_round_trip

    from mistudio_tui.app import MiStudioApp
    from mistudio_tui.db.models import Job
    from mistudio_tui.studio import Studio
    from mistudio_tui.ui.screens.training_detail import TrainingDetailScreen

    figures: dict[str, list[float]] = {"list": [], "detail": [], "open": [], "pilot": []}
    gaps = random.Random(0)
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
            async with app.run_test(size=(120, 40)) as pilot:
                frame_probe(app)
                await pilot.press("3")
                await pilot.pause()
                table = app.screen.query_one("#trainings-table")
                table.move_cursor(row=app.screen.shown_ids.index(live.id))
                await pilot.pause()
                stop = threading.Event()
                args = (app, live.id, job.id, stop)
                feeder = threading.Thread(target=stream, args=args, daemon=False)
                if streaming:
                    feeder.start()
                try:
                    await asyncio.sleep(0.5)
                    for i in range(presses):
                        figures["list"].append(await key_to_frame(pilot, LIST_KEYS[i % len(LIST_KEYS)]))
                        await asyncio.sleep(gaps.uniform(*KEY_GAP_S))
                    for i in range(max(3, presses // 5)):
                        figures["pilot"].append(await pilot_round_trip(pilot, LIST_KEYS[i % len(LIST_KEYS)]))
                        await asyncio.sleep(0.05)
                    figures["open"].append(await key_to_frame(pilot, "enter"))
                    assert isinstance(app.screen, TrainingDetailScreen)
                    await asyncio.sleep(0.5)
                    for i in range(presses):
                        figures["detail"].append(await key_to_frame(pilot, DETAIL_KEYS[i % len(DETAIL_KEYS)]))
                        await asyncio.sleep(gaps.uniform(*KEY_GAP_S))
                finally:
                    stop.set()
                    if feeder.is_alive():
                        feeder.join()
        finally:
            studio.close()
    return figures


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, math.ceil(0.95 * len(values)) - 1)]


def summary(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.1f} ms, p95 {p95(values):.1f} ms (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 runs × 10,000 steps and fewer key presses")
    args = parser.parse_args()
    n_runs = 100 if args.quick else 1000
    presses = 20 if args.quick else 90
    os.environ.setdefault("MISTUDIO_HOME", tempfile.mkdtemp(prefix="mistudio-bench-"))

    filled, query_s, ref_s = bench_query(n_runs, 10_000)
    print(
        f"filled {n_runs} runs x 10,000 steps in {filled:.1f}s; curve query {query_s * 1e3:.2f} ms "
        f"(alone in its database: {ref_s * 1e3:.2f} ms, ratio {query_s / ref_s:.2f})"
    )
    idle = asyncio.run(keystroke_latencies(False, presses))
    busy = asyncio.run(keystroke_latencies(True, presses))
    for screen in ("list", "detail"):
        print(f"keystroke-to-frame {screen} idle: {summary(idle[screen])}")
        print(f"keystroke-to-frame {screen} streaming: {summary(busy[screen])}")
    print(f"enter → detail frame: idle {idle['open'][0]:.1f} ms, streaming {busy['open'][0]:.1f} ms")
    print(f"pilot round trip (press + pause, waits for idle) list idle: {summary(idle['pilot'])}")
    print(f"pilot round trip (press + pause, waits for idle) list streaming: {summary(busy['pilot'])}")
    print(bench_line(f"metrics_curve_query_{n_runs}x10000", query_s * 1e3, "ms", "<=", 20))
    print(bench_line("metrics_curve_query_vs_alone", query_s / ref_s, "x", "<=", 2.0))
    for screen in ("list", "detail"):
        print(bench_line(f"trainings_{screen}_key_to_frame_p95_streaming", p95(busy[screen]), "ms", "<=", 100))
        ratio = statistics.median(busy[screen]) / statistics.median(idle[screen])
        print(bench_line(f"trainings_{screen}_key_to_frame_streaming_vs_idle", ratio, "x", "<=", 2.0))


if __name__ == "__main__":
    main()
