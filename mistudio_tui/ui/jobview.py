"""How a job row is shown: progress fraction, elapsed time and ETA."""

from __future__ import annotations

from dataclasses import dataclass

from mistudio_tui.db.models import Job
from mistudio_tui.ui import format as fmt


@dataclass
class JobView:
    """Display values of one job."""

    job: Job

    @property
    def fraction(self) -> float | None:
        j = self.job
        if j.status == "completed":
            return 1.0
        if j.progress_total:
            return min(max(j.progress_done / j.progress_total, 0.0), 1.0)
        return None

    @property
    def elapsed(self) -> float | None:
        j = self.job
        if j.started_at is None:
            return None
        end = j.finished_at if j.finished_at else None
        return fmt.since(j.started_at, end)

    @property
    def eta(self) -> float | None:
        frac, elapsed = self.fraction, self.elapsed
        if self.job.status != "running" or not frac or elapsed is None or frac >= 1.0:
            return None
        return elapsed * (1.0 - frac) / frac

    def progress_cell(self, width: int = 12) -> str:
        frac = self.fraction
        pct = f"{100 * frac:3.0f}%" if frac is not None else "  … "
        return f"{fmt.bar(frac, width)} {pct}"

    def short(self) -> str:
        """'train 45%' for the jobs bar."""
        frac = self.fraction
        name = self.job.title or self.job.kind
        return f"{name} {100 * frac:.0f}%" if frac is not None else f"{name} …"
