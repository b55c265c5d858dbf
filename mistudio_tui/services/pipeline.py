"""The quick-start pipeline on the sample: tokenize → extract activations → train a TopK SAE → features.

Each stage is an ordinary job created by the same services a user would call; the chain submits the next
stage when the previous one completes (and stops, saying why, when one does not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mistudio_tui.db.models import Job, LanguageModel
from mistudio_tui.db.states import JobState
from mistudio_tui.jobs.interface import EventType, JobEvent
from mistudio_tui.services.datasets import tokenize_dataset
from mistudio_tui.services.features import extract_features
from mistudio_tui.services.models import extract_activations
from mistudio_tui.services.sample import SAMPLE_DATASET, SAMPLE_MODEL
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.services.trainings import new_training
from mistudio_tui.studio import Studio

SAMPLE_CONTEXT = 128
SAMPLE_ACTIVATION_TOKENS = 300_000
SAMPLE_TRAIN_TOKENS = 3_000_000
SAMPLE_FEATURE_TOKENS = 60_000


def sample_stages(studio: Studio) -> list[Callable[[], JobSpec[Any]]]:
    """The stages after the sample job, each building its spec from what the previous stage made."""
    state: dict[str, int] = {}

    def tokenize() -> JobSpec[Any]:
        spec = tokenize_dataset(studio, SAMPLE_DATASET, model_ref=SAMPLE_MODEL, context_size=SAMPLE_CONTEXT, name=None)
        state["tokenization"] = spec.resource_id
        return spec

    def activations() -> JobSpec[Any]:
        model = LanguageModel.get(LanguageModel.name == SAMPLE_MODEL)
        layer = max((model.n_layers or 2) // 2 - 1, 0)
        spec = extract_activations(
            studio,
            model.id,
            state["tokenization"],
            hooks=[f"blocks.{layer}.hook_resid_post"],
            n_tokens=SAMPLE_ACTIVATION_TOKENS,
        )
        state["activations"] = spec.resource_id
        return spec

    def train() -> JobSpec[Any]:
        spec = new_training(
            studio,
            state["activations"],
            architecture="topk",
            k=16,
            expansion=4,  # 512 latents: wider ones find too few features in 300k tokens of a 1M-parameter model
            total_tokens=SAMPLE_TRAIN_TOKENS,
            tags="sample",
        )
        state["training"] = spec.resource_id
        return spec

    def features() -> JobSpec[Any]:
        return extract_features(studio, state["training"], n_tokens=SAMPLE_FEATURE_TOKENS)

    return [tokenize, activations, train, features]


class SamplePipeline:
    """Runs the sample job, then each stage in turn, in the background of the TUI."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.stages = sample_stages(studio)
        self.current: int | None = None
        self.error: str | None = None

    def start(self, first: JobSpec[Any]) -> Job:
        self.studio.runner.add_listener(self._on_event)
        job = first.submit(self.studio.runner)
        self.current = job.id
        return job

    def _on_event(self, event: JobEvent) -> None:
        if event.job_id != self.current or event.type != EventType.STATE:
            return
        if event.status == "completed" and self.stages:
            stage = self.stages.pop(0)
            try:
                self.current = stage().submit(self.studio.runner).id
            except (ValueError, LookupError) as exc:
                self.error = str(exc)
                self._stop()
        elif event.status in JobState.TERMINAL or not self.stages:
            if event.status != "completed":
                self.error = f"stopped: job {event.job_id} {event.status}"
            self._stop()

    def _stop(self) -> None:
        self.current = None
        self.studio.runner.remove_listener(self._on_event)
