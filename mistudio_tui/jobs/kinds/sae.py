"""The `sae.eval` and `sae.import` kinds: their typed parameters, parent-side hooks and registration.

The worker entry points are in `jobs/tasks/sae.py` (named by dotted path, so this module stays torch-free).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from mistudio_tui.db.models import Job, Training
from mistudio_tui.jobs.finishers import apply_resource_fields
from mistudio_tui.jobs.kinds.train import EvalModel
from mistudio_tui.jobs.params import JobParams
from mistudio_tui.jobs.registry import JobKind, register


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalSource(JobParams):
    """The activation set an evaluation reads (none: CE loss only): `hook`, a transcoder's target `hook_out`, and
    whether to keep to the rows its training held out (an imported SAE never saw the set, so it may use them all)."""

    dir: Path | None = None
    hook: str | None = None
    hook_out: str | None = None
    held_out: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class SAEEvalParams(JobParams):
    """Re-evaluate the finished SAE of Training `training_id` (in `sae_dir`) into its `evaluation`."""

    kind: ClassVar[str] = "sae.eval"
    training_id: int
    sae_dir: Path
    hook: str | None = None
    tokens: int | None = None  # None: the default budget
    device: str = "auto"
    source: EvalSource = dataclasses.field(default_factory=EvalSource)
    eval: EvalModel = dataclasses.field(default_factory=EvalModel)
    previous: dict[str, Any] = dataclasses.field(default_factory=dict)  # the evaluation kept beside the new one
    ground_truth: Path | None = None  # true features to score the decoder against

    def __post_init__(self) -> None:
        if self.tokens is not None and self.tokens <= 0:
            raise ValueError(f"--tokens must be positive, got {self.tokens}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SAEImportParams(JobParams):
    """Read an SAE from a folder or hub repo (`source`) into `out_dir` in the SAELens layout."""

    kind: ClassVar[str] = "sae.import"
    source: str  # a local folder, or a hub repo id when `hub`
    hub: bool = False
    subfolder: str | None = None
    file: str | None = None  # one file of the hub repo (a SAELens release's .pt state dict)
    revision: str | None = None
    hook: str | None = None
    model_name: str | None = None  # recorded with the SAE when its file does not say
    model_d_model: int | None = None  # the model's width, which the SAE's d_in must match
    out_dir: Path
    release: str | None = None  # a SAELens catalogue import: where it came from
    sae_id: str | None = None
    norm_scaling_factor: float | None = None

    def __post_init__(self) -> None:
        if self.file is not None and not self.hub:
            raise ValueError("a single file is read from a hub repo only")


def finish_sae_eval(job: Job, status: str, result: dict[str, Any]) -> None:
    """Store an on-demand evaluation on the training named in the job's params (not the job's resource); read from the
    raw row, as a finisher runs even for a job whose params no longer fit."""
    training = Training.get_or_none(Training.id == job.params.get("training_id"))
    fields = result.get("resource") if status == "completed" else None
    if training is None or not fields:
        return
    values = {Training._meta.fields[k]: v for k, v in fields.items() if k in Training._meta.fields and k != "id"}
    Training.update(values).where(Training.id == training.id).execute()


TASKS = "mistudio_tui.jobs.tasks"

register(
    JobKind("sae.eval", f"{TASKS}.sae:evaluate", title="Evaluate SAE", finish=finish_sae_eval, params=SAEEvalParams)
)
register(
    JobKind(
        "sae.import",
        f"{TASKS}.sae:import_sae",
        title="Import SAE",
        finish=apply_resource_fields,
        params=SAEImportParams,
    )
)
