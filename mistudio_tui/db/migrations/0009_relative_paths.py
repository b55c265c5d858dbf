"""0009: store paths under the home relative to it, so a copied or moved home keeps working.

A path under the current home becomes relative. A path under another folder laid out like a home (`…/saes/3-run`)
whose twin exists in the current home (the home was copied or moved before this upgrade) is adopted too.
Paths elsewhere stay absolute.
"""

from peewee import *
from playhouse.migrations import SchemaMigrator

from mistudio_tui.db.home_paths import PATH_COLUMNS, adopted, database_home


def up(migrator: SchemaMigrator, db: Database) -> None:
    home = database_home(db)
    if home is None:
        return
    for table, column in PATH_COLUMNS:
        rows = db.execute_sql(f'SELECT "id", "{column}" FROM "{table}" WHERE "{column}" LIKE \'/%\'').fetchall()
        for row_id, value in rows:
            stored = adopted(value, home)
            if stored != value:
                db.execute_sql(f'UPDATE "{table}" SET "{column}" = ? WHERE "id" = ?', (stored, row_id))
