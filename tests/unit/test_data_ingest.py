"""Ingestion: local files and row iterables, cleaning, limits, progress, cancel and exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mistudio_tui.jobs import protocol as p
from mistudio_tui.jobs.context import JobCancelled, LocalContext
from mistudio_tui.ml.data import ingest
from mistudio_tui.ml.data.cleaning import CleaningOptions
from mistudio_tui.ml.data.ingest import (
    DOCUMENTS_FILE,
    META_FILE,
    STATE_FILE,
    ingest_dataset,
    iter_documents,
    read_dataset_meta,
)
from mistudio_tui.ml.data.readers import RowSource


def corpus(n: int) -> list[str]:
    """`n` documents with some duplicates, blanks and short ones mixed in."""
    docs = []
    for i in range(n):
        if i % 17 == 0:
            docs.append("   ")
        elif i % 11 == 0:
            docs.append("repeated document")
        elif i % 13 == 0:
            docs.append("hi")
        else:
            docs.append(f"Document number {i} says caf\u0065\u0301 <b>{i * 7}</b>")
    return docs


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(texts)), "utf-8")
    return path


def lines(out_dir: Path) -> list[str]:
    return (out_dir / DOCUMENTS_FILE).read_text(encoding="utf-8").splitlines()


CLEANING = CleaningOptions(strip_html=True, normalize_whitespace=True, min_chars=5, dedupe=True)


def test_ingest_jsonl_writes_documents_and_meta(tmp_path: Path) -> None:
    docs = corpus(200)
    source = write_jsonl(tmp_path / "data.jsonl", docs)
    out = tmp_path / "ds"
    meta = ingest_dataset(source, out, cleaning=CLEANING, ctx=LocalContext())

    expected = []
    for d in docs:
        cleaned = " ".join(d.replace("<b>", "").replace("</b>", "").split())
        cleaned = cleaned.replace("cafe\u0301", "caf\u00e9")
        if len(cleaned) >= 5 and cleaned not in expected:
            expected.append(cleaned)
    assert list(iter_documents(out)) == expected
    assert all(set(json.loads(line)) == {"text"} for line in lines(out))
    blanks = sum(1 for d in docs if not d.strip())
    shorts = sum(1 for d in docs if d == "hi")
    repeats = sum(1 for d in docs if d == "repeated document")
    assert meta["documents"] == len(expected)
    assert meta["dropped"] == {"empty": blanks, "too_short": shorts, "duplicate": repeats - 1}
    assert meta["rows_read"] == len(docs)
    assert meta["characters"] == sum(len(t) for t in expected)
    assert meta["bytes"] == (out / DOCUMENTS_FILE).stat().st_size
    assert meta["source"] == str(source.resolve()) and meta["source_type"] == "file"
    assert meta["text_field"] == "text"
    assert CleaningOptions.from_dict(meta["cleaning"]) == CLEANING
    assert meta["created"] and meta["finished"]
    assert json.loads((out / META_FILE).read_text()) == meta
    assert read_dataset_meta(out) == meta
    assert not (out / STATE_FILE).exists()
    again = ingest_dataset(source, tmp_path / "again", cleaning=meta["cleaning"])
    assert lines(tmp_path / "again") == lines(out) and again["dropped"] == meta["dropped"]


def test_progress_is_reported_in_bytes_for_local_files(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "data.jsonl", corpus(300))
    ctx = LocalContext()
    ingest_dataset(source, tmp_path / "ds", ctx=ctx)
    progress = [m for m in ctx.messages if isinstance(m, p.Progress)]
    assert len(progress) >= 3
    assert all(m.unit == "bytes" and m.total == source.stat().st_size for m in progress)
    assert [m.done for m in progress] == sorted(m.done for m in progress)
    assert progress[-1].done == progress[-1].total
    assert ctx.artifacts and ctx.artifacts[-1].kind == "documents"


def test_ingest_row_iterable_with_total(tmp_path: Path) -> None:
    rows = [{"id": i, "content": f"row {i}"} for i in range(150)]
    ctx = LocalContext()
    meta = ingest_dataset(RowSource(iter(rows), total=150, name="org/set"), tmp_path / "ds", ctx=ctx)
    assert list(iter_documents(tmp_path / "ds")) == [r["content"] for r in rows]
    assert (meta["source"], meta["source_type"], meta["text_field"]) == ("org/set", "rows", "content")
    progress = [m for m in ctx.messages if isinstance(m, p.Progress)]
    assert progress[-1].unit == "rows" and progress[-1].total == 150 and progress[-1].done == 150


def test_ingest_plain_generator_and_folder(tmp_path: Path) -> None:
    meta = ingest_dataset(({"text": t} for t in ["a", "b"]), tmp_path / "g")
    assert meta["documents"] == 2
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.txt").write_text("one\ntwo\n", encoding="utf-8")
    pq.write_table(pa.table({"text": ["three", "four"]}), folder / "b.parquet")
    meta = ingest_dataset(folder, tmp_path / "f")
    assert list(iter_documents(tmp_path / "f")) == ["one", "two", "three", "four"]
    assert meta["source_type"] == "folder"


def test_limit_stops_reading(tmp_path: Path) -> None:
    read = []

    def rows():
        for i in range(1000):
            read.append(i)
            yield {"text": "" if i % 2 else f"doc {i}"}

    meta = ingest_dataset(rows(), tmp_path / "ds", limit=10)
    assert list(iter_documents(tmp_path / "ds")) == [f"doc {i}" for i in range(0, 20, 2)]
    assert meta["stopped_at_limit"] is True
    assert meta["rows_read"] == 19
    assert len(read) == 19
    with pytest.raises(ValueError, match="limit must be a positive number of documents, got 0"):
        ingest_dataset(rows(), tmp_path / "x", limit=0)


def test_bad_rows_fail_or_are_skipped_and_recorded(tmp_path: Path) -> None:
    source = tmp_path / "data.jsonl"
    source.write_text('{"text": "a"}\n{"text": "b"}\n{nope\n{"text": 4}\n{"text": "c"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"^data\.jsonl line 3: invalid JSON"):
        ingest_dataset(source, tmp_path / "ds")
    ctx = LocalContext()
    meta = ingest_dataset(source, tmp_path / "ds", skip_bad_rows=True, ctx=ctx)
    assert list(iter_documents(tmp_path / "ds")) == ["a", "b", "c"]
    assert meta["bad_rows"] == 2 and meta["rows_read"] == 5
    assert meta["bad_row_examples"][0].startswith("data.jsonl line 3: invalid JSON")
    assert meta["bad_row_examples"][1].startswith("data.jsonl line 4: field 'text' is a number")
    assert sum("skipped bad row" in line for line in ctx.logs) == 2


def run_interrupted(source, out: Path, cancel_after: int, **kwargs) -> None:
    with pytest.raises(JobCancelled):
        ingest_dataset(source, out, ctx=LocalContext(cancel_after=cancel_after), **kwargs)
    assert (out / STATE_FILE).exists()
    assert not (out / META_FILE).exists()


def comparable(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k not in ("created", "finished")}


@pytest.mark.parametrize("cancel_after", [1, 3, 7])
def test_resume_after_cancel_equals_uninterrupted_run(tmp_path: Path, cancel_after: int) -> None:
    docs = corpus(1000)
    source = write_jsonl(tmp_path / "data.jsonl", docs)
    reference = ingest_dataset(source, tmp_path / "ref", cleaning=CLEANING)
    out = tmp_path / "ds"
    run_interrupted(source, out, cancel_after, cleaning=CLEANING)
    partial = len(lines(out))
    assert 0 < partial < reference["documents"]
    meta = ingest_dataset(source, out, cleaning=CLEANING, resume=True)
    assert (out / DOCUMENTS_FILE).read_bytes() == (tmp_path / "ref" / DOCUMENTS_FILE).read_bytes()
    assert comparable(meta) == comparable(reference)


def test_resume_truncates_torn_and_unrecorded_lines(tmp_path: Path) -> None:
    docs = corpus(800)
    source = write_jsonl(tmp_path / "data.jsonl", docs)
    reference = ingest_dataset(source, tmp_path / "ref", cleaning=CLEANING)
    out = tmp_path / "ds"
    run_interrupted(source, out, 4, cleaning=CLEANING)
    with (out / DOCUMENTS_FILE).open("ab") as f:  # a crash after writing past the checkpoint, mid-line
        f.write(b'{"text": "written after the checkpoint"}\n{"text": "torn li')
    meta = ingest_dataset(source, out, cleaning=CLEANING, resume=True)
    assert (out / DOCUMENTS_FILE).read_bytes() == (tmp_path / "ref" / DOCUMENTS_FILE).read_bytes()
    assert comparable(meta) == comparable(reference)


def test_resume_row_iterable_with_bad_rows_and_limit(tmp_path: Path) -> None:
    def rows():
        for i in range(900):
            yield {"text": i} if i % 50 == 7 else {"text": f"row {i % 400}"}

    kwargs = {"cleaning": CleaningOptions(dedupe=True), "skip_bad_rows": True, "limit": 380}
    reference = ingest_dataset(rows(), tmp_path / "ref", **kwargs)
    out = tmp_path / "ds"
    run_interrupted(rows(), out, 3, **kwargs)
    meta = ingest_dataset(rows(), out, resume=True, **kwargs)
    assert (out / DOCUMENTS_FILE).read_bytes() == (tmp_path / "ref" / DOCUMENTS_FILE).read_bytes()
    assert comparable(meta) == comparable(reference)
    assert meta["bad_rows"] > 0


def test_checkpoints_are_taken_while_running(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ingest, "CHECKPOINT_SECONDS", 0.0)
    source = write_jsonl(tmp_path / "data.jsonl", corpus(400))
    reference = ingest_dataset(source, tmp_path / "ref")
    states = []
    original = ingest._checkpoint

    def crash_at_fourth(out_dir, out, state):
        states.append(state)
        if len(states) < 4:
            original(out_dir, out, state)
        elif len(states) == 4:
            raise KeyboardInterrupt  # a hard stop: no checkpoint from here on

    monkeypatch.setattr(ingest, "_checkpoint", crash_at_fourth)
    with pytest.raises(KeyboardInterrupt):
        ingest_dataset(source, tmp_path / "ds")
    monkeypatch.setattr(ingest, "_checkpoint", original)
    recorded = json.loads((tmp_path / "ds" / STATE_FILE).read_text())
    assert recorded["position"] == states[2]["position"]
    assert states[0]["position"]["rows"] < states[1]["position"]["rows"] < states[2]["position"]["rows"]
    assert (tmp_path / "ds" / DOCUMENTS_FILE).stat().st_size > recorded["position"]["bytes"]
    meta = ingest_dataset(source, tmp_path / "ds", resume=True)
    assert lines(tmp_path / "ds") == lines(tmp_path / "ref")
    assert comparable(meta) == comparable(reference)


def test_resume_refuses_a_changed_source_or_settings(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "data.jsonl", corpus(600))
    out = tmp_path / "ds"
    run_interrupted(source, out, 2)
    with pytest.raises(ValueError, match="cleaning differs from the interrupted run"):
        ingest_dataset(source, out, cleaning=CleaningOptions(dedupe=True), resume=True)
    with source.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"text": "appended"}) + "\n")
    with pytest.raises(ValueError, match="the source changed since the interrupted run"):
        ingest_dataset(source, out, resume=True)


def test_resume_of_a_finished_dataset_returns_its_meta(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "data.jsonl", corpus(50))
    out = tmp_path / "ds"
    meta = ingest_dataset(source, out)
    before = (out / DOCUMENTS_FILE).stat().st_mtime_ns
    ctx = LocalContext()
    assert ingest_dataset(source, out, resume=True, ctx=ctx) == meta
    assert (out / DOCUMENTS_FILE).stat().st_mtime_ns == before
    assert any("already complete" in line for line in ctx.logs)


def test_resume_without_a_checkpoint_starts_over(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "data.jsonl", corpus(50))
    out = tmp_path / "ds"
    out.mkdir()
    (out / DOCUMENTS_FILE).write_text('{"text": "stale"}\n{"text": "to', encoding="utf-8")
    meta = ingest_dataset(source, out, resume=True)
    assert len(lines(out)) == meta["documents"]
    assert "stale" not in (out / DOCUMENTS_FILE).read_text(encoding="utf-8")


def test_reading_back_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"has no documents\.jsonl"):
        list(iter_documents(tmp_path))
    (tmp_path / DOCUMENTS_FILE).write_text('{"text": "a"}\n{"text": "b"}\n[1]\n', encoding="utf-8")
    assert next(iter_documents(tmp_path, skip=1)) == "b"
    with pytest.raises(ValueError, match=r"documents\.jsonl line 3: expected a JSON object with a string 'text'"):
        list(iter_documents(tmp_path, skip=1))
    with pytest.raises(FileNotFoundError, match=r"is incomplete \(meta.json is missing\)"):
        read_dataset_meta(tmp_path)
