"""CLI output: JSON for scripts, aligned tables for people, one-line errors for both."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from mistudio_tui.db.models import BaseModel
from mistudio_tui.display import printable


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class CliParser(argparse.ArgumentParser):
    """The parser of every command: a bad option is one line naming it and what it takes (exit 2), not a usage block.

    Subparsers inherit the class (argparse's `add_subparsers` defaults `parser_class` to the parent's type)."""

    def error(self, message: str) -> NoReturn:
        for kind, expected in (("int", "a whole number"), ("float", "a number")):
            message = message.replace(f"invalid {kind} value: ", f"expected {expected}, got ")
        raise CliError(f"{message} (see '{self.prog} --help')", code=2)


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, BaseModel):
        return value.id
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def to_json(data: Any) -> str:
    return json.dumps(data, default=_default, indent=2)


def row_dict(row: BaseModel, fields: Sequence[str] | None = None) -> dict[str, Any]:
    """A model row as a JSON-able dict (foreign keys as ids)."""
    out: dict[str, Any] = {}
    for name, field in row._meta.fields.items():
        if fields is not None and name not in fields:
            continue
        value = getattr(row, field.column_name if hasattr(field, "rel_model") else name)
        out[name] = value
    return out


def format_table(rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as an aligned text table with the given (key, header) columns."""
    rows = list(rows)
    cells = [[header for _, header in columns]]
    for row in rows:
        cells.append([format_cell(row.get(key)) for key, _ in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    if not rows:
        lines.append("(none)")
    return "\n".join(lines)


def format_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3g}"
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:59] + "…"


def emit(as_json: bool, data: Any, human: Callable[[], str] | str | None = None) -> None:
    """Print `data` as JSON (which escapes control characters), or the human rendering without any."""
    if as_json:
        print(to_json(data))
    elif human is not None:
        print(printable(human() if callable(human) else human))
    else:
        print(to_json(data))


def warn(message: str) -> None:
    """Print a one-line warning to stderr (the command goes on)."""
    print(f"mistudio: warning: {message}", file=sys.stderr)


def fail(message: str) -> None:
    """Print a one-line error to stderr."""
    first = message.strip().splitlines()[0] if message.strip() else "error"
    print(f"mistudio: error: {printable(first)}", file=sys.stderr)
