"""The home is private to its owner, and a database is backed up before migrations change it."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from mistudio_tui.db.connection import close_database, latest_schema_version, open_database
from mistudio_tui.studio import Studio
from tests.old_schema import database_at, insert_training


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_home_and_its_database_are_readable_by_the_owner_only(mistudio_home: Path) -> None:
    studio = Studio(mistudio_home)
    try:
        assert mode(mistudio_home) == 0o700
        assert mode(mistudio_home / "mistudio.db") == 0o600
        for sidecar in ("mistudio.db-wal", "mistudio.db-shm"):
            if (mistudio_home / sidecar).exists():
                assert mode(mistudio_home / sidecar) == 0o600
    finally:
        studio.close()
    assert list(mistudio_home.glob("mistudio.db.bak-*")) == []  # a new database has nothing to back up


def test_migrating_an_older_database_keeps_a_private_copy_of_it_first(tmp_path: Path) -> None:
    path = tmp_path / "mistudio.db"
    old = database_at(path, "0009_relative_paths")
    insert_training(old, name="precious")
    old.close()
    open_database(path)
    close_database()
    backup = tmp_path / "mistudio.db.bak-9"
    assert backup.exists() and mode(backup) == 0o600
    with sqlite3.connect(backup) as copy:
        assert copy.execute("SELECT name FROM training").fetchall() == [("precious",)]
        assert copy.execute("SELECT max(name) FROM schema_migration").fetchone() == ("0009_relative_paths",)
    with sqlite3.connect(path) as db:
        applied = db.execute("SELECT max(name) FROM schema_migration").fetchone()[0]
    assert int(applied[:4]) == latest_schema_version()
    open_database(path)  # up to date now: no second backup
    close_database()
    assert sorted(p.name for p in tmp_path.glob("mistudio.db.bak-*")) == ["mistudio.db.bak-9"]
