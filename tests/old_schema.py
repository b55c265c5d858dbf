"""Databases written by an older schema, for migration tests: migrated up to a given step, then filled by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peewee import SqliteDatabase

from mistudio_tui.db.connection import close_database, migrate

FEATURE_COLUMNS = (
    'feature_set_id, "index", density, mean_activation, max_activation, top_tokens, technical_label, semantic_label, '
    "dead, bookmarked"
)


def database_at(path: Path, migration: str) -> SqliteDatabase:
    """A connected database at `path` with the schema as it was after `migration` (the app's own is closed)."""
    close_database()
    old = SqliteDatabase(str(path))
    old.connect()
    migrate(old, target=migration)
    return old


def insert_training(old: SqliteDatabase, name: str = "t", path: str = "") -> None:
    """One completed TopK training row, written as that schema's columns."""
    old.execute_sql(
        "INSERT INTO training (name, origin, architecture, config, status, steps, tokens, path, tags, created_at) "
        "VALUES (?, 'trained', 'topk', '{}', 'completed', 0, 0, ?, '', '2026-01-01')",
        (name, path),
    )


def insert_job(old: SqliteDatabase, params: dict[str, Any], status: str = "queued", log_path: str = "") -> None:
    """One train job row with these params."""
    old.execute_sql(
        "INSERT INTO job (kind, title, status, params, progress_done, progress_text, progress_unit, log_path, "
        "created_at, updated_at) VALUES ('train', 't', ?, json(?), 0, '', '', ?, '2026-01-01', '2026-01-01')",
        (status, json.dumps(params), log_path),
    )


def insert_features(old: SqliteDatabase, rows: list[tuple[float, str, str, str]]) -> None:
    """Training 1's feature set 1 holding features 0.. with (density, top tokens, technical, semantic label)."""
    insert_training(old)
    old.execute_sql(
        "INSERT INTO feature_set (name, training_id, d_sae, n_tokens, n_alive, path, config, status, created_at) "
        "VALUES ('s', 1, ?, 0, 0, '', '{}', 'ready', '2026-01-01')",
        (len(rows),),
    )
    for index, (density, top_tokens, technical, semantic) in enumerate(rows):
        old.execute_sql(
            f"INSERT INTO feature ({FEATURE_COLUMNS}) VALUES (1, ?, ?, 0, 1, ?, ?, ?, 0, 0)",
            (index, density, top_tokens, technical, semantic),
        )
