"""0005: the latest feature-density histogram of a training; drop the metric index that (training, step) covers."""

from peewee import *
from playhouse.migrations import SchemaMigrator


def up(migrator: SchemaMigrator, db: Database) -> None:
    migrator.migrate(migrator.add_column("training", "density_histogram", JSONField(null=True)))
    db.execute_sql('DROP INDEX IF EXISTS "trainingmetric_training_id"')
