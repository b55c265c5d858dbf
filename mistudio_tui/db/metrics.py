"""Training curves: bulk inserts, bounded points per run (older points merged pairwise, min/max kept)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mistudio_tui.db.models import Training, TrainingMetric, database
from mistudio_tui.db.states import RunState

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
        if min(lows) != max(highs):  # a constant stretch needs no envelope: its value is its min and max
            envelope[name] = [min(lows), max(highs)]
    merged["envelope"] = envelope or None
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
        insert_rows(training_id, clean, replace=True)  # a replayed step replaces its row
        last = clean[-1]
        latest: dict[Any, Any] = {Training.steps: last["step"]}
        if last["tokens"] is not None:
            latest[Training.tokens] = last["tokens"]
        for name in LATEST:
            value = next((r[name] for r in reversed(clean) if r[name] is not None), None)
            if value is not None:
                latest[getattr(Training, name)] = value
        Training.update(latest).where(Training.id == training_id).execute()
        if stored_points(training_id) > max_points:
            _compact_stored(training_id, max_points)


def _compact_stored(training_id: int, max_points: int) -> None:
    names = ("step", "tokens", *METRICS, "span", "envelope")
    sql = (
        f'SELECT {", ".join(names)} FROM "{TrainingMetric._meta.table_name}" '
        f"WHERE {TrainingMetric.training.column_name} = ? ORDER BY step"
    )
    stored = [dict(zip(names, row, strict=True)) for row in database.execute_sql(sql, (training_id,))]
    for row in stored:
        if row["envelope"] is not None:
            row["envelope"] = json.loads(row["envelope"])
    target = max_points * 3 // 4  # compact with headroom so this runs every few hundred inserts, not every one
    compacted = compact(stored, target)
    kept = 0  # the newest rows come back unmerged (the same objects): they stay stored as they are
    while kept < len(compacted) and compacted[-1 - kept] is stored[-1 - kept]:
        kept += 1
    old = TrainingMetric.training == training_id
    if kept:
        old &= TrainingMetric.step < stored[-kept]["step"]
    TrainingMetric.delete().where(old).execute()
    insert_rows(training_id, compacted[: len(compacted) - kept])


def stored_points(training_id: int) -> int:
    """How many curve points a run has stored (a count over the (training, step) index)."""
    sql = f'SELECT COUNT(*) FROM "{TrainingMetric._meta.table_name}" WHERE {TrainingMetric.training.column_name} = ?'
    count: int = database.execute_sql(sql, (training_id,)).fetchone()[0]
    return count


def insert_rows(training_id: int, rows: Sequence[dict[str, Any]], replace: bool = False) -> None:
    """Insert clean or compacted rows of one run with a single `executemany` (no per-row model objects).

    With `replace`, a row whose step is already stored replaces it.
    """
    columns = (TrainingMetric.training.column_name, "step", "tokens", *METRICS, "span", "envelope")
    sql = (
        f'INSERT {"OR REPLACE " if replace else ""}INTO "{TrainingMetric._meta.table_name}" ({", ".join(columns)}) '
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    params = [
        (
            training_id,
            row["step"],
            row.get("tokens"),
            *(row.get(name) for name in METRICS),
            row.get("span") or 1,
            json.dumps(row["envelope"]) if row.get("envelope") else None,
        )
        for row in rows
    ]
    with database.atomic():
        database.connection().executemany(sql, params)


def bulk_load(training_id: int, rows: Sequence[dict[str, Any]], max_points: int = MAX_POINTS) -> int:
    """Store a whole series at once (imports, tests, benchmarks): downsampled first, then one bulk insert."""
    compacted = compact([clean_row(r) for r in rows], max_points)
    insert_rows(training_id, compacted)
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
    """The stored series of `metric` for a run, in step order (an indexed range scan; SQLite unpacks envelopes)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    sql = (
        f"SELECT step, tokens, {metric}, json_extract(envelope, '$.{metric}[0]'), "
        f"json_extract(envelope, '$.{metric}[1]') "
        f'FROM "{TrainingMetric._meta.table_name}" WHERE {TrainingMetric.training.column_name} = ? '
        f"AND {metric} IS NOT NULL ORDER BY step"
    )
    rows = database.execute_sql(sql, (training_id,)).fetchall()
    steps = [r[0] for r in rows]
    values = [r[2] for r in rows]
    lows = [r[2] if r[3] is None else r[3] for r in rows]
    highs = [r[2] if r[4] is None else r[4] for r in rows]
    return Curve(steps, values, lows, highs, [r[1] for r in rows])


@dataclass
class ProgressHistory:
    """Training speed over the run (steps/s per stored point) and the time left at the latest speed."""

    steps: list[int]
    steps_per_s: list[float]
    tokens_per_step: float | None
    eta_s: float | None


def progress_history(training: Training) -> ProgressHistory:
    """Steps/s over time from the stored tokens/s points; ETA from the tokens left and the latest speed."""
    speed = curve(training.id, "tokens_per_s")
    batch = ((training.config or {}).get("train") or {}).get("batch_size")
    if training.steps and training.tokens:
        tokens_per_step: float | None = training.tokens / training.steps
    else:
        tokens_per_step = float(batch) if batch else None
    steps_per_s = [v / tokens_per_step for v in speed.values] if tokens_per_step else []
    eta = None
    left = (training.total_tokens or 0) - (training.tokens or 0)
    if training.status in RunState.ACTIVE and training.tokens_per_s and left > 0:
        eta = left / training.tokens_per_s
    return ProgressHistory(speed.steps if steps_per_s else [], steps_per_s, tokens_per_step, eta)


def record_density_histogram(training_id: int, histogram: dict[str, Any]) -> None:
    """Keep the latest feature-density histogram a training reported ({step, tokens, edges, counts})."""
    edges, counts = histogram.get("edges"), histogram.get("counts")
    if not edges or counts is None or len(edges) != len(counts) + 1:
        raise ValueError(f"density histogram of training {training_id}: expected len(edges) == len(counts) + 1")
    keep = {k: histogram.get(k) for k in ("step", "tokens", "window_tokens")}
    value = {**keep, "edges": list(edges), "counts": [int(c) for c in counts]}
    Training.update(density_histogram=value).where(Training.id == training_id).execute()
