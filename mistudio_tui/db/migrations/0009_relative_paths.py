"""0009: store paths under the home relative to it, so a copied or moved home keeps working.

A path under the current home becomes relative. A path under another folder laid out like a home (`…/saes/3-run`)
whose twin exists in the current home (the home was copied or moved before this upgrade) is adopted too.
Paths elsewhere stay absolute.
"""

from pathlib import Path

from peewee import *

from mistudio_tui.config import SUBDIRS
from mistudio_tui.db.home_paths import PATH_COLUMNS, database_home, to_stored


def _adopted(value, home):
    """`value` as stored under `home`: relative when inside it or when it names a twin there, else absolute."""
    stored = to_stored(value, home)
    if not Path(stored).is_absolute():
        return stored
    parts = Path(value).parts
    if len(parts) >= 3 and parts[-2] in SUBDIRS and (home / parts[-2] / parts[-1]).exists():
        return f"{parts[-2]}/{parts[-1]}"
    return value


def up(migrator, db):
    home = database_home(db)
    if home is None:
        return
    for table, column in PATH_COLUMNS:
        rows = db.execute_sql(f'SELECT "id", "{column}" FROM "{table}" WHERE "{column}" LIKE \'/%\'').fetchall()
        for row_id, value in rows:
            stored = _adopted(value, home)
            if stored != value:
                db.execute_sql(f'UPDATE "{table}" SET "{column}" = ? WHERE "id" = ?', (stored, row_id))
