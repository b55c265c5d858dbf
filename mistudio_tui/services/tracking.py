"""Experiment tracking: a run's metric rows logged to Weights & Biases when the user asks (`train --wandb PROJECT`).

Parent side: a runner listener turns the metric events the runner already receives into `wandb.log` calls, so the
worker (and its resume path) knows nothing of trackers and a missing package is found before any work starts.
`wandb` is an optional extra (`pip install 'mistudio[wandb]'`); it is imported only here, only when asked.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

from mistudio_tui.jobs.interface import EventType, JobEvent

INSTALL_HINT = "--wandb needs the wandb package: pip install 'mistudio[wandb]' (or pip install wandb)"


def load_wandb(project: str) -> Any:
    """The wandb module, checked before any work starts; ValueError with the install hint when it is missing."""
    if not project.strip():
        raise ValueError("--wandb needs a project name")
    try:
        return importlib.import_module("wandb")
    except ImportError:
        raise ValueError(INSTALL_HINT) from None


class WandbTracker:
    """One wandb run fed with the metric rows of one job."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.job_id: int | None = None
        self.rows = 0

    @classmethod
    def start(cls, wandb: Any, project: str, name: str, config: dict[str, Any], folder: str) -> WandbTracker:
        """Open a wandb run named `name` in `project` (wandb writes its files under `folder`)."""
        return cls(wandb.init(project=project, name=name, config=config, dir=folder))

    def listener(self, event: JobEvent) -> None:
        """A runner listener: log the metric rows of this tracker's job."""
        if event.type == EventType.METRICS and self.job_id is not None and event.job_id == self.job_id:
            for row in event.data:
                values = metric_values(row)
                if values:
                    self.run.log(values, step=int(row["step"]))
                    self.rows += 1

    def finish(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "completed" else 1)


TAG_KEY = "training_id"  # rows of a multi-SAE job name their training (ml.sae.multi.TAG_KEY)


def metric_values(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metric row; a multi-SAE job's rows are named per training: 'training_7/loss'."""
    prefix = f"training_{row[TAG_KEY]}/" if row.get(TAG_KEY) is not None else ""
    return {
        f"{prefix}{key}": float(value)
        for key, value in row.items()
        if key not in ("step", TAG_KEY)
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    }
