"""Ingest a corpus into a dataset folder: documents.jsonl (one {"text": ...} per line) and meta.json.

Resumable: every couple of seconds (and when cancelled or failing) the ingestion records in ingest_state.json
how many source rows it consumed and how many bytes of documents.jsonl they produced, after syncing that file.
A rerun with `resume=True` truncates documents.jsonl to that length (dropping any torn or unrecorded tail),
skips the consumed rows of the source and goes on, so the result equals an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from mistudio_tui.ml.data.cleaning import Cleaner, CleaningCounts, CleaningOptions
from mistudio_tui.ml.data.readers import DocumentReader, RowSource, open_source
from mistudio_tui.reporting import JobContext, LocalContext

DOCUMENTS_FILE = "documents.jsonl"
META_FILE = "meta.json"
STATE_FILE = "ingest_state.json"
CHECKPOINT_SECONDS = 2.0
REPORT_EVERY_ROWS = 64
STATE_VERSION = 1

_encode_json = json.JSONEncoder(ensure_ascii=False).encode

Source = str | os.PathLike[str] | RowSource | Iterable[dict[str, Any]]


@dataclass
class _Position:
    """How far an ingestion got: source rows consumed and what they produced in documents.jsonl."""

    rows: int = 0
    bad_rows: int = 0
    documents: int = 0
    characters: int = 0
    bytes: int = 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    tmp.replace(path)


def read_dataset_meta(dataset_dir: str | Path) -> dict[str, Any]:
    """The meta.json of a finished ingestion; a clear error when the dataset is missing or incomplete."""
    dataset_dir = Path(dataset_dir)
    if not (dataset_dir / DOCUMENTS_FILE).exists():
        raise FileNotFoundError(f"dataset at {dataset_dir} has no {DOCUMENTS_FILE}")
    meta_path = dataset_dir / META_FILE
    if not meta_path.exists():
        raise FileNotFoundError(
            f"dataset at {dataset_dir} is incomplete ({META_FILE} is missing): resume or rerun its ingestion"
        )
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        return meta
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_path}: invalid JSON: {err.msg} at line {err.lineno}") from None


def iter_documents(dataset_dir: str | Path, skip: int = 0) -> Iterator[str]:
    """Stream the texts of a dataset folder's documents.jsonl, after skipping the first `skip` documents."""
    path = Path(dataset_dir) / DOCUMENTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"dataset at {dataset_dir} has no {DOCUMENTS_FILE}")
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno <= skip:
                continue
            try:
                text = json.loads(raw)["text"]
            except (ValueError, KeyError, TypeError):
                text = None
            if not isinstance(text, str):
                raise ValueError(f"{path.name} line {lineno}: expected a JSON object with a string 'text'")
            yield text


def _completed_meta(out_dir: Path) -> dict[str, Any] | None:
    """The meta of a finished ingestion in `out_dir` whose documents file is intact, else None."""
    meta_path, docs_path = out_dir / META_FILE, out_dir / DOCUMENTS_FILE
    if not meta_path.exists() or not docs_path.exists() or (out_dir / STATE_FILE).exists():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return meta if meta.get("bytes") == docs_path.stat().st_size else None


def _load_state(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise ValueError(f"{path}: unreadable checkpoint; start the ingestion again without resume") from None
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: checkpoint version {state.get('version')!r} is not {STATE_VERSION}")
    return state


def _check_resumable(out_dir: Path, state: dict[str, Any], source: dict[str, Any], settings: dict[str, Any]) -> None:
    """Refuse to resume when the source or the settings differ from the interrupted run."""
    if state["source"] != source:
        raise ValueError(
            f"cannot resume the ingestion in {out_dir}: the source changed since the interrupted run "
            f"({state['source'].get('source')}); start again without resume"
        )
    for key, value in settings.items():
        if state["settings"].get(key) != value:
            raise ValueError(
                f"cannot resume the ingestion in {out_dir}: {key} differs from the interrupted run "
                f"({state['settings'].get(key)!r} then, {value!r} now); start again without resume"
            )
    docs_size = (out_dir / DOCUMENTS_FILE).stat().st_size if (out_dir / DOCUMENTS_FILE).exists() else 0
    if docs_size < state["position"]["bytes"]:
        raise ValueError(
            f"cannot resume the ingestion in {out_dir}: {DOCUMENTS_FILE} is shorter than its checkpoint; "
            "start again without resume"
        )


def _report(ctx: JobContext, reader: DocumentReader, pos: _Position, limit: int | None) -> None:
    stats = reader.stats
    text = f"{pos.rows:,} rows read, {pos.documents:,} documents kept"
    options: list[tuple[float, float, str]] = []
    if stats.total_bytes:
        options.append((stats.bytes_done, stats.total_bytes, "bytes"))
    elif stats.total_rows:
        options.append((pos.rows, stats.total_rows, "rows"))
    if limit is not None:
        options.append((pos.documents, limit, "documents"))
    if not options:
        ctx.progress(pos.rows, None, text, "rows")
        return
    done, total, unit = max(options, key=lambda o: o[0] / o[1])
    ctx.progress(done, total, text, unit)


def ingest_dataset(
    source: Source,
    out_dir: str | Path,
    text_field: str | None = None,
    cleaning: CleaningOptions | Mapping[str, Any] = CleaningOptions(),
    limit: int | None = None,
    skip_bad_rows: bool = False,
    *,
    ctx: JobContext | None = None,
    resume: bool = False,
    whole_file: bool = False,
) -> dict[str, Any]:
    """Read, clean and write a corpus into `out_dir`; `limit` caps the documents kept; returns meta.json.

    `source` is a file or folder path, or an iterable of row dicts (wrap it in `RowSource` to give a row count
    for progress and a name). Resuming an iterable needs the same rows in the same order again. `cleaning`
    may also be the dict recorded in a meta.json. Without `resume`, files of an earlier run are replaced.
    """
    out_dir = Path(out_dir)
    ctx = ctx if ctx is not None else LocalContext()
    if not isinstance(cleaning, CleaningOptions):
        cleaning = CleaningOptions.from_dict(cleaning)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive number of documents, got {limit!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {"text_field": text_field, "cleaning": cleaning.to_dict(), "whole_file": whole_file}
    state = None
    if resume:
        done = _completed_meta(out_dir)
        if done is not None:
            ctx.log(f"ingestion in {out_dir} is already complete ({done['documents']:,} documents)")
            return done
        state = _load_state(out_dir)
        if state is None:
            ctx.log("nothing to resume: starting from the beginning")
    if state is None:
        for name in (DOCUMENTS_FILE, META_FILE, STATE_FILE):
            (out_dir / name).unlink(missing_ok=True)
    pos = _Position(**state["position"]) if state else _Position()
    reader = open_source(
        source,
        state["text_field"] if state else text_field,
        whole_file=whole_file,
        skip_bad_rows=skip_bad_rows,
        skip_rows=pos.rows,
    )
    described = reader.describe()
    if state:
        _check_resumable(out_dir, state, described, settings)
        reader.stats.bad_rows = pos.bad_rows
        reader.stats.bad_row_examples = list(state["bad_row_examples"])
        ctx.log(f"resuming after {pos.rows:,} rows ({pos.documents:,} documents)")
    created = state["created"] if state else _now()
    cleaner = Cleaner(cleaning, CleaningCounts.from_dict(state["counts"]) if state else None)
    docs_path = out_dir / DOCUMENTS_FILE
    docs_path.touch()
    os.truncate(docs_path, pos.bytes)
    if cleaning.dedupe:
        for text in iter_documents(out_dir):
            cleaner.remember(text)

    def state_now() -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "source": described,
            "settings": settings,
            "text_field": reader.text_field,
            "created": created,
            "position": asdict(pos),
            "bad_row_examples": reader.stats.bad_row_examples[: pos.bad_rows],
            "counts": cleaner.counts.to_dict(),
        }

    ctx.log(f"ingesting {described['source']} (text field {reader.text_field!r})")
    stopped = limit is not None and pos.documents >= limit
    with docs_path.open("ab") as out:
        try:
            if not stopped:
                stopped = _copy_documents(reader, cleaner, out, out_dir, pos, limit, ctx, state_now)
        except BaseException:
            with contextlib.suppress(OSError):
                _checkpoint(out_dir, out, state_now())
            raise
        out.flush()
        os.fsync(out.fileno())
    meta = {
        "source": described["source"],
        "source_type": described["source_type"],
        "text_field": reader.text_field,
        "whole_file": whole_file,
        "cleaning": cleaning.to_dict(),
        "limit": limit,
        "stopped_at_limit": stopped,
        "skip_bad_rows": skip_bad_rows,
        "rows_read": pos.rows,
        "bad_rows": pos.bad_rows,
        "bad_row_examples": reader.stats.bad_row_examples,
        "documents": pos.documents,
        "characters": pos.characters,
        "bytes": pos.bytes,
        "dropped": cleaner.counts.dropped(),
        "created": created,
        "finished": _now(),
    }
    _write_json(out_dir / META_FILE, meta)
    (out_dir / STATE_FILE).unlink(missing_ok=True)
    _report(ctx, reader, pos, limit)
    dropped = ", ".join(f"{n:,} {why}" for why, n in meta["dropped"].items() if n) or "none"
    ctx.log(
        f"ingested {pos.documents:,} documents from {pos.rows:,} rows "
        f"(dropped: {dropped}; bad rows skipped: {pos.bad_rows:,})"
    )
    if pos.documents == 0:
        ctx.log("the dataset is empty: no document survived reading and cleaning", level="warning")
    ctx.artifact("documents", docs_path, documents=pos.documents)
    return meta


def _checkpoint(out_dir: Path, out: IO[bytes], state: dict[str, Any]) -> None:
    """Sync documents.jsonl, then record the position it reflects."""
    out.flush()
    os.fsync(out.fileno())
    _write_json(out_dir / STATE_FILE, state)


def _copy_documents(
    reader: DocumentReader,
    cleaner: Cleaner,
    out: IO[bytes],
    out_dir: Path,
    pos: _Position,
    limit: int | None,
    ctx: JobContext,
    state_now: Callable[[], dict[str, Any]],
) -> bool:
    """Clean and write documents until the source ends (False) or `limit` documents are kept (True)."""
    stats = reader.stats
    last_checkpoint = time.monotonic()
    logged_bad = len(stats.bad_row_examples)

    def log_bad_rows() -> None:
        nonlocal logged_bad
        for message in stats.bad_row_examples[logged_bad:]:
            ctx.log(f"skipped bad row: {message}", level="warning")
        logged_bad = len(stats.bad_row_examples)

    for n, text in enumerate(reader, 1):
        kept = cleaner.process(text)
        if kept is not None:
            line = (_encode_json({"text": kept}) + "\n").encode("utf-8")
            out.write(line)
            pos.documents += 1
            pos.characters += len(kept)
            pos.bytes += len(line)
        pos.rows, pos.bad_rows = stats.rows, stats.bad_rows
        if len(stats.bad_row_examples) > logged_bad:
            log_bad_rows()
        if n % REPORT_EVERY_ROWS == 0:
            _report(ctx, reader, pos, limit)
            ctx.check_cancelled()
            if time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
                _checkpoint(out_dir, out, state_now())
                last_checkpoint = time.monotonic()
        if limit is not None and pos.documents >= limit:
            return True
    pos.rows, pos.bad_rows = stats.rows, stats.bad_rows
    log_bad_rows()
    return False
