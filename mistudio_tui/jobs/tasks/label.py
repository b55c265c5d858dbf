"""Worker side of auto-labeling: records from the feature set, labels back to the runner one by one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mistudio_tui.jobs.context import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Label the requested features; each finished label is sent at once (a restarted job skips them)."""
    from mistudio_tui.labeling.pipeline import run_labeling
    from mistudio_tui.labeling.records import build_records
    from mistudio_tui.labeling.types import LabelingSettings

    settings = LabelingSettings.from_dict(params["settings"])
    indices = [int(i) for i in params["indices"]]
    skip = {int(i) for i in params.get("skip") or []}
    records = build_records(
        Path(params["feature_dir"]),
        (i for i in indices if i not in skip),
        holdout=settings.score_examples,
        seed=settings.seed,
    )

    def on_result(result: Any) -> None:
        ctx.artifact("label", **result.to_dict())

    summary = run_labeling(records, settings, ctx, on_result, skip=skip)
    return {"summary": summary}
