"""Auto-labeling runs: choose features, endpoint and model; the API key stays in the environment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mistudio_tui.db import features as fq
from mistudio_tui.db.lookup import resolve
from mistudio_tui.db.models import Feature, FeatureLabel, FeatureSet, LabelingJob, database
from mistudio_tui.jobs.kinds.label import LabelParams
from mistudio_tui.jobs.params import FieldError
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.studio import Studio

SELECTIONS = ("all", "unlabeled", "alive")


def select_features(
    fset: FeatureSet,
    which: str | Sequence[int] = "alive",
    flt: fq.FeatureFilter | None = None,
    limit: int | None = None,
) -> list[int]:
    """Indices to label: all, unlabeled (no semantic label), alive (not dead), an explicit list, or a filter."""
    if not isinstance(which, str):
        wanted = sorted({int(i) for i in which})
        bad = [i for i in wanted if not 0 <= i < fset.d_sae]
        if bad:
            raise ValueError(f"feature index {bad[0]} is out of range (feature set '{fset.name}' has {fset.d_sae})")
        return wanted[:limit] if limit else wanted
    if which not in SELECTIONS:
        raise ValueError(f"features: choose {', '.join(SELECTIONS)} or a list of indices, not {which!r}")
    query = fq.feature_query(fset.id, flt).where(Feature.dead == False)  # noqa: E712 - SQL comparison
    if which == "all":
        query = fq.feature_query(fset.id, flt)
    elif which == "unlabeled":
        query = query.where(Feature.labelled == False)  # noqa: E712 - SQL comparison; read from the browse index
    query = query.order_by(Feature.density.desc())
    if limit:
        query = query.limit(limit)
    return [f.index for f in query.select(Feature.index)]


def parse_feature_list(text: str) -> list[int]:
    """'1,2,10-12' -> [1, 2, 10, 11, 12]."""
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"features: {part!r} is not an index or a range like 10-20") from None
    return out


def endpoint_problem(endpoint: str) -> str | None:
    """Why `endpoint` is not a usable base URL (None when it is)."""
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{endpoint!r} is not an http(s) URL; expected e.g. http://localhost:8000/v1"
    return None


def start_labeling(
    studio: Studio,
    featureset_ref: str | int,
    endpoint: str,
    model: str,
    features: str | Sequence[int] = "alive",
    limit: int | None = None,
    search: str = "",
    api_key_env: str = "OPENAI_API_KEY",
    **settings: Any,
) -> JobSpec[LabelParams]:
    """Create a LabelingJob and describe the job; settings are validated here (the key never leaves the env)."""
    from mistudio_tui.labeling.types import LabelingSettings

    fset = resolve(FeatureSet, featureset_ref)
    if fset.status != "ready":
        raise ValueError(f"feature set '{fset.name}' is {fset.status}; labeling needs a ready one")
    problem = endpoint_problem(endpoint)
    if problem:
        raise FieldError("endpoint", f"endpoint {problem}")
    config = LabelingSettings(
        base_url=endpoint, model=model, api_key_env=api_key_env, **{k: v for k, v in settings.items() if v is not None}
    )
    indices = select_features(fset, features, fq.FeatureFilter(search=search) if search else None, limit)
    if not indices:
        raise ValueError(f"no features of '{fset.name}' match that selection")
    with database.atomic():
        run = LabelingJob.create(
            feature_set=fset,
            endpoint=endpoint,
            model=model,
            settings=config.to_dict(),
            features_total=len(indices),
            status="pending",
        )
    params = LabelParams(settings=config, indices=tuple(indices), feature_dir=Path(fset.path))
    return JobSpec("label", params, f"Label {len(indices)} features of {fset.name}", run)


def resume_labeling(ref: int) -> JobSpec[LabelParams]:
    """Run a stopped labeling job again; the features it already labeled are skipped."""
    run = LabelingJob.get_or_none(LabelingJob.id == int(ref))
    if run is None:
        raise ValueError(f"no labeling run with id {ref}")
    if run.job is None:
        raise ValueError(f"labeling run {ref} never started")
    done = FeatureLabel.select(FeatureLabel.feature_index).where(FeatureLabel.labeling_job == run.id)
    params = replace(
        LabelParams.from_json(run.job.params),
        feature_dir=Path(run.feature_set.path),  # the home may have moved since the job started
        skip=tuple(sorted({row.feature_index for row in done})),
    )
    return JobSpec("label", params, f"Resume labeling run {run.id}", run)
