"""The messages a worker sends to the runner over its one-way pipe: small, typed, picklable records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
