"""Diagnostic kinds (`diag.count`, `diag.hang`, `diag.flood`): exercise the runner end to end."""

from __future__ import annotations

from dataclasses import dataclass

from mistudio_tui.jobs.params import JobParams
from mistudio_tui.jobs.registry import JobKind, register

ENTRY = "mistudio_tui.jobs.tasks.diagnostics"


@dataclass(frozen=True, kw_only=True)
class CountParams(JobParams):
    """Count to `steps`, sleeping `delay` s a step; fail, fill the disk or crash at a step when asked."""

    kind = "diag.count"
    steps: int = 10
    delay: float = 0.01
    tag: float = 0.0
    device: str = "cpu"
    fail_at: int | None = None
    disk_full_at: int | None = None
    crash_at: int | None = None
    path: str | None = None  # the file a full disk fails to write

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"diag.count: steps must be zero or more, got {self.steps}")
        if self.delay < 0:
            raise ValueError(f"diag.count: delay must be zero or more seconds, got {self.delay}")


@dataclass(frozen=True, kw_only=True)
class HangParams(JobParams):
    """Sleep `seconds`, ignoring cancellation (and SIGTERM with `ignore_term`)."""

    kind = "diag.hang"
    seconds: float = 60.0
    ignore_term: bool = False


@dataclass(frozen=True, kw_only=True)
class FloodParams(JobParams):
    """Send `messages` raw log messages as fast as possible."""

    kind = "diag.flood"
    messages: int = 10_000

    def __post_init__(self) -> None:
        if self.messages < 0:
            raise ValueError(f"diag.flood: messages must be zero or more, got {self.messages}")


register(JobKind("diag.count", f"{ENTRY}:count", title="Diagnostic count", cancel_grace_s=3.0, params=CountParams))
register(JobKind("diag.hang", f"{ENTRY}:hang", title="Diagnostic hang", cancel_grace_s=1.0, params=HangParams))
register(JobKind("diag.flood", f"{ENTRY}:flood", title="Diagnostic flood", params=FloodParams))
