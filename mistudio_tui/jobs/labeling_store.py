"""Parent side of labeling: store each label as it arrives and keep the labeling run's counters current."""

from __future__ import annotations

from typing import Any

from mistudio_tui.db.features import add_label
from mistudio_tui.db.models import FeatureSet, Job, LabelingJob


def store_label(job: Job, result: dict[str, Any]) -> None:
    """One LabelResult (as a dict): a label row unless it failed; counters either way."""
    run = LabelingJob.get_or_none(LabelingJob.id == job.resource_id)
    if run is None:
        return
    failed = bool(result.get("error"))
    if not failed:
        training_id = FeatureSet.get_by_id(run.feature_set_id).training_id
        add_label(
            training_id,
            int(result["index"]),
            technical=result.get("technical") or "",
            semantic=result.get("semantic") or "",
            method="llm",
            model=result.get("model") or run.model,
            prompt_version=result.get("prompt_version"),
            labeling_job=run.id,
            score=result.get("score"),
            score_details=result.get("score_details") or None,
            author=run.model,
        )
    LabelingJob.update(
        features_done=LabelingJob.features_done + (0 if failed else 1),
        features_failed=LabelingJob.features_failed + (1 if failed else 0),
        prompt_tokens=LabelingJob.prompt_tokens + int(result.get("prompt_tokens") or 0),
        completion_tokens=LabelingJob.completion_tokens + int(result.get("completion_tokens") or 0),
    ).where(LabelingJob.id == run.id).execute()


def finish_labeling(job: Job, status: str, result: dict[str, Any]) -> None:
    """Record the cost and the reason a run stopped."""
    run = LabelingJob.get_or_none(LabelingJob.id == job.resource_id)
    if run is None:
        return
    summary = (result or {}).get("summary") or {}
    if summary.get("cost") is not None:
        run.cost = summary["cost"]
    if status == "completed":
        run.status = "completed"
    run.save()
