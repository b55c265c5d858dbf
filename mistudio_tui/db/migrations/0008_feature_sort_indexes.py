"""0008: per-feature-set sort indexes, so the browser pages 65k+ features in order without sorting them each time."""

from peewee import *
from playhouse.migrations import SchemaMigrator

SORTED = ("density", "max_activation", "label_score")


def up(migrator: SchemaMigrator, db: Database) -> None:
    for column in SORTED:
        db.execute_sql(
            f'CREATE INDEX IF NOT EXISTS "feature_feature_set_id_{column}_index" '
            f'ON "feature" ("feature_set_id", "{column}", "index")'
        )
