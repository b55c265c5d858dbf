"""Training curves: bulk inserts, bounded points per run (older points merged pairwise, min/max kept)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mistudio_tui.db.models import Training, TrainingMetric, database

METRICS = (
    "loss",
    "mse",
    "nmse",
    "explained_variance",
    "l0",
    "l1",
    "dead_fraction",
    "dense_fraction",
    "lr",
    "tokens_per_s",
    "aux_loss",
    "sparsity_loss",
)
LATEST = ("loss", "l0", "explained_variance", "dead_fraction", "tokens_per_s")
MAX_POINTS = 2000


def clean_row(row: dict[str, Any]) -> dict[str, Any]:
    """Keep the known metric columns (floats; NaN/inf kept as None so SQLite and JSON stay valid)."""
    out: dict[str, Any] = {"step": int(row["step"]), "tokens": _int(row.get("tokens")), "span": 1}
    for name in METRICS:
        out[name] = _float(row.get(name))
    return out


def _float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if f == f and f not in (float("inf"), float("-inf")) else None


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def merge_pair(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """One point standing for two consecutive ones: span-weighted means, the later step, min/max kept."""
    span_a, span_b = a.get("span") or 1, b.get("span") or 1
    merged: dict[str, Any] = {"step": b["step"], "tokens": b.get("tokens"), "span": span_a + span_b}
    envelope: dict[str, list[float]] = {}
    env_a, env_b = a.get("envelope") or {}, b.get("envelope") or {}
    for name in METRICS:
        va, vb = a.get(name), b.get(name)
        if va is None and vb is None:
            merged[name] = None
            continue
        if va is None or vb is None:
            merged[name] = va if vb is None else vb
        else:
            merged[name] = (va * span_a + vb * span_b) / (span_a + span_b)
        lows = [x for x in (env_a.get(name, [va, va])[0], env_b.get(name, [vb, vb])[0]) if x is not None]
        highs = [x for x in (env_a.get(name, [va, va])[1], env_b.get(name, [vb, vb])[1]) if x is not None]
        envelope[name] = [min(lows), max(highs)]
    merged["envelope"] = envelope
    return merged


def compact(rows: list[dict[str, Any]], max_points: int = MAX_POINTS) -> list[dict[str, Any]]:
    """While over `max_points`, merge the older half of the points pairwise (newest half stays raw)."""
    rows = list(rows)
    while len(rows) > max_points:
        half = len(rows) // 2
        old, new = rows[:half], rows[half:]
        merged = [merge_pair(old[i], old[i + 1]) for i in range(0, len(old) - 1, 2)]
        if len(old) % 2:
            merged.append(old[-1])
        rows = merged + new
    return rows


def record_metrics(training_id: int, rows: Sequence[dict[str, Any]], max_points: int = MAX_POINTS) -> None:
    """Append metric rows of a running training (bulk), update its latest columns, keep the run bounded."""
    if not rows:
        return
    clean = [clean_row(r) for r in rows]
    with database.atomic():
        TrainingMetric.insert_many([{**r, "training": training_id} for r in clean]).on_conflict_replace().execute()
        last = clean[-1]
        latest: dict[Any, Any] = {Training.steps: last["step"]}
        if last["tokens"] is not None:
            latest[Training.tokens] = last["tokens"]
        for name in LATEST:
            value = next((r[name] for r in reversed(clean) if r[name] is not None), None)
            if value is not None:
                latest[getattr(Training, name)] = value
        Training.update(latest).where(Training.id == training_id).execute()
        count = TrainingMetric.select().where(TrainingMetric.training == training_id).count()
        if count > max_points:
            _compact_stored(training_id, max_points)


def _compact_stored(training_id: int, max_points: int) -> None:
    stored = list(
        TrainingMetric.select().where(TrainingMetric.training == training_id).order_by(TrainingMetric.step).dicts()
    )
    target = max_points * 3 // 4  # compact with headroom so this runs every few hundred inserts, not every one
    compacted = compact(stored, target)
    TrainingMetric.delete().where(TrainingMetric.training == training_id).execute()
    for row in compacted:
        row.pop("id", None)
        row["training"] = training_id
    for i in range(0, len(compacted), 500):
        TrainingMetric.insert_many(compacted[i : i + 500]).execute()


def bulk_load(training_id: int, rows: Sequence[dict[str, Any]], max_points: int = MAX_POINTS) -> int:
    """Store a whole series at once (imports, tests, benchmarks): downsampled first, then one bulk insert."""
    compacted = compact([clean_row(r) for r in rows], max_points)
    with database.atomic():
        for i in range(0, len(compacted), 500):
            TrainingMetric.insert_many([{**r, "training": training_id} for r in compacted[i : i + 500]]).execute()
    return len(compacted)


def drop_after(training_id: int, step: int) -> None:
    """Forget points after `step` (a resumed run replays from its checkpoint)."""
    TrainingMetric.delete().where((TrainingMetric.training == training_id) & (TrainingMetric.step > step)).execute()


@dataclass
class Curve:
    """One metric of one run: steps, values, and the min/max envelope of merged points."""

    steps: list[int]
    values: list[float]
    lows: list[float]
    highs: list[float]
    tokens: list[int | None]


def curve(training_id: int, metric: str) -> Curve:
    """The stored series of `metric` for a run, in step order (an indexed range scan)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    column = getattr(TrainingMetric, metric)
    query = (
        TrainingMetric.select(TrainingMetric.step, TrainingMetric.tokens, column, TrainingMetric.envelope)
        .where((TrainingMetric.training == training_id) & column.is_null(False))
        .order_by(TrainingMetric.step)
        .tuples()
    )
    steps, values, lows, highs, tokens = [], [], [], [], []
    for step, tok, value, envelope in query:
        steps.append(step)
        values.append(value)
        tokens.append(tok)
        low, high = (envelope or {}).get(metric, (value, value))
        lows.append(low)
        highs.append(high)
    return Curve(steps, values, lows, highs, tokens)
