"""JobContext: how job code reports progress and metrics and checks for cancellation.

Compute code (ml/, labeling/) takes a `JobContext` and never knows whether it runs in a worker process
(`PipeContext`, created by jobs.worker) or in-process in a test (`LocalContext`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mistudio_tui.jobs import protocol as p


class JobCancelled(Exception):
    """Raised by `check_cancelled` so job code unwinds (after checkpointing) when the user cancels."""


class JobContext:
    """Base: throttles progress (latest wins) and batches metric rows (none dropped) before `_send`."""

    def __init__(
        self,
        job_dir: Path | None = None,
        interval: float = 0.25,
        is_cancelled: Callable[[], bool] | None = None,
    ) -> None:
        self.job_dir = Path(job_dir) if job_dir is not None else None
        self.interval = interval
        self.device = "cpu"
        self._is_cancelled = is_cancelled or (lambda: False)
        self._last_flush = 0.0
        self._pending_progress: p.Progress | None = None
        self._pending_rows: list[dict[str, Any]] = []

    # --- reporting -------------------------------------------------------------------------------
    def started(self, device: str) -> None:
        """Record the device the job computes on (sent at once)."""
        self.device = device
        import os

        self._send(p.Started(pid=os.getpid(), device=device))

    def progress(self, done: float, total: float | None = None, text: str = "", unit: str = "") -> None:
        """Report progress; sent at most every `interval` seconds (the latest value wins)."""
        self._pending_progress = p.Progress(float(done), None if total is None else float(total), text, unit)
        self._maybe_flush()

    def metric(self, step: int, **values: Any) -> None:
        """Queue one metric row for `step`; rows are batched, never dropped."""
        row = {"step": int(step)}
        row.update(values)
        self._pending_rows.append(row)
        self._maybe_flush()

    def log(self, text: str, level: str = "info") -> None:
        """Send a log line (the worker's stdout already goes to the log file)."""
        self.flush()
        self._send(p.LogLine(text, level))

    def artifact(self, kind: str, path: str | Path = "", **meta: Any) -> None:
        """Announce a file the job wrote (checkpoint, histogram, shard)."""
        self.flush()
        self._send(p.Artifact(kind, str(path), meta))

    def flush(self) -> None:
        """Send whatever progress and metric rows are pending."""
        if self._pending_rows:
            rows, self._pending_rows = self._pending_rows, []
            self._send(p.MetricRows(rows))
        if self._pending_progress is not None:
            prog, self._pending_progress = self._pending_progress, None
            self._send(prog)
        self._last_flush = time.monotonic()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.interval:
            self.flush()

    # --- cancellation ----------------------------------------------------------------------------
    def cancelled(self) -> bool:
        """True once the user asked to cancel this job."""
        return bool(self._is_cancelled())

    def check_cancelled(self) -> None:
        """Raise JobCancelled when the user asked to cancel (call between units of work)."""
        if self.cancelled():
            raise JobCancelled()

    def _send(self, message: p.Message) -> None:
        raise NotImplementedError


class LocalContext(JobContext):
    """An in-process context for tests and scripts: records every message; cancel via `cancel()`."""

    def __init__(self, job_dir: Path | None = None, interval: float = 0.0, cancel_after: int | None = None):
        super().__init__(job_dir, interval, is_cancelled=self._check)
        self.messages: list[p.Message] = []
        self._cancel = False
        self._cancel_after = cancel_after  # cancel once this many progress reports were made
        self._progress_calls = 0

    def cancel(self) -> None:
        self._cancel = True

    def _check(self) -> bool:
        return self._cancel

    def progress(self, done: float, total: float | None = None, text: str = "", unit: str = "") -> None:
        self._progress_calls += 1
        if self._cancel_after is not None and self._progress_calls >= self._cancel_after:
            self._cancel = True
        super().progress(done, total, text, unit)

    def _send(self, message: p.Message) -> None:
        self.messages.append(message)

    @property
    def metric_rows(self) -> list[dict[str, Any]]:
        """Every metric row sent so far (flushes first)."""
        self.flush()
        return [row for m in self.messages if isinstance(m, p.MetricRows) for row in m.rows]

    @property
    def logs(self) -> list[str]:
        return [m.text for m in self.messages if isinstance(m, p.LogLine)]

    @property
    def artifacts(self) -> list[p.Artifact]:
        return [m for m in self.messages if isinstance(m, p.Artifact)]
