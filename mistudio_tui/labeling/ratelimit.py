"""Pacing API calls: a requests-per-minute limiter, Retry-After parsing, jittered exponential backoff."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_S = 600.0


class RateLimiter:
    """Spaces request starts 60/rpm seconds apart and lets a server's Retry-After pause every caller."""

    def __init__(
        self,
        requests_per_minute: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if requests_per_minute is not None and requests_per_minute <= 0:
            raise ValueError(f"requests_per_minute={requests_per_minute!r} is invalid; expected > 0 or None")
        self.interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next_start = float("-inf")
        self._paused_until = float("-inf")
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until the next request may start (callers go first come, first served)."""
        async with self._lock:
            while True:
                now = self._clock()
                start = max(self._next_start, self._paused_until)
                if start <= now:
                    break
                await self._sleep(start - now)
            self._next_start = now + self.interval

    def defer(self, seconds: float) -> None:
        """Hold back every request for `seconds` from now (the server asked us to slow down)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait per `retry-after-ms` or `Retry-After` (seconds or HTTP date); None if absent/bad."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return _clamp(float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return _clamp(float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return _clamp((when - now).total_seconds())


def _clamp(seconds: float) -> float | None:
    if seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """The wait before retry `attempt` (0-based): base·2^attempt capped at max_s, with "equal jitter"."""
    ceiling = min(max_s, base_s * (2.0**attempt))
    uniform = rng.uniform if rng is not None else random.uniform
    return ceiling / 2.0 + uniform(0.0, ceiling / 2.0)
