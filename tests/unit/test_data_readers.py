"""Readers: txt/jsonl/csv/parquet/folder sources, text-field choice, bad rows, skipping, peeking."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mistudio_tui.ml.data import readers
from mistudio_tui.ml.data.readers import (
    BadRowError,
    FileReader,
    RowReader,
    RowSource,
    iter_rows,
    list_source_files,
    open_source,
    peek_fields,
)


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --- txt -------------------------------------------------------------------------------------------


def test_txt_lines_are_documents_with_newlines_removed(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes("\ufeffalpha\r\nbeta\n\ngamma".encode())
    reader = FileReader(path)
    assert list(reader) == ["alpha", "beta", "", "gamma"]
    assert reader.stats.rows == 4
    assert reader.stats.bytes_done == reader.stats.total_bytes == path.stat().st_size


def test_txt_whole_file_is_one_document(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("line one\nline two\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("another", encoding="utf-8")
    assert list(FileReader(tmp_path, whole_file=True)) == ["line one\nline two\n", "another"]


def test_txt_undecodable_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"fine\ncaf\xe9\n")
    with pytest.raises(BadRowError, match=r"^latin\.txt line 2: not valid UTF-8 \(byte 0xe9"):
        list(FileReader(path))


def test_txt_has_only_the_text_field(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"^notes\.txt: no field 'body'; available fields: text$"):
        FileReader(path, text_field="body")


# --- jsonl -----------------------------------------------------------------------------------------


def test_jsonl_default_text_field_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a", "id": 1}\n\n   \n{"text": "b", "id": 2}\n', encoding="utf-8")
    reader = FileReader(path)
    assert reader.text_field == "text"
    assert list(reader) == ["a", "b"]
    assert reader.stats.rows == 2


def test_jsonl_only_string_field_is_chosen(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": 1, "body": "x", "score": 0.5}, {"id": 2, "body": "y"}])
    reader = FileReader(path)
    assert reader.text_field == "body"
    assert list(reader) == ["x", "y"]


def test_explicit_field_is_used(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "t", "title": "T"}])
    assert list(FileReader(path, text_field="title")) == ["T"]


def test_wrong_field_lists_available_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "t", "title": "T"}])
    with pytest.raises(ValueError, match=r"d\.jsonl: no field 'body'; available fields: text, title"):
        FileReader(path, text_field="body")


def test_ambiguous_string_fields_ask_for_a_choice(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"title": "T", "content": "C"}])
    with pytest.raises(ValueError, match=r"several string fields \(title, content\)"):
        FileReader(path)


def test_malformed_jsonl_row_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "ok2"}\n{"text": oops}\n', encoding="utf-8")
    reader = FileReader(path)
    with pytest.raises(BadRowError, match=r"^data\.jsonl line 3: invalid JSON: "):
        list(reader)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"text": 5}, "field 'text' is a number, expected a string"),
        ({"text": None}, "field 'text' is null, expected a string"),
        ({"text": ["a"]}, "field 'text' is a list, expected a string"),
        ({"other": "x"}, "field 'text' is missing"),
        (["not", "an", "object"], "expected a JSON object, got a list"),
    ],
)
def test_bad_rows_are_described(tmp_path: Path, row: object, expected: str) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "good"}, row])
    with pytest.raises(BadRowError) as err:
        list(FileReader(path))
    assert str(err.value).startswith("d.jsonl line 2: ")
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_skip_bad_rows_counts_and_reports(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "a"}\n{bad\n{"text": 3}\n{"text": "b"}\n{"text": "caf\xe9"}\n')
    reader = FileReader(path, skip_bad_rows=True)
    assert list(reader) == ["a", "b"]
    assert reader.stats.rows == 5
    assert reader.stats.bad_rows == 3
    assert [m.split(":")[0] for m in reader.stats.bad_row_examples] == [
        "d.jsonl line 2",
        "d.jsonl line 3",
        "d.jsonl line 5",
    ]


def test_bad_row_examples_are_capped(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": i} for i in range(readers.MAX_BAD_ROW_EXAMPLES + 5)])
    reader = FileReader(path, text_field="text", skip_bad_rows=True)
    assert list(reader) == []
    assert reader.stats.bad_rows == readers.MAX_BAD_ROW_EXAMPLES + 5
    assert len(reader.stats.bad_row_examples) == readers.MAX_BAD_ROW_EXAMPLES


# --- csv -------------------------------------------------------------------------------------------


def test_csv_quoted_fields_and_only_text_column(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "d.csv",
        ["id", "body", "score"],
        [["1", 'He said "hi",\nthen left', "0.5"], ["2", "plain", "1"]],
    )
    reader = FileReader(path)
    assert reader.text_field == "body"
    assert list(reader) == ['He said "hi",\nthen left', "plain"]


def test_csv_field_count_mismatch_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\nfine,1\nbroken,1,extra\n", encoding="utf-8")
    with pytest.raises(BadRowError, match=r"^d\.csv line 3: has 3 fields, the header has 2"):
        list(FileReader(path))


def test_csv_undecodable_row_is_bad(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"text\nfine\ncaf\xe9\nlast\n")
    with pytest.raises(BadRowError, match=r"^d\.csv line 3: not valid UTF-8"):
        list(FileReader(path))
    reader = FileReader(path, skip_bad_rows=True)
    assert list(reader) == ["fine", "last"]


def test_csv_long_field_is_read(tmp_path: Path) -> None:
    long_text = "word " * 60_000
    path = write_csv(tmp_path / "d.csv", ["text"], [[long_text]])
    assert list(FileReader(path)) == [long_text]


# --- parquet ---------------------------------------------------------------------------------------


def test_parquet_streams_only_the_text_column_in_batches(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "d.parquet"
    n = 2500
    table = pa.table({"id": list(range(n)), "text": [f"doc {i}" for i in range(n)], "other": ["x"] * n})
    pq.write_table(table, path, row_group_size=600)
    calls: list[dict] = []
    original = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        for batch in original(self, *args, **kwargs):
            assert batch.num_rows <= readers.PARQUET_BATCH_ROWS
            assert batch.schema.names == ["text"]
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: pytest.fail("read the whole table"))
    reader = FileReader(path)
    texts = list(reader)
    assert texts == [f"doc {i}" for i in range(n)]
    assert reader.stats.total_rows == n
    assert calls[-1]["columns"] == ["text"]
    assert reader.stats.bytes_done == reader.stats.total_bytes


def test_parquet_null_text_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"]}), path)
    with pytest.raises(BadRowError, match=r"^d\.parquet row 2: field 'text' is null"):
        list(FileReader(path))


def test_parquet_wrong_field_and_string_columns(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"n": [1, 2], "content": ["a", "b"]}), path)
    assert FileReader(path).text_field == "content"
    with pytest.raises(ValueError, match=r"no field 'body'; available fields: n, content"):
        FileReader(path, text_field="body")


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "fake.parquet"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(ValueError, match=r"^fake\.parquet: not a readable Parquet file"):
        FileReader(path)


# --- folders and paths -----------------------------------------------------------------------------


def test_folder_reads_supported_files_sorted(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("from b\n", encoding="utf-8")
    write_jsonl(tmp_path / "a.jsonl", [{"text": "from a"}])
    (tmp_path / "sub").mkdir()
    write_csv(tmp_path / "sub" / "c.csv", ["text"], [["from c"]])
    (tmp_path / "README.md").write_text("ignored", encoding="utf-8")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("hidden", encoding="utf-8")
    files = list_source_files(tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a.jsonl", "b.txt", "sub/c.csv"]
    assert list(FileReader(tmp_path)) == ["from a", "from b", "from c"]


def test_folder_file_missing_the_field_is_named(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"text": "x"}])
    write_jsonl(tmp_path / "b.jsonl", [{"body": "y"}])
    with pytest.raises(ValueError, match=r"^b\.jsonl: no field 'text'; available fields: body"):
        list(FileReader(tmp_path))


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"the folder has no \.txt, \.jsonl"):
        list_source_files(tmp_path)
    (tmp_path / "notes.md").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="the folder has no"):
        FileReader(tmp_path)


def test_missing_file_and_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl: no such file or folder"):
        FileReader(tmp_path / "nope.jsonl")
    sheet = tmp_path / "table.xlsx"
    sheet.write_bytes(b"PK")
    with pytest.raises(ValueError, match=r"table\.xlsx: unsupported file type \.xlsx; expected one of"):
        FileReader(sheet)


# --- skipping (resume) -----------------------------------------------------------------------------


def test_skip_rows_continues_across_files_and_formats(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"a{i}"} for i in range(5)])
    (tmp_path / "b.txt").write_text("".join(f"b{i}\n" for i in range(5)), encoding="utf-8")
    pq.write_table(pa.table({"text": [f"c{i}" for i in range(50)]}), tmp_path / "c.parquet", row_group_size=7)
    full = list(FileReader(tmp_path))
    for skip in (0, 3, 5, 9, 10, 24, 59, 60, 70):
        reader = FileReader(tmp_path, skip_rows=skip)
        assert list(reader) == full[skip:]
        assert reader.stats.rows == max(len(full), skip)


def test_skip_rows_counts_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n{bad\n{"text": "b"}\n{"text": "c"}\n', encoding="utf-8")
    reader = FileReader(path, skip_bad_rows=True, skip_rows=2)
    assert list(reader) == ["b", "c"]
    assert reader.stats.rows == 4


# --- row dicts -------------------------------------------------------------------------------------


def test_row_reader_resolves_field_and_counts(tmp_path: Path) -> None:
    rows = [{"id": 1, "content": "x"}, {"id": 2, "content": "y"}]
    reader = RowReader(rows)
    assert reader.text_field == "content"
    assert reader.stats.total_rows == 2
    assert list(reader) == ["x", "y"]
    assert reader.describe() == {"source": "rows", "source_type": "rows"}


def test_row_reader_errors_name_the_source_and_row() -> None:
    def gen():
        yield {"text": "ok"}
        yield {"text": 7}

    reader = open_source(RowSource(gen(), total=None, name="org/data"))
    with pytest.raises(BadRowError, match=r"^org/data row 2: field 'text' is a number"):
        list(reader)
    with pytest.raises(ValueError, match=r"row 1: no field 'body'; available fields: text"):
        RowReader([{"text": "x"}], text_field="body")


def test_row_reader_skips_rows() -> None:
    reader = RowReader(iter([{"text": str(i)} for i in range(10)]), skip_rows=7)
    assert list(reader) == ["7", "8", "9"]
    assert reader.stats.rows == 10


# --- peeking ---------------------------------------------------------------------------------------


def test_peek_fields_gives_fields_and_short_samples(tmp_path: Path) -> None:
    rows = [{"id": i, "title": f"T{i}", "body": "long text " * 100} for i in range(10)]
    peek = peek_fields(write_jsonl(tmp_path / "d.jsonl", rows), n_samples=3, max_chars=20)
    assert peek.fields == ["id", "title", "body"]
    assert peek.string_fields == ["title", "body"]
    assert peek.default_field is None
    assert len(peek.samples) == 3
    assert peek.samples[0]["id"] == 0
    assert peek.samples[0]["body"] == rows[0]["body"][:20] + "…"


def test_peek_fields_of_a_folder_csv_and_parquet(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", ["n", "text"], [["1", "hello"]])
    peek = peek_fields(tmp_path)
    assert (peek.file, peek.fields, peek.default_field) == ("a.csv", ["n", "text"], "text")
    assert peek.samples == [{"n": "1", "text": "hello"}]
    pq.write_table(pa.table({"k": [1], "s": ["v"]}), tmp_path / "p.parquet")
    peek = peek_fields(tmp_path / "p.parquet")
    assert (peek.fields, peek.string_fields, peek.default_field) == (["k", "s"], ["s"], "s")
    assert peek.samples == [{"k": 1, "s": "v"}]


def test_iter_rows_yields_whole_rows(tmp_path: Path) -> None:
    rows = [{"text": "a", "id": 1}, {"text": "b", "id": 2}]
    assert list(iter_rows(write_jsonl(tmp_path / "d.jsonl", rows))) == rows
