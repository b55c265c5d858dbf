"""The built-in job kinds: worker entry points and their parent-side hooks."""

from __future__ import annotations

from mistudio_tui.jobs import finishers as f
from mistudio_tui.jobs.kinds import (  # noqa: F401 - each module registers its kinds
    activations,
    datasets,
    diagnostics,
    features,
    label,
    models,
    sample,
)
from mistudio_tui.jobs.registry import JobKind, register

TASKS = "mistudio_tui.jobs.tasks"

register(
    JobKind(
        "train",
        f"{TASKS}.train:run",
        title="Train SAE",
        cancel_grace_s=60.0,
        finish=f.finish_train,
        metrics=f.train_metrics,
        start=f.train_start,
        artifact=f.train_artifact,
    )
)
register(
    JobKind(
        "train.multi",
        f"{TASKS}.train_multi:run",
        title="Train SAE group",
        cancel_grace_s=120.0,
        finish=f.finish_train_multi,
        metrics=f.train_metrics,
        start=f.train_multi_start,
        artifact=f.train_artifact,
    )
)
register(JobKind("sae.eval", f"{TASKS}.sae:evaluate", title="Evaluate SAE", finish=f.finish_sae_eval))
register(JobKind("sae.import", f"{TASKS}.sae:import_sae", title="Import SAE", finish=f.apply_resource_fields))
register(
    JobKind(
        "sweep",
        f"{TASKS}.sweep:run",
        title="Hyperparameter sweep",
        cancel_grace_s=120.0,  # its running trials get the train kind's 60 s to checkpoint first
        finish=f.finish_sweep,
    )
)
