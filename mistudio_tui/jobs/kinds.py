"""The built-in job kinds and their parent-side hooks."""

from __future__ import annotations

from mistudio_tui.jobs.registry import JobKind, register

TASKS = "mistudio_tui.jobs.tasks"

register(JobKind("diag.count", f"{TASKS}.diagnostics:count", title="Diagnostic count", cancel_grace_s=3.0))
register(JobKind("diag.hang", f"{TASKS}.diagnostics:hang", title="Diagnostic hang", cancel_grace_s=1.0))
register(JobKind("diag.flood", f"{TASKS}.diagnostics:flood", title="Diagnostic flood"))
