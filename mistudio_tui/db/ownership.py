"""What the home guarantees about its folders: a row deletes only the folder it created, and an emptied database
is never silently rebuilt beside folders full of data.

Every folder the studio creates for a row (datasets, tokenizations, models, activations, saes, features) holds a
marker file, `.mistudio-owner`: the row's table, id and a token derived from the row's creation time. A new row
never takes a folder that exists already (it gets `3-run-2` instead of `3-run`), and a delete removes a folder only
when its marker names the row being deleted; any other folder (no marker, or another row's: the database was
replaced or rebuilt while the folders stayed) is left in place and the user is told.

Homes made before markers: at the first start of this version, every folder under the home that exactly one
existing row points at, and that holds no marker yet, gets that row's marker; `.mistudio-owners` in the home
records that this was done, so a later, emptied database adopts nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, TypeVar

from mistudio_tui.config import Paths
from mistudio_tui.db.models import (
    ActivationSet,
    BaseModel,
    Dataset,
    FeatureSet,
    LanguageModel,
    Tokenization,
    Training,
)

# The models whose rows own a folder (each has `path` and `created_at`).
OwningModel = Dataset | LanguageModel | Tokenization | ActivationSet | Training | FeatureSet
OwningRow = TypeVar("OwningRow", Dataset, LanguageModel, Tokenization, ActivationSet, Training, FeatureSet)
OWNING_MODELS: tuple[type[OwningModel], ...] = (
    Dataset,
    LanguageModel,
    Tokenization,
    ActivationSet,
    Training,
    FeatureSet,
)

MARKER = ".mistudio-owner"
ADOPTED = ".mistudio-owners"  # in the home: the folders of rows older than the markers were adopted
DATA_FOLDERS = ("datasets", "tokenizations", "models", "activations", "saes", "features")
NEW_DATABASE_ENV = "MISTUDIO_NEW_DATABASE"


class DatabaseMissing(OSError):
    """The database is missing or empty while the home's data folders are full: refused, not rebuilt."""


def row_token(row: BaseModel) -> str:
    """A token only `row` (this table, this id, this creation time) derives: a rebuilt database's row 1 differs."""
    created = getattr(row, "created_at", None)
    text = f"{row._meta.table_name}:{row.id}:{created.isoformat() if created is not None else ''}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def marker_of(row: BaseModel) -> dict[str, Any]:
    return {"table": row._meta.table_name, "id": row.id, "token": row_token(row)}


def write_marker(folder: Path, row: BaseModel) -> None:
    """Mark `folder` as created by `row`."""
    (Path(folder) / MARKER).write_text(json.dumps(marker_of(row)) + "\n")


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker in `folder`, or None (none, unreadable or malformed)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def owned_by(folder: Path, row: BaseModel) -> bool:
    """True when `folder` is a folder whose marker names `row`."""
    return Path(folder).is_dir() and read_marker(folder) == marker_of(row)


def create_owned_folder(row: BaseModel, parent: Path, stem: str) -> Path:
    """Create `parent/stem` (or `stem-2`, `stem-3`, ... when that name is taken: a new row never adopts an existing
    folder) with `row`'s marker; returns it."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        folder = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        write_marker(folder, row)
        return folder
    raise FileExistsError(f"no free folder name for {stem!r} in {parent}")


def adopt_legacy_folders(home: Path) -> int:
    """Once per home: mark the folders that rows made before markers point at (one row per folder); returns how
    many were marked. A failure (read-only or full disk) is retried at the next start."""
    home = Path(home)
    done = home / ADOPTED
    if done.exists():
        return 0
    claims: dict[Path, list[BaseModel]] = {}
    for model in OWNING_MODELS:
        for row in model.select(model.id, model.path, model.created_at).where(model.path.is_null(False)):
            folder = _inside_home(row.path, home)
            if folder is not None and folder.is_dir() and read_marker(folder) is None:
                claims.setdefault(folder, []).append(row)
    marked = 0
    try:
        for folder, rows in claims.items():
            if len(rows) == 1:  # two rows on one folder (an earlier mix-up): neither may delete it
                write_marker(folder, rows[0])
                marked += 1
        done.write_text(json.dumps({"version": 1, "adopted": marked}) + "\n")
    except OSError:
        return marked
    return marked


def _holds_data(entry: Path) -> bool:
    """A file, or a folder with something in it (an empty folder is no data to protect)."""
    return entry.is_file() or (entry.is_dir() and any(entry.iterdir()))


def _inside_home(raw: str | None, home: Path) -> Path | None:
    if not raw:
        return None
    path = Path(raw).resolve()
    with contextlib.suppress(ValueError):
        if path.relative_to(home.resolve()).parts:
            return path
    return None


def refuse_rebuild(db_path: Path, home: Path) -> None:
    """Raise DatabaseMissing when the database is missing or empty (0 bytes) but the data folders hold data,
    unless MISTUDIO_NEW_DATABASE=1 asks for an empty studio beside them."""
    db_path = Path(db_path)
    if os.environ.get(NEW_DATABASE_ENV, "").strip().lower() in ("1", "yes", "true"):
        return
    if db_path.exists():
        wal = db_path.with_name(db_path.name + "-wal")
        if db_path.stat().st_size > 0 or (wal.exists() and wal.stat().st_size > 0):
            return
        state = "is empty (0 bytes)"
    else:
        state = "is missing"
    held = []
    for sub in DATA_FOLDERS:
        folder = Path(home) / sub
        count = sum(1 for entry in folder.iterdir() if _holds_data(entry)) if folder.is_dir() else 0
        if count:
            held.append(f"{sub}/ {count}")
    if held:
        raise DatabaseMissing(
            f"the database {db_path} {state} but the home holds data ({', '.join(held)} folders): restore "
            f"mistudio.db from a backup, or set {NEW_DATABASE_ENV}=1 to start an empty studio beside the old "
            "folders (it never deletes them)"
        )


def slug(text: str, fallback: str = "item") -> str:
    """A filesystem- and CLI-friendly name: lowercase letters, digits, dots, dashes."""
    out = re.sub(r"[^a-zA-Z0-9._-]+", "-", text.strip()).strip("-.").lower()
    return out[:60] or fallback


def create_pending(paths: Paths, table: type[OwningRow], folder: str, /, **fields: Any) -> OwningRow:
    """A new pending `table` row whose files go in a new folder `<folder>/<id>-<slug of its name>` of the home
    `paths` (suffixed when that name is taken), marked as the row's own (see db.ownership)."""
    row = table.create(status="pending", **fields)
    row.path = str(create_owned_folder(row, paths.dir(folder), f"{row.id}-{slug(row.name)}"))
    row.save()
    return row
