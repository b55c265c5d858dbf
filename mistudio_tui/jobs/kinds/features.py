"""The `features.extract` kind: a model and an SAE over a tokenization give per-feature statistics and examples."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mistudio_tui.db import features as feature_queries
from mistudio_tui.db.models import Feature, FeatureSet, Job
from mistudio_tui.jobs.finishers import apply_resource_fields
from mistudio_tui.jobs.params import JobParams
from mistudio_tui.jobs.registry import JobKind, register


@dataclass(frozen=True, kw_only=True)
class FeaturesParams(JobParams):
    """Scan `n_tokens` of the tokenization with the model in `model_path` and the SAE in `sae_dir` (reading `hook`)."""

    kind = "features.extract"
    sae_dir: Path
    hook: str | None  # None: the SAE does not say (the job fails naming it)
    model_path: str
    tokenization_dir: Path
    out_dir: Path
    model_dtype: str = "float32"
    is_causal_lm: bool = True  # only then is there an unembedding for the logit lens
    # The extraction options (a feature set's `config`):
    n_tokens: int = 100_000
    top_k: int = 20
    n_quantiles: int = 5
    per_quantile: int = 4
    context_before: int = 12
    context_after: int = 4
    exclude_bos: bool = True
    exclude_special: bool = True
    dead_density: float = 1e-6
    batch_size: int = 8
    device: str = "auto"

    def __post_init__(self) -> None:
        if int(self.n_tokens) <= 0:
            raise ValueError("the number of tokens must be positive")
        for key in ("top_k", "n_quantiles", "per_quantile", "batch_size"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"extraction option {key} must be at least 1, got {getattr(self, key)}")
        for key in ("context_before", "context_after"):
            if int(getattr(self, key)) < 0:
                raise ValueError(f"extraction option {key} must be zero or more tokens, got {getattr(self, key)}")
        if not 0.0 <= float(self.dead_density) < 1.0:
            raise ValueError(f"extraction option dead_density must be in [0, 1), got {self.dead_density}")


# The options a user chooses (stored as the feature set's `config`), with their defaults; the rest come from rows.
OPTIONS = (
    "n_tokens",
    "top_k",
    "n_quantiles",
    "per_quantile",
    "context_before",
    "context_after",
    "exclude_bos",
    "exclude_special",
    "dead_density",
    "batch_size",
    "device",
)
EXTRACTION_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(FeaturesParams) if f.name in OPTIONS
}


def finish_features(job: Job, status: str, result: dict[str, Any]) -> None:
    """Insert one row per feature (carrying over the SAE's labels) from the table the worker wrote."""
    apply_resource_fields(job, status, result)
    if status != "completed":
        return
    fset = FeatureSet.get_by_id(job.resource_id)
    from mistudio_tui.ml.features.table import read_feature_table

    rows = read_feature_table(fset.path)
    Feature.delete().where(Feature.feature_set == fset.id).execute()
    feature_queries.bulk_insert_features(fset, rows)


register(
    JobKind(
        "features.extract",
        "mistudio_tui.jobs.tasks.features:extract",
        title="Extract features",
        finish=finish_features,
        params=FeaturesParams,
    )
)
