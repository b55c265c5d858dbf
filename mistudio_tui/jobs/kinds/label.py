"""The `label` kind: auto-label features of a feature set with an OpenAI-compatible chat API."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mistudio_tui.db.models import Job
from mistudio_tui.jobs import protocol as p
from mistudio_tui.jobs.labeling_store import finish_labeling, store_label
from mistudio_tui.jobs.params import JobParams
from mistudio_tui.jobs.registry import JobKind, register
from mistudio_tui.labeling.types import LabelingSettings


@dataclass(frozen=True, kw_only=True)
class LabelParams(JobParams):
    """Label features `indices` of the feature set in `feature_dir`, except `skip` (labeled before a restart)."""

    kind = "label"
    settings: LabelingSettings  # endpoint, model and prompts; never the API key (only the name of its variable)
    indices: tuple[int, ...]
    feature_dir: Path
    skip: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.indices:
            raise ValueError("label: no features to label")
        if min(self.indices) < 0:
            raise ValueError(f"label: feature index {min(self.indices)} is negative")


def label_artifact(job: Job, artifact: p.Artifact) -> None:
    """A labeling job reports each finished label as an artifact: store it at once (resumable)."""
    if artifact.kind == "label":
        store_label(job, artifact.meta)


register(
    JobKind(
        "label",
        "mistudio_tui.jobs.tasks.label:run",
        title="Auto-label features",
        cancel_grace_s=10.0,
        artifact=label_artifact,
        finish=finish_labeling,
        params=LabelParams,
    )
)
