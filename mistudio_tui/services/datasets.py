"""Datasets and tokenizations: register a source, ingest it as a job, tokenize it (several times)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mistudio_tui.db.lookup import new_name, resolve
from mistudio_tui.db.models import Dataset, LanguageModel, Tokenization, database
from mistudio_tui.db.states import RunState
from mistudio_tui.services.spec import JobSpec, create_pending, slug
from mistudio_tui.studio import Studio

LOCAL_SUFFIXES = (".txt", ".jsonl", ".json", ".csv", ".parquet")
CLEANING_DEFAULTS: dict[str, Any] = {
    "unicode_form": "NFC",
    "normalize_whitespace": False,
    "strip_html": False,
    "strip_control": True,
    "drop_empty": True,
    "min_chars": 0,
    "dedupe": False,
}


def add_dataset(
    studio: Studio,
    source: str,
    name: str | None = None,
    hub: bool | None = None,
    text_field: str | None = None,
    txt_mode: str = "lines",
    hub_config: str | None = None,
    hub_split: str = "train",
    limit: int | None = None,
    cleaning: dict[str, Any] | None = None,
    skip_bad_rows: bool = False,
    streaming: bool = True,
) -> JobSpec:
    """Validate the source, create the Dataset row and describe the ingest job."""
    source = source.strip()
    if not source:
        raise ValueError("dataset source: give a file, a folder or a hub dataset id")
    path = Path(source).expanduser()
    is_hub = hub if hub is not None else not path.exists()
    if is_hub:
        if path.suffix.lower() in LOCAL_SUFFIXES or source.startswith(("/", ".", "~")):
            raise FileNotFoundError(f"dataset file not found: {path}")
        if source.count("/") > 1 or " " in source:
            raise ValueError(f"{source!r} is neither an existing path nor a hub dataset id like 'owner/name'")
    else:
        if not path.exists():
            raise FileNotFoundError(f"dataset file not found: {path}")
        if path.is_file() and path.suffix.lower() not in LOCAL_SUFFIXES:
            raise ValueError(
                f"{path.name}: unsupported file type {path.suffix or '(none)'} (use txt, jsonl, csv, parquet)"
            )
        source = str(path.resolve())
    if txt_mode not in ("lines", "file"):
        raise ValueError(f"txt mode must be 'lines' or 'file', not {txt_mode!r}")
    if limit is not None and limit <= 0:
        raise ValueError("limit must be a positive number of rows")
    unknown = sorted(set(cleaning or {}) - set(CLEANING_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown cleaning option {unknown[0]!r}; known: {', '.join(CLEANING_DEFAULTS)}")
    options = dict(CLEANING_DEFAULTS)
    options.update(cleaning or {})
    base = name or (source.rstrip("/").split("/")[-1] if is_hub else path.stem)
    with database.atomic():
        dataset = create_pending(
            studio,
            Dataset,
            "datasets",
            name=new_name(Dataset, name, slug(base, "dataset")),
            source_type="hub" if is_hub else "local",
            source=source,
            hub_config=hub_config,
            hub_split=hub_split if is_hub else None,
            text_field=text_field,
            cleaning=options,
        )
    params = {
        "source": source,
        "source_type": dataset.source_type,
        "out_dir": dataset.path,
        "text_field": text_field,
        "txt_mode": txt_mode,
        "hub_config": hub_config,
        "hub_split": hub_split,
        "limit": limit,
        "cleaning": options,
        "skip_bad_rows": skip_bad_rows,
        "streaming": streaming,
        "resume": False,
    }
    return JobSpec("ingest", params, f"Ingest {dataset.name}", dataset)


def _resume_params(row: Dataset | Tokenization, what: str, job: str) -> dict[str, Any]:
    """The params of the job that made `row`, set to resume; clear errors when there is nothing to resume."""
    if row.status == "ready":
        raise ValueError(f"{what} '{row.name}' is already complete")
    if row.status in RunState.ACTIVE:
        raise ValueError(f"{what} '{row.name}' is {row.status}; its job is still going")
    params = dict(row.job.params) if row.job else None
    if not params:
        raise ValueError(f"{what} '{row.name}' has no {job} job to resume")
    params["resume"] = True
    return params


def resume_ingest(studio: Studio, ref: str | int) -> JobSpec:
    """Continue an interrupted or cancelled ingest where it stopped."""
    dataset = resolve(Dataset, ref)
    params = _resume_params(dataset, "dataset", "ingest")
    params["out_dir"] = dataset.path  # the home may have moved since the job started
    return JobSpec("ingest", params, f"Resume ingest {dataset.name}", dataset)


def resume_tokenization(studio: Studio, ref: str | int) -> JobSpec:
    """Continue an interrupted or cancelled tokenization from its last checkpoint."""
    tok = resolve(Tokenization, ref)
    params = _resume_params(tok, "tokenization", "tokenize")
    params.update(dataset_dir=tok.dataset.path, out_dir=tok.path)  # the home may have moved since the job started
    if tok.model is not None:
        params["tokenizer"] = tok.model.path
    return JobSpec("tokenize", params, f"Resume tokenizing {tok.name}", tok)


def tokenize_dataset(
    studio: Studio,
    dataset_ref: str | int,
    model_ref: str | int | None = None,
    tokenizer: str | None = None,
    context_size: int = 128,
    prepend_bos: bool = True,
    packing: bool = True,
    separator: str = "eos",
    max_tokens: int | None = None,
    name: str | None = None,
) -> JobSpec:
    """Create a Tokenization row of a ready dataset with a registered model's tokenizer (or any tokenizer)."""
    dataset = resolve(Dataset, dataset_ref)
    if dataset.status != "ready":
        raise ValueError(f"dataset '{dataset.name}' is {dataset.status}; it must be ready before tokenizing")
    model = None
    if model_ref is not None:
        model = resolve(LanguageModel, model_ref)
        if model.status != "ready":
            raise ValueError(f"model '{model.name}' is {model.status}; it must be ready before tokenizing")
        tokenizer_ref = model.path
    elif tokenizer:
        tokenizer_ref = tokenizer
    else:
        raise ValueError("tokenize: give --model (a registered model) or --tokenizer (a folder or hub name)")
    if not 2 <= context_size <= 1_000_000:
        raise ValueError(f"context size {context_size} is out of range (2 to 1,000,000)")
    if max_tokens is not None and max_tokens <= 0:
        raise ValueError("max tokens must be positive")
    label = model.name if model else Path(tokenizer_ref).name
    default_name = f"{dataset.name}-{label}-ctx{context_size}"
    with database.atomic():
        tok = create_pending(
            studio,
            Tokenization,
            "tokenizations",
            dataset=dataset,
            model=model,
            name=new_name(Tokenization, name, slug(default_name)),
            tokenizer=tokenizer_ref,
            context_size=context_size,
            prepend_bos=prepend_bos,
            packing=packing,
            separator=separator,
            max_tokens=max_tokens,
        )
    params = {
        "dataset_dir": dataset.path,
        "tokenizer": tokenizer_ref,
        "out_dir": tok.path,
        "context_size": context_size,
        "prepend_bos": prepend_bos,
        "packing": packing,
        "separator": separator,
        "max_tokens": max_tokens,
    }
    return JobSpec("tokenize", params, f"Tokenize {dataset.name}", tok)
