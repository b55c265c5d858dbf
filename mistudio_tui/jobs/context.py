"""JobContext and friends, re-exported from `mistudio_tui.reporting` where they live (below `ml/`).

Job code in `jobs/` may import them from here; compute code below `jobs/` imports `mistudio_tui.reporting`.
"""

from __future__ import annotations

from mistudio_tui.reporting import JobCancelled, JobContext, LocalContext

__all__ = ["JobCancelled", "JobContext", "LocalContext"]
