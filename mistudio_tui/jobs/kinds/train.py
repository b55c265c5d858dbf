"""The `train` and `train.multi` kinds: their typed parameters, parent-side hooks and registration.

The worker entry points are `jobs/tasks/train.py` and `jobs/tasks/train_multi.py` (named by dotted path, so this
module stays torch-free). The parts of a row are JobParams too, so their unset (None) values stay out of the row as
they always did; the SAE and training configs keep their own layout and validation (`SAEConfig`, `TrainConfig`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Literal

from mistudio_tui.db import metrics as metric_queries
from mistudio_tui.db.models import Job, Training, utcnow
from mistudio_tui.db.states import JobState
from mistudio_tui.jobs import protocol as p
from mistudio_tui.jobs.finishers import apply_resource_fields
from mistudio_tui.jobs.params import JobParams
from mistudio_tui.jobs.registry import JobKind, register
from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalModel(JobParams):
    """The model and tokenization an SAE's CE loss is measured through (none: no CE-loss evaluation)."""

    model_path: str | None = None
    model_dtype: str | None = None
    tokenization_dir: Path | None = None
    is_causal_lm: bool = False
    context_size: int | None = None  # sae.eval: turns a token budget into a number of sequences


@dataclasses.dataclass(frozen=True, kw_only=True)
class ActivationsSource(JobParams):
    """Training rows read from an activation set's folder: `hook` (None: its first), a transcoder's target
    `hook_out` after it. A group job's members name their own hooks."""

    type: Literal["activations"] = "activations"
    dir: Path | None  # None: the run's activation set is gone (the job fails, saying so)
    hook: str | None = None
    hook_out: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class StreamSource(JobParams):
    """Training rows computed on the fly by a model over a tokenization (a group job), never stored."""

    type: Literal["stream"] = "stream"
    model_path: str
    model_dtype: str | None = None
    tokenization_dir: Path
    buffer_tokens: int = 65536
    batch_size: int = 8
    exclude_bos: bool = True
    exclude_special: bool = True

    def __post_init__(self) -> None:
        for name in ("buffer_tokens", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"stream {name} must be positive, got {getattr(self, name)}")


def _run_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if v is not None}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainParams(JobParams):
    """One SAE trained (or resumed) from an activation set into `out_dir`."""

    kind: ClassVar[str] = "train"
    sae: SAEConfig
    train: TrainConfig
    source: ActivationsSource
    out_dir: Path
    resume: bool = False
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)  # written into cfg.json (hook, model, ...)
    eval: EvalModel = dataclasses.field(default_factory=EvalModel)
    nproc: int | None = None  # data-parallel processes (None: one)

    def __post_init__(self) -> None:
        if self.nproc is not None and self.nproc < 1:
            raise ValueError(f"nproc must be at least 1, got {self.nproc}")
        if (self.nproc or 1) > 1 and self.source.hook_out:
            raise ValueError("transcoders train in one process; leave out --nproc")

    def train_config(self) -> TrainConfig:
        """The training config with the run's metadata, which the trainer writes into cfg.json."""
        return dataclasses.replace(self.train, metadata={**self.train.metadata, **_run_metadata(self.metadata)})


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupMember(JobParams):
    """One SAE of a group job: its Training row, the hook it reads and its own folder."""

    training_id: int
    label: str | None = None  # shown in progress lines (None: the hook)
    hook: str
    sae: SAEConfig
    out_dir: Path


@dataclasses.dataclass(frozen=True, kw_only=True)
class MultiTrainParams(JobParams):
    """Several SAEs trained in lockstep on one source (they share the training config)."""

    kind: ClassVar[str] = "train.multi"
    members: tuple[GroupMember, ...]
    train: TrainConfig
    source: ActivationsSource | StreamSource
    resume: bool = False
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    eval: EvalModel = dataclasses.field(default_factory=EvalModel)

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("a training group needs at least one SAE")
        ids = [m.training_id for m in self.members]
        if len(set(ids)) != len(ids):
            raise ValueError(f"a training group lists a run twice: {ids}")

    def train_config(self) -> TrainConfig:
        """The shared training config with the group's metadata."""
        return dataclasses.replace(self.train, metadata={**self.train.metadata, **_run_metadata(self.metadata)})


# --- parent-side hooks ---------------------------------------------------------------------------------------


def train_metrics(job: Job, rows: list[dict[str, Any]]) -> None:
    """Store metric rows; a row with `training_id` (a group job) belongs to that run, others to the job's."""
    if job.resource_type != "training":
        return
    by_training: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        training_id = row.get("training_id", job.resource_id)
        if training_id is not None:
            by_training.setdefault(int(training_id), []).append(row)
    for training_id, run_rows in by_training.items():
        metric_queries.record_metrics(training_id, run_rows)


def train_artifact(job: Job, artifact: p.Artifact) -> None:
    """Store the feature-density histogram a training reports periodically."""
    training_id = artifact.meta.get("training_id", job.resource_id)
    if artifact.kind == "density_histogram" and job.resource_type == "training" and training_id is not None:
        metric_queries.record_density_histogram(int(training_id), artifact.meta)


def train_start(job: Job) -> None:
    """A resumed run replays from its checkpoint: drop curve points after it, and take the budget it runs with
    (`train --resume RUN --tokens N` changes it)."""
    params = TrainParams.from_json(job.params)
    if not params.resume or job.resource_id is None:
        return
    training = Training.get_or_none(Training.id == job.resource_id)
    if training is not None and params.train.total_tokens != (training.config or {}).get("train", {}).get(
        "total_tokens"
    ):
        config = {**training.config, "train": params.train.to_dict()}
        Training.update(config=config, total_tokens=params.train.total_tokens).where(
            Training.id == training.id
        ).execute()

    from mistudio_tui.ml.sae.checkpoint_files import latest_checkpoint_step

    step = latest_checkpoint_step(params.out_dir)
    if step is not None:
        metric_queries.drop_after(job.resource_id, step)


def finish_train(job: Job, status: str, result: dict[str, Any]) -> None:
    apply_resource_fields(job, status, result)
    training = Training.get_or_none(Training.id == job.resource_id)
    if training is None:
        return
    if status == "completed":
        training.status = "completed"
        training.finished_at = utcnow()
    elif status == "cancelled":
        training.status = "paused" if result.get("checkpoint") else "cancelled"
    training.save()


def group_training_ids(job: Job) -> list[int]:
    """The trainings a group job trains. Read from the raw row, not through MultiTrainParams: a job whose params no
    longer fit must still hand its runs their final state."""
    return [int(m["training_id"]) for m in job.params.get("members", [])]


def train_multi_start(job: Job) -> None:
    """Mark every run of the group running under this job; a resumed group drops curve points after each checkpoint."""
    from mistudio_tui.ml.sae.checkpoint_files import latest_checkpoint_step

    params = MultiTrainParams.from_json(job.params)
    ids = [m.training_id for m in params.members]
    Training.update(status="running", job=job.id, error=None).where(Training.id.in_(ids)).execute()
    if params.resume:
        for member in params.members:
            step = latest_checkpoint_step(member.out_dir)
            if step is not None:
                metric_queries.drop_after(member.training_id, step)


def finish_train_multi(job: Job, status: str, result: dict[str, Any]) -> None:
    """Give every run of the group its own result fields and final state."""
    results = result.get("trainings") or {}
    checkpoints = result.get("checkpoints") or {}
    for training in Training.select().where(Training.id.in_(group_training_ids(job))):
        fields = (results.get(str(training.id)) or {}).get("resource") or {}
        training.device = job.device or training.device
        if status in (JobState.COMPLETED, JobState.CANCELLED):
            for key, value in fields.items():
                if key in Training._meta.fields and key != "id":
                    setattr(training, key, value)
        if status == "completed":
            training.status = "completed"
            training.finished_at = utcnow()
        elif status == "cancelled":
            training.status = "paused" if checkpoints.get(str(training.id)) is not None else "cancelled"
        else:
            training.status = status
            training.error = job.error
        training.save()


TASKS = "mistudio_tui.jobs.tasks"
SHARED_HOOKS: dict[str, Any] = {"metrics": train_metrics, "artifact": train_artifact}  # rows tagged by training

register(
    JobKind(
        "train",
        f"{TASKS}.train:run",
        title="Train SAE",
        cancel_grace_s=60.0,
        finish=finish_train,
        start=train_start,
        params=TrainParams,
        **SHARED_HOOKS,
    )
)
register(
    JobKind(
        "train.multi",
        f"{TASKS}.train_multi:run",
        title="Train SAE group",
        cancel_grace_s=120.0,
        finish=finish_train_multi,
        start=train_multi_start,
        params=MultiTrainParams,
        **SHARED_HOOKS,
    )
)
