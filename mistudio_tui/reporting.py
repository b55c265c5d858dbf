"""How compute code reports: progress, metric rows, log lines, artifacts, a cancel check, and the records it sends.

Everything in `ml/`, `labeling/` and `inference/` takes a `JobContext` and never knows whether it runs in a job's
worker process (`jobs.worker.PipeContext` sends the records over the runner's pipe), in the inference worker, or
in-process in a test or a script (`LocalContext` keeps them). This module sits at the bottom of the layers, beside
config.py, so the compute code never imports `jobs/`; it is standard library only (the UI imports it too).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --- the records a worker sends to the runner over its one-way pipe: small, typed, picklable --------------------


@dataclass(slots=True)
class Started:
    """The worker is up: its pid and the device it computes on."""

    pid: int
    device: str = "cpu"


@dataclass(slots=True)
class Progress:
    """How far the job is: `done` of `total` units (total None when unknown), with a short status text."""

    done: float
    total: float | None = None
    text: str = ""
    unit: str = ""


@dataclass(slots=True)
class MetricRows:
    """Training metric rows: each a dict with at least `step`; never dropped by throttling."""

    rows: list[dict[str, Any]]


@dataclass(slots=True)
class LogLine:
    """A line for the job's log (also written to the log file by the worker)."""

    text: str
    level: str = "info"


@dataclass(slots=True)
class Artifact:
    """Something the job wrote that the parent should know about (a checkpoint, a histogram, a shard)."""

    kind: str
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Result:
    """The job's return value (JSON-able); the last message of a successful job."""

    data: dict[str, Any]


@dataclass(slots=True)
class Cancelled:
    """The job saw the cancel event and stopped cleanly (after checkpointing where it can)."""

    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Error:
    """The job raised: a one-line message first, then the full traceback."""

    message: str
    traceback: str = ""


Message = Started | Progress | MetricRows | LogLine | Artifact | Result | Cancelled | Error


# --- the reporting interface ------------------------------------------------------------------------
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
        self._pending_progress: Progress | None = None
        self._pending_rows: list[dict[str, Any]] = []

    # --- reporting -------------------------------------------------------------------------------
    def started(self, device: str) -> None:
        """Record the device the job computes on (sent at once)."""
        self.device = device
        self._send(Started(pid=os.getpid(), device=device))

    def progress(self, done: float, total: float | None = None, text: str = "", unit: str = "") -> None:
        """Report progress; sent at most every `interval` seconds (the latest value wins)."""
        self._pending_progress = Progress(float(done), None if total is None else float(total), text, unit)
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
        self._send(LogLine(text, level))

    def artifact(self, kind: str, path: str | Path = "", **meta: Any) -> None:
        """Announce a file the job wrote (checkpoint, histogram, shard)."""
        self.flush()
        self._send(Artifact(kind, str(path), meta))

    def flush(self) -> None:
        """Send whatever progress and metric rows are pending."""
        if self._pending_rows:
            rows, self._pending_rows = self._pending_rows, []
            self._send(MetricRows(rows))
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

    def _send(self, message: Message) -> None:
        raise NotImplementedError


class LocalContext(JobContext):
    """An in-process context for tests and scripts: records every message; cancel via `cancel()`."""

    def __init__(self, job_dir: Path | None = None, interval: float = 0.0, cancel_after: int | None = None):
        super().__init__(job_dir, interval, is_cancelled=self._check)
        self.messages: list[Message] = []
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

    def _send(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def metric_rows(self) -> list[dict[str, Any]]:
        """Every metric row sent so far (flushes first)."""
        self.flush()
        return [row for m in self.messages if isinstance(m, MetricRows) for row in m.rows]

    @property
    def logs(self) -> list[str]:
        return [m.text for m in self.messages if isinstance(m, LogLine)]

    @property
    def artifacts(self) -> list[Artifact]:
        return [m for m in self.messages if isinstance(m, Artifact)]
