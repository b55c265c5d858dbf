"""0011: job params store their paths under the home relative to it (marked), so a re-run or resumed job keeps working
after the home is copied or moved.

Like 0009: a path under the current home is stored relative, and so is a path under another folder laid out like a
home whose twin exists here (the home was copied or moved before this upgrade). Other text stays as it was.
"""

import json

from peewee import *
from playhouse.migrations import SchemaMigrator

from mistudio_tui.db.home_params import store_params
from mistudio_tui.db.home_paths import adopted, database_home


def up(migrator: SchemaMigrator, db: Database) -> None:
    home = database_home(db)
    if home is None:
        return
    for job_id, text in db.execute_sql('SELECT "id", "params" FROM "job" WHERE "params" IS NOT NULL').fetchall():
        params = json.loads(text)
        stored = store_params(params, home, adopted)
        if stored != params:
            db.execute_sql('UPDATE "job" SET "params" = json(?) WHERE "id" = ?', (json.dumps(stored), job_id))
