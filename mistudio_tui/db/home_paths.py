"""Paths under MISTUDIO_HOME are stored relative to it, so a copied or moved home still finds its files.

The home is the folder that holds the database file. A path inside it is written as a relative POSIX path
(`datasets/3-corpus`) and read back joined to the home the database is opened from now; a path outside it (a
user's own model folder, an SAE imported in place) stays absolute. Python code only ever sees absolute paths.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from peewee import Database, Field, Proxy, TextField

from mistudio_tui.config import SUBDIRS

# The path columns: (table, column). Migration 0009 rewrites these; models.py declares them as HomePathField.
PATH_COLUMNS: tuple[tuple[str, str], ...] = (
    ("job", "log_path"),
    ("dataset", "path"),
    ("language_model", "path"),
    ("tokenization", "path"),
    ("activation_set", "path"),
    ("training", "path"),
    ("feature_set", "path"),
)


def database_home(db: Database | Proxy | None) -> Path | None:
    """The folder holding `db`'s file (None for an in-memory or unbound database)."""
    if isinstance(db, Proxy):
        db = db.obj
    filename = getattr(db, "database", None)
    if not filename or not isinstance(filename, str) or filename == ":memory:" or filename.startswith("file:"):
        return None
    return _folder_of(filename)


@lru_cache(maxsize=32)
def _folder_of(filename: str) -> Path:
    return Path(os.path.abspath(filename)).parent


def to_stored(value: str | os.PathLike[str], home: Path | None) -> str:
    """The text stored for path `value`: relative to `home` when inside it, else absolute (relative input is
    taken from the working directory)."""
    text = os.fspath(value)
    if not text:
        return text
    absolute = Path(os.path.abspath(os.path.expanduser(text)))
    if home is None:
        return str(absolute)
    relative = _inside(absolute, home)
    return str(absolute) if relative is None else relative


def _inside(path: Path, home: Path) -> str | None:
    """`path` relative to `home` as POSIX text, or None when it is elsewhere (symlinks resolved as a fallback)."""
    for candidate, base in ((path, home), (path.resolve(), home.resolve())):
        try:
            return PurePosixPath(*candidate.relative_to(base).parts).as_posix()
        except ValueError:
            continue
    return None


def adopted(value: str, home: Path) -> str:
    """Like `to_stored`, but a path under another folder laid out like a home (`…/saes/3-run`) whose twin exists
    in `home` (the home was copied or moved before its paths were stored relative) is taken as that twin."""
    stored = to_stored(value, home)
    if not Path(stored).is_absolute():
        return stored
    parts = Path(value).parts
    if len(parts) >= 3 and parts[-2] in SUBDIRS and (home / parts[-2] / parts[-1]).exists():
        return f"{parts[-2]}/{parts[-1]}"
    return value


def from_stored(value: str, home: Path | None) -> str:
    """The absolute path that stored text `value` names (relative text is joined to `home`)."""
    if not value or os.path.isabs(value) or home is None:
        return value
    return os.path.normpath(home / value)


def field_home(field: Field) -> Path | None:
    """The home of the database `field`'s model is bound to (None before binding or for an in-memory one)."""
    return database_home(field.model._meta.database) if hasattr(field, "model") else None


class HomePathField(TextField):
    """A path column: stored relative to the database's home when inside it, read back as an absolute path."""

    def _home(self) -> Path | None:
        return field_home(self)

    def db_value(self, value: Any) -> Any:
        if value is None:
            return None
        return super().db_value(to_stored(value, self._home()))  # type: ignore[no-untyped-call]  # unannotated in peewee's stubs

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        return from_stored(super().python_value(value), self._home())  # type: ignore[no-untyped-call]  # unannotated in peewee's stubs
