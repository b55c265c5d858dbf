"""The offline sample: a stdlib-docstring corpus and a tiny GPT-2 trained on it, registered as usual."""

from __future__ import annotations

from mistudio_tui.db.models import Dataset, Job, LanguageModel
from mistudio_tui.db.states import JobState
from mistudio_tui.jobs.kinds.sample import SampleParams
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.studio import Studio

SAMPLE_DATASET = "sample-stdlib-docs"
SAMPLE_MODEL = "sample-tiny-gpt2"
# Training steps of the tiny GPT-2: about a minute on 2 idle CPU cores (~0.1 s a step), the same model everywhere.
SAMPLE_LM_STEPS = 600


def home_is_empty() -> bool:
    """True when there is no dataset and no model yet (first run)."""
    return not Dataset.select().exists() and not LanguageModel.select().exists()


def sample_spec(
    studio: Studio, time_budget_s: float | None = None, max_steps: int | None = None
) -> JobSpec[SampleParams]:
    """The job that builds the corpus, trains the tiny LM and registers both (one at a time).

    The LM trains for `max_steps` (default SAMPLE_LM_STEPS), or for `time_budget_s` seconds when only that is given.
    """
    if max_steps is None and time_budget_s is None:
        max_steps = SAMPLE_LM_STEPS
    params = SampleParams(
        datasets_dir=studio.paths.dir("datasets"),
        models_dir=studio.paths.dir("models"),
        time_budget_s=time_budget_s,
        max_steps=max_steps,
    )
    active = Job.select().where((Job.kind == "sample") & Job.status.in_(JobState.ACTIVE)).first()
    if active is not None:
        raise ValueError(f"the sample is already being built (job {active.id}); see the Jobs panel")
    return JobSpec("sample", params, "Build offline sample")


def start_sample(studio: Studio, pipeline: bool = False) -> Job:
    """Submit the sample job (and, with `pipeline`, the stages that follow it)."""
    spec = sample_spec(studio)
    if pipeline:
        from mistudio_tui.services.pipeline import SamplePipeline

        return SamplePipeline(studio).start(spec)
    return spec.submit(studio.runner)
