"""The `sample` kind: build the offline sample (stdlib-docstring corpus and a tiny GPT-2) and register both."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mistudio_tui.db.models import Dataset, Job, LanguageModel
from mistudio_tui.db.ownership import write_marker
from mistudio_tui.jobs.params import JobParams
from mistudio_tui.jobs.registry import JobKind, register


@dataclass(frozen=True, kw_only=True)
class SampleParams(JobParams):
    """Where the corpus and the model go; the LM trains `max_steps` steps, or for `time_budget_s` seconds."""

    kind = "sample"
    datasets_dir: Path
    models_dir: Path
    time_budget_s: float | None = None
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"--time-budget must be positive, got {self.time_budget_s}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps must be at least 1, got {self.max_steps}")


def finish_sample(job: Job, status: str, result: dict[str, Any]) -> None:
    """Register the sample corpus and model built by the job."""
    if status != "completed":
        return
    ds, lm = result["dataset"], result["model"]
    dataset = Dataset.get_or_none(Dataset.name == ds["name"]) or Dataset(name=ds["name"])
    dataset.source_type = "sample"
    dataset.source = ds.get("source", "Python standard library docstrings")
    dataset.text_field = "text"
    dataset.job = job
    for key in ("path", "n_documents", "n_chars", "stats", "cleaning"):
        if key in ds:
            setattr(dataset, key, ds[key])
    dataset.status = "ready"
    dataset.save()
    model = LanguageModel.get_or_none(LanguageModel.name == lm["name"]) or LanguageModel(name=lm["name"])
    model.source_type = "sample"
    model.source = lm["path"]
    model.job = job
    for key, value in lm.items():
        if key in LanguageModel._meta.fields and key not in ("id", "name"):
            setattr(model, key, value)
    model.status = "ready"
    model.save()
    for row in (dataset, model):  # the job built these folders for these rows (a previous sample's were replaced)
        if row.path and Path(row.path).is_dir():
            with contextlib.suppress(OSError):
                write_marker(Path(row.path), row)


register(
    JobKind(
        "sample",
        "mistudio_tui.jobs.tasks.sample:run",
        title="Build offline sample",
        finish=finish_sample,
        params=SampleParams,
    )
)
