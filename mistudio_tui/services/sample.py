"""The offline sample: a stdlib-docstring corpus and a tiny GPT-2 trained on it, registered as usual."""

from __future__ import annotations

from mistudio_tui.db.models import Dataset, Job, LanguageModel
from mistudio_tui.db.states import JobState
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.studio import Studio

SAMPLE_DATASET = "sample-stdlib-docs"
SAMPLE_MODEL = "sample-tiny-gpt2"


def home_is_empty() -> bool:
    """True when there is no dataset and no model yet (first run)."""
    return not Dataset.select().exists() and not LanguageModel.select().exists()


def sample_spec(studio: Studio, time_budget_s: float = 60.0, max_steps: int | None = None) -> JobSpec:
    """The job that builds the corpus, trains the tiny LM and registers both (one at a time)."""
    active = Job.select().where((Job.kind == "sample") & Job.status.in_(JobState.ACTIVE)).first()
    if active is not None:
        raise ValueError(f"the sample is already being built (job {active.id}); see the Jobs panel")
    params = {
        "datasets_dir": str(studio.paths.dir("datasets")),
        "models_dir": str(studio.paths.dir("models")),
        "time_budget_s": float(time_budget_s),
        "max_steps": max_steps,
    }
    return JobSpec("sample", params, "Build offline sample")


def start_sample(studio: Studio, pipeline: bool = False) -> Job:
    """Submit the sample job (and, with `pipeline`, the stages that follow it)."""
    spec = sample_spec(studio)
    if pipeline:
        from mistudio_tui.services.pipeline import SamplePipeline

        return SamplePipeline(studio).start(spec)
    return spec.submit(studio.runner)
