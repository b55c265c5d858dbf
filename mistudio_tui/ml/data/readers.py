"""Stream documents from local files (txt, jsonl, csv, parquet, or a folder of them) or from row dicts.

A *row* is one record of a source (a line of a .txt or .jsonl file, a CSV record, a Parquet row, or one dict
of an iterable); its text field holds the document. Readers count every row they consume, good or bad, so
ingestion can resume by skipping exactly the rows it already consumed.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

    import pyarrow as pa
    import pyarrow.parquet as pq

TXT_SUFFIXES = (".txt",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED_SUFFIXES = TXT_SUFFIXES + JSONL_SUFFIXES + CSV_SUFFIXES + PARQUET_SUFFIXES
DEFAULT_TEXT_FIELD = "text"
PARQUET_BATCH_ROWS = 1024
FIELD_SAMPLE_ROWS = 20
MAX_BAD_ROW_EXAMPLES = 10

_END = object()
_UNDECODED_BYTE = re.compile("[\udc80-\udcff]")
_CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)


class BadRowError(ValueError):
    """One row cannot be used (malformed, undecodable, or its text field is missing or not a string)."""


@dataclass
class RowSource:
    """An iterable of row dicts (e.g. a hub dataset) with an optional row count for progress and a name."""

    rows: Iterable[dict[str, Any]]
    total: int | None = None
    name: str = ""


@dataclass
class ReadStats:
    """What a reader consumed so far: rows (good and bad, counted from the source's start) and bytes."""

    rows: int = 0
    bad_rows: int = 0
    bad_row_examples: list[str] = field(default_factory=list)
    bytes_done: int = 0
    total_bytes: int | None = None
    total_rows: int | None = None

    def record_bad(self, message: str) -> None:
        """Count one skipped bad row and keep its message if it is among the first few."""
        self.rows += 1
        self.bad_rows += 1
        if len(self.bad_row_examples) < MAX_BAD_ROW_EXAMPLES:
            self.bad_row_examples.append(message)


@dataclass
class FieldPeek:
    """The fields of a source, the ones holding strings, the default text field (if any) and sample rows."""

    file: str
    fields: list[str]
    string_fields: list[str]
    default_field: str | None
    samples: list[dict[str, Any]]


@dataclass
class _Cursor:
    """Rows still to skip (resume) and bytes read in the current file."""

    to_skip: int = 0
    file_bytes: int = 0


# --- file listing and naming -----------------------------------------------------------------------


def list_source_files(path: str | Path) -> list[Path]:
    """The supported files of `path`: the file itself, or a folder's files (recursive, sorted, no hidden)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        files = [
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in SUPPORTED_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        ]
        if not files:
            raise ValueError(f"{path}: the folder has no {', '.join(SUPPORTED_SUFFIXES)} files")
        return sorted(files, key=lambda p: p.relative_to(path).as_posix())
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        shown = path.suffix or "(none)"
        raise ValueError(f"{path.name}: unsupported file type {shown}; expected one of {', '.join(SUPPORTED_SUFFIXES)}")
    return [path]


def _display_name(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if root.is_dir() else path.name


def _where(name: str, unit: str, number: int | None) -> str:
    return name if number is None else f"{name} {unit} {number}".lstrip()


# --- text field extraction -------------------------------------------------------------------------


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def extract_text(row: dict[str, Any], text_field: str, where: str) -> str:
    """The string in `row[text_field]`, or BadRowError naming `where` and what is wrong."""
    try:
        value = row[text_field]
    except KeyError:
        keys = ", ".join(map(str, row)) or "no fields"
        raise BadRowError(f"{where}: field {text_field!r} is missing (row has: {keys})") from None
    if isinstance(value, str):
        return value
    raise BadRowError(f"{where}: field {text_field!r} is {_json_kind(value)}, expected a string")


def choose_text_field(fields: list[str], string_fields: list[str], requested: str | None, where: str) -> str:
    """The requested field if present, else `text`, else the only string field; errors list the fields."""
    available = ", ".join(fields) if fields else "none"
    if requested is not None:
        if requested not in fields:
            raise ValueError(f"{where}: no field {requested!r}; available fields: {available}")
        return requested
    if DEFAULT_TEXT_FIELD in fields:
        return DEFAULT_TEXT_FIELD
    if len(string_fields) == 1:
        return string_fields[0]
    if not string_fields:
        raise ValueError(f"{where}: no text field found (no string field); available fields: {available}")
    raise ValueError(
        f"{where}: no {DEFAULT_TEXT_FIELD!r} field and several string fields "
        f"({', '.join(string_fields)}); choose the text field"
    )


# --- per-format row generators: yield (unit number or None, row dict or BadRowError) ----------------


def _decode_line(raw: bytes, first: bool, where: str) -> str | BadRowError:
    try:
        return raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as err:
        return BadRowError(
            f"{where}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at position {err.start + 1}); "
            "is this a UTF-8 text file?"
        )


def _txt_rows(path: Path, name: str, whole_file: bool, cursor: _Cursor) -> Iterator[tuple[int | None, Any]]:
    if whole_file:
        if cursor.to_skip:
            cursor.to_skip -= 1
            cursor.file_bytes = path.stat().st_size
            return
        data = path.read_bytes()
        cursor.file_bytes = len(data)
        decoded = _decode_line(data, True, name)
        yield None, decoded if isinstance(decoded, BadRowError) else {DEFAULT_TEXT_FIELD: decoded}
        return
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            cursor.file_bytes += len(raw)
            if cursor.to_skip:
                cursor.to_skip -= 1
                continue
            decoded = _decode_line(raw, lineno == 1, f"{name} line {lineno}")
            if isinstance(decoded, BadRowError):
                yield lineno, decoded
            else:
                yield lineno, {DEFAULT_TEXT_FIELD: decoded.rstrip("\r\n")}


def _jsonl_rows(path: Path, name: str, cursor: _Cursor) -> Iterator[tuple[int | None, Any]]:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            cursor.file_bytes += len(raw)
            if not raw.strip():
                continue
            if cursor.to_skip:
                cursor.to_skip -= 1
                continue
            where = f"{name} line {lineno}"
            decoded = _decode_line(raw, lineno == 1, where)
            if isinstance(decoded, BadRowError):
                yield lineno, decoded
                continue
            try:
                row = json.loads(decoded)
            except json.JSONDecodeError as err:
                yield lineno, BadRowError(f"{where}: invalid JSON: {err.msg} at column {err.colno}")
                continue
            if not isinstance(row, dict):
                yield lineno, BadRowError(f"{where}: expected a JSON object, got {_json_kind(row)}")
                continue
            yield lineno, row


def _open_csv(raw: io.BufferedReader) -> CsvReader:
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
    return csv.reader(text)


def _csv_rows(path: Path, name: str, cursor: _Cursor) -> Iterator[tuple[int | None, Any]]:
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    with path.open("rb") as raw:
        reader = _open_csv(raw)
        header = next(reader, None)
        if header is None:
            return
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                cursor.file_bytes = raw.tell()
                yield reader.line_num, BadRowError(f"{name} line {reader.line_num}: malformed CSV: {err}")
                continue
            cursor.file_bytes = raw.tell()
            if not values:
                continue
            if cursor.to_skip:
                cursor.to_skip -= 1
                continue
            where = f"{name} line {reader.line_num}"
            if len(values) != len(header):
                yield (
                    reader.line_num,
                    BadRowError(f"{where}: has {len(values)} fields, the header has {len(header)}"),
                )
            elif any(not v.isascii() and _UNDECODED_BYTE.search(v) for v in values):
                yield reader.line_num, BadRowError(f"{where}: not valid UTF-8; is this a UTF-8 text file?")
            else:
                yield reader.line_num, dict(zip(header, values, strict=True))


def _open_parquet(path: Path, name: str) -> pq.ParquetFile:
    import pyarrow as pa
    import pyarrow.parquet as pq  # imported here: the UI reads text files without paying for pyarrow

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{name}: not a readable Parquet file ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _parquet_rows(
    path: Path, name: str, columns: list[str] | None, cursor: _Cursor
) -> Iterator[tuple[int | None, Any]]:
    import pyarrow as pa

    pf = _open_parquet(path, name)
    total = pf.metadata.num_rows
    size = path.stat().st_size
    first_group, row_index = 0, 0
    while first_group < pf.num_row_groups:
        group_rows = pf.metadata.row_group(first_group).num_rows
        if cursor.to_skip < group_rows:
            break
        cursor.to_skip -= group_rows
        row_index += group_rows
        first_group += 1
    groups = list(range(first_group, pf.num_row_groups))
    if not groups:
        cursor.file_bytes = size
        return
    try:
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=groups, columns=columns):
            rows = batch.to_pylist()
            if cursor.to_skip:
                dropped = min(cursor.to_skip, len(rows))
                cursor.to_skip -= dropped
                row_index += dropped
                rows = rows[dropped:]
            for row in rows:
                row_index += 1
                cursor.file_bytes = size * row_index // max(total, 1)
                yield row_index, row
    except pa.ArrowException as err:
        raise ValueError(f"{name}: cannot read Parquet data ({_first_line(err)})") from None


def _file_rows(
    path: Path, name: str, whole_file: bool, columns: list[str] | None, cursor: _Cursor
) -> tuple[str, Iterator[tuple[int | None, Any]]]:
    """(unit of the row numbers, row generator) for one file."""
    suffix = path.suffix.lower()
    if suffix in TXT_SUFFIXES:
        return "line", _txt_rows(path, name, whole_file, cursor)
    if suffix in JSONL_SUFFIXES:
        return "line", _jsonl_rows(path, name, cursor)
    if suffix in CSV_SUFFIXES:
        return "line", _csv_rows(path, name, cursor)
    return "row", _parquet_rows(path, name, columns, cursor)


# --- field discovery -------------------------------------------------------------------------------


def _is_string_type(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type)
    )


def _looks_like_text(value: str) -> bool:
    if not value.strip():
        return False
    try:
        float(value)
    except ValueError:
        return True
    return False


def _file_fields(path: Path, name: str, whole_file: bool, n_samples: int) -> FieldPeek:
    """Fields, string fields and the first `n_samples` good rows of one file (bad rows are not sampled)."""
    suffix = path.suffix.lower()
    samples: list[dict[str, Any]] = []
    if suffix in PARQUET_SUFFIXES:
        schema = _open_parquet(path, name).schema_arrow
        fields = list(schema.names)
        strings = [f.name for f in schema if _is_string_type(f.type)]
        samples = [row for _, row in itertools.islice(_parquet_rows(path, name, None, _Cursor()), n_samples)]
        return FieldPeek(name, fields, strings, _default_or_none(fields, strings), samples)
    if suffix in TXT_SUFFIXES:
        txt_rows = _txt_rows(path, name, whole_file, _Cursor())
        samples = [r for _, r in itertools.islice(txt_rows, n_samples * 4) if isinstance(r, dict)][:n_samples]
        return FieldPeek(name, [DEFAULT_TEXT_FIELD], [DEFAULT_TEXT_FIELD], DEFAULT_TEXT_FIELD, samples)
    if suffix in CSV_SUFFIXES:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
        with path.open("rb") as raw:
            header = next(_open_csv(raw), None) or []
    else:
        header = []
    rows: list[dict[str, Any]] = [
        r
        for _, r in itertools.islice(_file_rows(path, name, whole_file, None, _Cursor())[1], FIELD_SAMPLE_ROWS)
        if isinstance(r, dict)
    ]
    fields = list(header)
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    if suffix in CSV_SUFFIXES:
        strings = [f for f in fields if any(_looks_like_text(r.get(f, "")) for r in rows)]
    else:
        strings = [
            f
            for f in fields
            if any(isinstance(r.get(f), str) for r in rows)
            and all(isinstance(r[f], str) for r in rows if r.get(f) is not None)
        ]
    return FieldPeek(name, fields, strings, _default_or_none(fields, strings), rows[:n_samples])


def _default_or_none(fields: list[str], strings: list[str]) -> str | None:
    try:
        return choose_text_field(fields, strings, None, "")
    except ValueError:
        return None


def _shorten(row: dict[str, Any], max_chars: int | None) -> dict[str, Any]:
    if max_chars is None:
        return row
    return {k: (v[:max_chars] + "…" if isinstance(v, str) and len(v) > max_chars else v) for k, v in row.items()}


def peek_fields(
    path: str | Path, n_samples: int = 5, whole_file: bool = False, max_chars: int | None = 300
) -> FieldPeek:
    """Fields, string fields, default text field and a few sample rows of a file (a folder's first file)."""
    path = Path(path)
    first = list_source_files(path)[0]
    peek = _file_fields(first, _display_name(first, path), whole_file, n_samples)
    peek.samples = [_shorten(r, max_chars) for r in peek.samples]
    return peek


def iter_rows(path: str | Path, whole_file: bool = False) -> Iterator[dict[str, Any]]:
    """Every row dict of a file or folder, in order; a bad row raises BadRowError naming file and line."""
    path = Path(path)
    for file in list_source_files(path):
        _, rows = _file_rows(file, _display_name(file, path), whole_file, None, _Cursor())
        for _, row in rows:
            if isinstance(row, BadRowError):
                raise row
            yield row


# --- readers ---------------------------------------------------------------------------------------


class DocumentReader:
    """Iterates the text of each row of a source; bad rows raise, or are counted and skipped."""

    text_field: str
    stats: ReadStats

    def __init__(self, skip_bad_rows: bool, skip_rows: int) -> None:
        if skip_rows < 0:
            raise ValueError(f"skip_rows must be >= 0, got {skip_rows}")
        self.skip_bad_rows = skip_bad_rows
        self.skip_rows = skip_rows
        self.stats = ReadStats(rows=skip_rows)

    def describe(self) -> dict[str, Any]:
        """What the source is (recorded with the dataset and checked when resuming)."""
        raise NotImplementedError

    def _rows(self) -> Iterator[tuple[str, str, int | None, Any]]:
        """(name, unit, number, row dict or BadRowError) for every row after the skipped ones."""
        raise NotImplementedError

    def _field_for(self, name: str) -> str:
        return self.text_field

    def __iter__(self) -> Iterator[str]:
        stats = self.stats
        for name, unit, number, row in self._rows():
            text_field = self._field_for(name)
            if isinstance(row, dict):
                value = row.get(text_field)
                if isinstance(value, str):
                    stats.rows += 1
                    yield value
                    continue
            try:
                if isinstance(row, BadRowError):
                    raise row
                extract_text(row, text_field, _where(name, unit, number))
            except BadRowError as err:
                if not self.skip_bad_rows:
                    raise
                stats.record_bad(str(err))


class FileReader(DocumentReader):
    """Reads a local file or a folder of files; the text field is resolved from the first file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        text_field: str | None = None,
        whole_file: bool = False,
        skip_bad_rows: bool = False,
        skip_rows: int = 0,
    ) -> None:
        super().__init__(skip_bad_rows, skip_rows)
        self.path = Path(path)
        self.whole_file = whole_file
        self.files = list_source_files(self.path)
        self._sizes = [f.stat().st_size for f in self.files]
        self.stats.total_bytes = sum(self._sizes)
        if all(f.suffix.lower() in PARQUET_SUFFIXES for f in self.files):
            self.stats.total_rows = sum(
                _open_parquet(f, _display_name(f, self.path)).metadata.num_rows for f in self.files
            )
        structured = [f for f in self.files if f.suffix.lower() not in TXT_SUFFIXES]
        self._fields: dict[str, FieldPeek] = {}
        if structured:
            peek = self._peek(structured[0])
            self.text_field = choose_text_field(peek.fields, peek.string_fields, text_field, peek.file)
        else:
            name = _display_name(self.files[0], self.path)
            fields = [DEFAULT_TEXT_FIELD]
            self.text_field = choose_text_field(fields, fields, text_field, name)

    def _peek(self, file: Path) -> FieldPeek:
        name = _display_name(file, self.path)
        if name not in self._fields:
            self._fields[name] = _file_fields(file, name, self.whole_file, 0)
        return self._fields[name]

    def _field_for(self, name: str) -> str:
        return DEFAULT_TEXT_FIELD if name.lower().endswith(TXT_SUFFIXES) else self.text_field

    def describe(self) -> dict[str, Any]:
        return {
            "source": str(self.path.resolve()),
            "source_type": "folder" if self.path.is_dir() else "file",
            "files": [
                [_display_name(f, self.path), size, f.stat().st_mtime_ns]
                for f, size in zip(self.files, self._sizes, strict=True)
            ],
        }

    def _check_field(self, file: Path) -> None:
        """A later file in a folder must have the text field too."""
        if file.suffix.lower() in TXT_SUFFIXES:
            return
        peek = self._peek(file)
        if peek.fields and self.text_field not in peek.fields:
            raise ValueError(f"{peek.file}: no field {self.text_field!r}; available fields: {', '.join(peek.fields)}")

    def _rows(self) -> Iterator[tuple[str, str, int | None, Any]]:
        cursor = _Cursor(to_skip=self.skip_rows)
        done_bytes = 0
        for file, size in zip(self.files, self._sizes, strict=True):
            name = _display_name(file, self.path)
            self._check_field(file)
            columns = [self.text_field] if file.suffix.lower() in PARQUET_SUFFIXES else None
            cursor.file_bytes = 0
            unit, rows = _file_rows(file, name, self.whole_file, columns, cursor)
            for number, row in rows:
                self.stats.bytes_done = done_bytes + cursor.file_bytes
                yield name, unit, number, row
            done_bytes += size
            self.stats.bytes_done = done_bytes


class RowReader(DocumentReader):
    """Reads an iterable of row dicts (e.g. a hub dataset); the text field is resolved from the first row."""

    def __init__(
        self,
        source: RowSource | Iterable[dict[str, Any]],
        text_field: str | None = None,
        skip_bad_rows: bool = False,
        skip_rows: int = 0,
    ) -> None:
        super().__init__(skip_bad_rows, skip_rows)
        if not isinstance(source, RowSource):
            source = RowSource(source, total=_length_or_none(source))
        self.source = source
        self.stats.total_rows = source.total
        self._iter = iter(source.rows)
        for _ in itertools.islice(self._iter, skip_rows):
            pass
        first: Any = next(self._iter, _END)  # a row, or _END for an empty source
        if first is not _END:
            self._iter = itertools.chain([first], self._iter)
        self.text_field = self._resolve(first, text_field)

    def _resolve(self, first: Any, requested: str | None) -> str:
        if first is _END:
            return requested or DEFAULT_TEXT_FIELD
        where = _where(self.source.name, "row", self.skip_rows + 1)
        if not isinstance(first, dict):
            raise ValueError(f"{where}: expected a row dict, got {type(first).__name__}")
        fields = [str(k) for k in first]
        strings = [str(k) for k, v in first.items() if isinstance(v, str)]
        return choose_text_field(fields, strings, requested, where)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source.name or "rows", "source_type": "rows"}

    def _rows(self) -> Iterator[tuple[str, str, int | None, Any]]:
        name = self.source.name
        for number, row in enumerate(self._iter, self.skip_rows + 1):
            if not isinstance(row, dict):
                where = _where(name, "row", number)
                row = BadRowError(f"{where}: expected a row dict, got {type(row).__name__}")
            yield name, "row", number, row


def _length_or_none(rows: Any) -> int | None:
    try:
        return len(rows)
    except TypeError:
        return None


def open_source(
    source: str | os.PathLike[str] | RowSource | Iterable[dict[str, Any]],
    text_field: str | None = None,
    whole_file: bool = False,
    skip_bad_rows: bool = False,
    skip_rows: int = 0,
) -> DocumentReader:
    """A reader for a path (file or folder) or an iterable of row dicts."""
    if isinstance(source, str | os.PathLike):
        return FileReader(source, text_field, whole_file, skip_bad_rows, skip_rows)
    return RowReader(source, text_field, skip_bad_rows, skip_rows)
