"""The `model.add` kind: download a hub model into its folder (or check a local one) and describe it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mistudio_tui.jobs.finishers import apply_resource_fields
from mistudio_tui.jobs.params import JobParams
from mistudio_tui.jobs.registry import JobKind, register

DTYPES = ("float32", "float16", "bfloat16")
QUANTIZATIONS = (None, "8bit", "4bit")


@dataclass(frozen=True, kw_only=True)
class ModelAddParams(JobParams):
    """A hub id (`source_type` 'hub', downloaded into `path`) or a local folder (`path` is the folder)."""

    kind = "model.add"
    source: str
    source_type: str  # 'hub' or 'local'
    path: Path
    revision: str | None = None
    dtype: str = "float32"
    quantization: str | None = None
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization {self.quantization!r} must be 8bit, 4bit or none")


register(
    JobKind(
        "model.add",
        "mistudio_tui.jobs.tasks.models:add",
        title="Add model",
        finish=apply_resource_fields,
        params=ModelAddParams,
    )
)
