"""Datasets and tokenizations: register a source, ingest it as a job, tokenize it (several times)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from mistudio_tui.db.lookup import new_name, resolve
from mistudio_tui.db.models import Dataset, LanguageModel, Tokenization, database
from mistudio_tui.db.ownership import create_pending, slug
from mistudio_tui.db.states import RunState
from mistudio_tui.jobs.kinds.datasets import IngestParams, TokenizeParams
from mistudio_tui.ml.data.cleaning import CleaningOptions
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.studio import Studio

LOCAL_SUFFIXES = (".txt", ".jsonl", ".json", ".csv", ".parquet")
CLEANING_DEFAULTS: dict[str, Any] = CleaningOptions().to_dict()


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
) -> JobSpec[IngestParams]:
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
    params = IngestParams(  # checked before the row and its folder exist; the folder is filled in below
        source=source,
        source_type="hub" if is_hub else "local",
        out_dir=Path(),
        text_field=text_field,
        txt_mode=txt_mode,
        hub_config=hub_config,
        hub_split=hub_split,
        limit=limit,
        cleaning=CleaningOptions.from_dict(cleaning or {}),
        skip_bad_rows=skip_bad_rows,
        streaming=streaming,
    )
    base = name or (source.rstrip("/").split("/")[-1] if is_hub else path.stem)
    with database.atomic():
        dataset = create_pending(
            studio.paths,
            Dataset,
            "datasets",
            name=new_name(Dataset, name, slug(base, "dataset")),
            source_type=params.source_type,
            source=source,
            hub_config=hub_config,
            hub_split=hub_split if is_hub else None,
            text_field=text_field,
            cleaning=params.cleaning.to_dict(),
        )
    return JobSpec("ingest", replace(params, out_dir=Path(dataset.path)), f"Ingest {dataset.name}", dataset)


ResumedT = TypeVar("ResumedT", IngestParams, TokenizeParams)


def _resume_params(row: Dataset | Tokenization, what: str, params_type: type[ResumedT]) -> ResumedT:
    """The params of the job that made `row`, set to resume; clear errors when there is nothing to resume."""
    if row.status == "ready":
        raise ValueError(f"{what} '{row.name}' is already complete")
    if row.status in RunState.ACTIVE:
        raise ValueError(f"{what} '{row.name}' is {row.status}; its job is still going")
    if row.job is None or not row.job.params:
        raise ValueError(f"{what} '{row.name}' has no {params_type.kind} job to resume")
    return replace(params_type.from_json(row.job.params), resume=True)


def resume_ingest(studio: Studio, ref: str | int) -> JobSpec[IngestParams]:
    """Continue an interrupted or cancelled ingest where it stopped."""
    dataset = resolve(Dataset, ref)
    params = _resume_params(dataset, "dataset", IngestParams)
    params = replace(params, out_dir=Path(dataset.path))  # the home may have moved since the job started
    return JobSpec("ingest", params, f"Resume ingest {dataset.name}", dataset)


def resume_tokenization(studio: Studio, ref: str | int) -> JobSpec[TokenizeParams]:
    """Continue an interrupted or cancelled tokenization from its last checkpoint."""
    tok = resolve(Tokenization, ref)
    params = _resume_params(tok, "tokenization", TokenizeParams)
    # the home may have moved since the job started
    params = replace(params, dataset_dir=Path(tok.dataset.path), out_dir=Path(tok.path))
    if tok.model is not None:
        params = replace(params, tokenizer=tok.model.path)
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
) -> JobSpec[TokenizeParams]:
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
    params = TokenizeParams(  # checked before the row and its folder exist; the folder is filled in below
        dataset_dir=Path(dataset.path),
        tokenizer=tokenizer_ref,
        out_dir=Path(),
        context_size=context_size,
        prepend_bos=prepend_bos,
        packing=packing,
        separator=separator,
        max_tokens=max_tokens,
    )
    label = model.name if model else Path(tokenizer_ref).name
    default_name = f"{dataset.name}-{label}-ctx{context_size}"
    with database.atomic():
        tok = create_pending(
            studio.paths,
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
    return JobSpec("tokenize", replace(params, out_dir=Path(tok.path)), f"Tokenize {dataset.name}", tok)
