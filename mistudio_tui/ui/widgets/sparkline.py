"""Unicode sparklines of stored curves for table cells, cached per run until its step count changes."""

from __future__ import annotations

import math
from collections.abc import Sequence

from mistudio_tui.db import metrics as mq

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int, log: bool = False) -> str:
    """`values` averaged into `width` buckets and drawn as block characters (higher value, taller block)."""
    if log:
        values = [math.log10(v) for v in values if v > 0]
    if not values or width <= 0:
        return ""
    n = len(values)
    buckets = min(width, n)
    means = []
    for b in range(buckets):
        chunk = values[b * n // buckets : (b + 1) * n // buckets]
        means.append(sum(chunk) / len(chunk))
    low, high = min(means), max(means)
    if high == low:
        return BLOCKS[len(BLOCKS) // 2] * buckets
    scale = (len(BLOCKS) - 1) / (high - low)
    return "".join(BLOCKS[round((m - low) * scale)] for m in means)


class SparklineCache:
    """Loss sparklines by run: recomputed from the bounded stored curve only when the run's steps (or width) change."""

    def __init__(self, metric: str = "loss") -> None:
        self.metric = metric
        self._cache: dict[int, tuple[tuple[int, int], str]] = {}
        self.computed = 0

    def get(self, training_id: int, steps: int, width: int) -> str:
        """The sparkline of a run at its current step count."""
        stamp = (steps, width)
        hit = self._cache.get(training_id)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        values = mq.curve(training_id, self.metric).values
        positive = bool(values) and min(values) > 0 and max(values) > 10 * min(values)
        text = sparkline(values, width, log=positive)
        self._cache[training_id] = (stamp, text)
        self.computed += 1
        return text
