"""Recent values per named series (GPU, CPU, RAM) for sparklines, and the monitor refresh interval."""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator, Mapping

from mistudio_tui.config import env_float

INTERVAL_ENV = "MISTUDIO_MONITOR_INTERVAL"
DEFAULT_INTERVAL = 1.0


def monitor_interval() -> float:
    """Seconds between monitor samples: $MISTUDIO_MONITOR_INTERVAL, default 1.0."""
    interval = env_float(INTERVAL_ENV, DEFAULT_INTERVAL)
    if not math.isfinite(interval) or interval <= 0:
        raw = os.environ.get(INTERVAL_ENV)
        raise ValueError(f"{INTERVAL_ENV}={raw!r} must be a positive number of seconds")
    return interval


class History:
    """A fixed-size ring buffer per series name; the oldest value drops out once `maxlen` is reached."""

    def __init__(self, maxlen: int = 120) -> None:
        if maxlen < 1:
            raise ValueError(f"history maxlen must be at least 1, got {maxlen}")
        self.maxlen = maxlen
        self._series: dict[str, deque[float]] = {}

    def append(self, name: str, value: float | None) -> None:
        """Add one value to series `name`; None (a value NVML could not read) is skipped."""
        if value is None:
            return
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = deque(maxlen=self.maxlen)
        series.append(float(value))

    def record(self, values: Mapping[str, float | None]) -> None:
        """Append one value to each named series."""
        for name, value in values.items():
            self.append(name, value)

    def series(self, name: str) -> list[float]:
        """The kept values of `name`, oldest first (empty when nothing was recorded)."""
        return list(self._series.get(name, ()))

    def last(self, name: str) -> float | None:
        """The newest value of `name`, or None."""
        series = self._series.get(name)
        return series[-1] if series else None

    def forget(self, name: str) -> None:
        """Drop series `name` (e.g. a GPU or job that went away)."""
        self._series.pop(name, None)

    def names(self) -> list[str]:
        """The series names, in the order they were first recorded."""
        return list(self._series)

    def __contains__(self, name: object) -> bool:
        return name in self._series

    def __iter__(self) -> Iterator[str]:
        return iter(self._series)

    def __len__(self) -> int:
        return len(self._series)
