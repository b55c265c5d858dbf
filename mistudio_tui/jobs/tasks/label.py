"""Worker side of auto-labeling: records from the feature set, labels back to the runner one by one."""

from __future__ import annotations

from typing import Any

from mistudio_tui.jobs.context import JobContext
from mistudio_tui.jobs.kinds.label import LabelParams


def run(params: LabelParams, ctx: JobContext) -> dict[str, Any]:
    """Label the requested features; each finished label is sent at once (a restarted job skips them)."""
    from mistudio_tui.labeling.pipeline import run_labeling
    from mistudio_tui.labeling.records import build_records

    settings = params.settings
    skip = set(params.skip)
    records = build_records(
        params.feature_dir,
        (i for i in params.indices if i not in skip),
        holdout=settings.score_examples,
        seed=settings.seed,
    )

    def on_result(result: Any) -> None:
        ctx.artifact("label", **result.to_dict())

    summary = run_labeling(records, settings, ctx, on_result, skip=skip)
    return {"summary": summary}
