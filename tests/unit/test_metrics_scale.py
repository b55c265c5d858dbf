"""Metrics at scale: 1,000 runs × 10,000 steps in one database; one run's curve is its correct downsampled series."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from mistudio_tui.db import metrics as mq
from mistudio_tui.db.models import Training, TrainingMetric

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_metrics", BENCHMARKS / "metrics.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_curve_among_a_thousand_runs_is_downsampled_with_the_spike_kept(studio):
    bench = load_benchmark()
    n_steps, spike_step = 10_000, 3_333
    info = bench.fill(1000, n_steps, spike_run=500, spike_step=spike_step)
    assert Training.select().count() == 1000
    assert TrainingMetric.select().count() == 1000 * info["points"]

    raw = bench.raw_series(n_steps, spike_step)
    data = mq.curve(info["spike_id"], "loss")
    assert len(data.steps) == info["points"] <= mq.MAX_POINTS
    assert data.steps == sorted(set(data.steps)) and data.steps[-1] == n_steps - 1

    # the newest half stays raw, point for point
    newest = len(data.steps) // 2
    assert data.steps[-newest:] == [r["step"] for r in raw[-newest:]]
    assert data.values[-newest:] == [r["loss"] for r in raw[-newest:]]

    # older points are merged: each stands for the raw points since the previous one and keeps their min/max
    spans = [
        s
        for (s,) in TrainingMetric.select(TrainingMetric.span)
        .where(TrainingMetric.training == info["spike_id"])
        .order_by(TrainingMetric.step)
        .tuples()
    ]
    assert sum(spans) == n_steps and max(spans) > 1
    start = 0
    for step, value, low, high, span in zip(data.steps, data.values, data.lows, data.highs, spans, strict=True):
        chunk = [r["loss"] for r in raw[start : step + 1]]
        assert len(chunk) == span
        assert low == min(chunk) and high == max(chunk)
        assert abs(value - sum(chunk) / span) < 1e-9
        start = step + 1

    covering = next(i for i, s in enumerate(data.steps) if s >= spike_step)
    assert data.highs[covering] == 100.0 > data.values[covering]
    assert spans[covering] > 1  # the spike sits inside a merged point, and still shows

    neighbour = mq.curve(info["ids"][499], "loss")
    assert neighbour.steps == data.steps and max(neighbour.highs) < 2.0

    Training.delete_by_id(info["spike_id"])
    assert not TrainingMetric.select().where(TrainingMetric.training == info["spike_id"]).exists()
