"""How a job row is shown: progress fraction, elapsed time and ETA."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from mistudio_tui.db.models import Job
from mistudio_tui.ui import format as fmt

WINDOW_S = 30.0  # throughput over the last half minute: start-up (loading a model) is no guide to the rest
MIN_SPAN_S = 8.0  # no ETA from fewer seconds of progress than this
STABLE_SPREAD = 0.2  # shown once the predicted finish times of the last STABLE_SPAN_S agree within 20% of the rest
STABLE_SPAN_S = 6.0


@dataclass
class EtaEstimator:
    """Remaining time from recent throughput (a moving window), hidden until its prediction settles."""

    samples: dict[int, deque[tuple[float, float]]] = field(default_factory=dict)
    finishes: dict[int, deque[tuple[float, float]]] = field(default_factory=dict)

    def observe(self, job_id: int, now: float, fraction: float) -> float | None:
        """Record `fraction` done at time `now`; the ETA in seconds, or None while unknown or unsettled."""
        samples = self.samples.setdefault(job_id, deque())
        if samples and fraction < samples[-1][1]:  # restarted (a resume): start over
            samples.clear()
            self.finishes.pop(job_id, None)
        if not samples or now > samples[-1][0]:
            samples.append((now, fraction))
        while len(samples) > 2 and now - samples[1][0] >= WINDOW_S:
            samples.popleft()
        (t0, f0), (t1, f1) = samples[0], samples[-1]
        if t1 - t0 < MIN_SPAN_S or f1 <= f0:
            return None
        remaining = (1.0 - f1) * (t1 - t0) / (f1 - f0)
        finishes = self.finishes.setdefault(job_id, deque())
        finishes.append((now, now + remaining))
        while finishes and now - finishes[0][0] > STABLE_SPAN_S:
            finishes.popleft()
        predicted = [f for _, f in finishes]
        if now - finishes[0][0] < STABLE_SPAN_S / 2 or len(predicted) < 3:
            return None
        if max(predicted) - min(predicted) > STABLE_SPREAD * max(remaining, 1.0):
            return None
        return remaining

    def forget(self, job_id: int) -> None:
        self.samples.pop(job_id, None)
        self.finishes.pop(job_id, None)


ETAS = EtaEstimator()  # shared by every view in the process: each redraw adds a sample


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
        frac = self.fraction
        if self.job.status != "running" or frac is None or frac >= 1.0:
            ETAS.forget(self.job.id)
            return None
        return ETAS.observe(self.job.id, time.monotonic(), frac)

    def progress_cell(self, width: int = 12) -> str:
        frac = self.fraction
        pct = f"{100 * frac:3.0f}%" if frac is not None else "  … "
        return f"{fmt.bar(frac, width)} {pct}"

    def short(self) -> str:
        """'train 45%' for the jobs bar."""
        frac = self.fraction
        name = self.job.title or self.job.kind
        return f"{name} {100 * frac:.0f}%" if frac is not None else f"{name} …"
