"""Open the SQLite database (WAL, foreign keys, busy timeout) and apply numbered migrations."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from pathlib import Path

from peewee import OperationalError, SqliteDatabase
from playhouse.migrations import Migration, Runner

from mistudio_tui.db.models import database
from mistudio_tui.db.ownership import refuse_rebuild

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 15000,
    "synchronous": "normal",
    "cache_size": -32000,
}
_lock = threading.Lock()


class SchemaTooNew(RuntimeError):
    """The database was written by a newer miStudio than this one."""


class DiskFull(OSError):
    """The studio cannot write its database or files: no space left on device (the message names where)."""


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC from a file write and for SQLite's SQLITE_FULL ("database or disk is full")."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return isinstance(exc, OperationalError) and "disk is full" in str(exc)


def latest_schema_version() -> int:
    """The highest migration number this code knows."""
    return max((m.idx for m in Migration.load_directory(str(MIGRATIONS_DIR))), default=0)


def schema_version(db: SqliteDatabase) -> int:
    """The highest migration number applied to `db` (0 for an empty database)."""
    runner = Runner(db, str(MIGRATIONS_DIR))
    return max((m.idx for m in runner.status() if m.applied), default=0)


def migrate(db: SqliteDatabase, target: str | None = None) -> list[str]:
    """Apply pending migrations (up to `target`, a migration name); returns the names applied."""
    runner = Runner(db, str(MIGRATIONS_DIR))
    unknown = [m.name for m in runner.status() if m.path is None]
    if unknown:
        raise SchemaTooNew(
            f"the database has migrations this version of miStudio does not know ({', '.join(unknown)}); "
            "upgrade miStudio"
        )
    applied: list[str] = runner.up(target)
    return applied


def private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (SQLite gives its -wal and -shm files the same mode)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def backup_before_migrating(db: SqliteDatabase, path: Path) -> Path | None:
    """Copy a database with pending migrations to `<name>.bak-<its schema version>` first; None when not needed."""
    status = Runner(db, str(MIGRATIONS_DIR)).status()
    version = max((m.idx for m in status if m.applied), default=0)
    if version == 0 or any(m.path is None for m in status) or all(m.applied for m in status):
        return None  # new (nothing to keep), too new (migrate refuses it) or current
    backup, n = path.with_name(f"{path.name}.bak-{version}"), 2
    while backup.exists():  # an older backup of this version is kept as it is
        backup, n = path.with_name(f"{path.name}.bak-{version}-{n}"), n + 1
    private_file(backup)
    db.execute_sql("VACUUM INTO ?", (str(backup),))  # consistent, WAL included
    return backup


def open_database(path: Path | str, run_migrations: bool = True) -> SqliteDatabase:
    """Open (creating if needed) the database at `path`, bind the models to it and migrate it; a missing or empty
    database beside a home's full data folders is refused (DatabaseMissing), never silently rebuilt."""
    path = Path(path)
    refuse_rebuild(path, path.parent)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_file(path)
    # Transactions begin IMMEDIATE: one that read first could not upgrade to a write lock when another process
    # wrote meanwhile ("database is locked" at once, the busy timeout never applies); taking it up front waits.
    db = SqliteDatabase(str(path), pragmas=PRAGMAS, check_same_thread=False, timeout=15, lock_type="IMMEDIATE")
    with _lock:
        database.initialize(db)
        db.connect(reuse_if_open=True)
        if run_migrations:
            backup_before_migrating(db, path)
            migrate(db)
    return db


def close_database() -> None:
    """Close this thread's connection, if any."""
    if database.obj is not None and not database.is_closed():
        database.close()
