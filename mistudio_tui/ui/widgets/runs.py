"""Pieces of a training run's views shared by the runs list, the run detail and the comparison screens.

The plotted-metric keys, the stored curve drawn into a `CurvePlot`, the log tail, the guidance for a failed run, and
pausing a run's job.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from mistudio_tui.db import metrics as mq
from mistudio_tui.db.models import Training
from mistudio_tui.db.states import JobState, RunState
from mistudio_tui.jobs.runner import tail_file
from mistudio_tui.services import trainings as svc
from mistudio_tui.services.run_diagnosis import diagnose
from mistudio_tui.ui.live_redraw import set_series_if_changed
from mistudio_tui.ui.widgets.plots import CurvePlot

if TYPE_CHECKING:
    from mistudio_tui.ui.screens.base import StudioScreen

DETAIL_METRICS = ("loss", "mse", "l0", "explained_variance", "dead_fraction", "lr")
LOG_DEFAULT = {"loss": True, "mse": True, "lr": True}
PROBLEM_STATES = (RunState.FAILED, RunState.INTERRUPTED)
POLL_S = 2.0  # runs trained by another process (the CLI, a sweep) reach the UI only through the database


def log_tail(training: Training, n: int) -> list[str]:
    """The last `n` lines of the run's job log (empty when it has none)."""
    job = training.job
    return tail_file(Path(job.log_path), n) if job and job.log_path else []


def guidance_lines(training: Training, tail: list[str]) -> list[str]:
    """Markup lines for a failed or unhealthy run: the error and the likely fixes."""
    lines: list[str] = []
    failed = training.status in PROBLEM_STATES
    if failed and training.error:
        lines.append(f"[red]error: {escape(training.error)}[/red]")
    sae = (training.config or {}).get("sae", {})
    uses_auxk = training.architecture in svc.K_ARCHITECTURES and sae.get("aux_k_coefficient", 1.0) > 0
    found = diagnose(training.error if failed else None, tail if failed else [], training.dead_fraction, uses_auxk)
    problem = svc.config_problem(training.config) if failed else None
    if problem:  # resuming runs the same configuration again: only a clone with changes can work
        lines.append(
            f"[yellow]configuration error:[/yellow] {escape(problem)} → clone it with changes "
            "(k on its page); resuming would fail the same way"
        )
    for diagnosis in found:
        lines.append(f"[yellow]likely: {escape(diagnosis.cause)}[/yellow] → {escape(diagnosis.fix)}")
    if failed and not found and not problem:
        lines.append("[yellow]no known cause matched:[/yellow] read the log below; r resumes from the last checkpoint")
    return lines


def draw_metric_curve(plot: CurvePlot, training: Training, metric: str, log_y: bool | None) -> None:
    """Draw one stored metric of a run, with the min/max band of merged points when there are any."""
    data = mq.curve(training.id, metric)
    log = log_y if log_y is not None else LOG_DEFAULT.get(metric, False)
    merged = any(low != high for low, high in zip(data.lows, data.highs, strict=True))
    band = (data.steps, data.lows, data.highs) if merged else None
    set_series_if_changed(plot, [(metric, data.steps, data.values)], f"{metric} · {training.name}", log, band)


class MetricKeys:
    """`m` cycles the plotted metric (through METRICS) and `l` toggles its log axis; then `redraw_metric()`."""

    METRICS: tuple[str, ...] = DETAIL_METRICS
    metric = "loss"
    log_y: bool | None = None  # None: the metric's default (LOG_DEFAULT)

    def redraw_metric(self) -> None:
        raise NotImplementedError

    def action_next_metric(self) -> None:
        i = self.METRICS.index(self.metric) if self.metric in self.METRICS else -1
        self.metric = self.METRICS[(i + 1) % len(self.METRICS)]
        self.log_y = None
        self.redraw_metric()

    def action_toggle_log(self) -> None:
        current = self.log_y if self.log_y is not None else LOG_DEFAULT.get(self.metric, False)
        self.log_y = not current
        self.redraw_metric()


def pause_training(screen: StudioScreen, training: Training | None) -> bool:
    """Ask a running training's job to checkpoint and stop (resumable with r)."""
    if training is None or training.job is None or training.job.status not in JobState.ACTIVE:
        screen.notify("Select a running training", severity="warning")
        return False
    screen.studio.runner.cancel(training.job.id)
    screen.notify(f"pausing '{training.name}': it saves a checkpoint, then stops (r resumes)")
    return True
