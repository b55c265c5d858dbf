"""The messages a worker sends to the runner over its one-way pipe (defined in `mistudio_tui.reporting`)."""

from __future__ import annotations

from mistudio_tui.reporting import (
    Artifact,
    Cancelled,
    Error,
    LogLine,
    Message,
    MetricRows,
    Progress,
    Result,
    Started,
)

__all__ = ["Artifact", "Cancelled", "Error", "LogLine", "Message", "MetricRows", "Progress", "Result", "Started"]
