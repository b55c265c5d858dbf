"""The `ingest` and `tokenize` kinds: read, clean and store a dataset's documents; tokenize a dataset."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mistudio_tui.jobs.finishers import apply_resource_fields
from mistudio_tui.jobs.params import JobParams
from mistudio_tui.jobs.registry import JobKind, register
from mistudio_tui.ml.data.cleaning import CleaningOptions

ENTRY = "mistudio_tui.jobs.tasks.datasets"
TXT_MODES = ("lines", "file")
MAX_CONTEXT = 1_000_000


@dataclass(frozen=True, kw_only=True)
class IngestParams(JobParams):
    """A local file or folder, or a hub dataset (`source_type` 'hub'), ingested into `out_dir`."""

    kind = "ingest"
    source: str  # an absolute path, or a hub dataset id
    source_type: str  # 'local' or 'hub'
    out_dir: Path
    text_field: str | None = None
    txt_mode: str = "lines"  # a .txt file: one document per line, or the whole file
    hub_config: str | None = None
    hub_split: str | None = "train"
    limit: int | None = None  # rows read at most
    cleaning: CleaningOptions = field(default_factory=CleaningOptions)
    skip_bad_rows: bool = False
    streaming: bool = True
    resume: bool = False

    def __post_init__(self) -> None:
        if self.txt_mode not in TXT_MODES:
            raise ValueError(f"txt mode must be 'lines' or 'file', not {self.txt_mode!r}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError("limit must be a positive number of rows")


@dataclass(frozen=True, kw_only=True)
class TokenizeParams(JobParams):
    """Tokenize the dataset in `dataset_dir` with `tokenizer` (a folder or hub name) into rows of `context_size`."""

    kind = "tokenize"
    dataset_dir: Path
    tokenizer: str
    out_dir: Path
    context_size: int
    prepend_bos: bool = True
    packing: bool = True
    separator: str = "eos"
    max_tokens: int | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        if not 2 <= self.context_size <= MAX_CONTEXT:
            raise ValueError(f"context size {self.context_size} is out of range (2 to {MAX_CONTEXT:,})")
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise ValueError("max tokens must be positive")


register(
    JobKind("ingest", f"{ENTRY}:ingest", title="Ingest dataset", finish=apply_resource_fields, params=IngestParams)
)
register(
    JobKind("tokenize", f"{ENTRY}:tokenize", title="Tokenize", finish=apply_resource_fields, params=TokenizeParams)
)
