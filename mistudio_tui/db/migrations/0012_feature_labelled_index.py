"""0012: a `labelled` flag per feature, carried by every browse index, so the labelled filter reads no table rows.

`labelled` (has a semantic label) was `semantic_label != ''`, which no covering index of 0010 held: counting the
labelled features, or the ones ahead of the kept feature in the current order, looked up the table row of every
candidate (5-30 ms with 65,536 features). The flag is a column (an index on a virtual generated column is not
covering before SQLite 3.41) that triggers keep equal to `semantic_label != ''` whoever writes the label. Each sort
index of 0010 is rebuilt carrying it; the semantic-label sort index now carries the filter columns too.
"""

from peewee import *
from playhouse.migrations import SchemaMigrator

FILTERED = ("dead", "bookmarked", "labelled", "density", "max_activation", "label_score")
SORTED = ("density", "max_activation", "label_score", "index", "semantic_label")
HAS_LABEL = "(new.semantic_label != '')"


def up(migrator: SchemaMigrator, db: Database) -> None:
    if "labelled" not in {column.name for column in db.get_columns("feature")}:
        db.execute_sql('ALTER TABLE "feature" ADD COLUMN "labelled" INTEGER NOT NULL DEFAULT 0')
    db.execute_sql("UPDATE \"feature\" SET labelled = (semantic_label != '') WHERE labelled != (semantic_label != '')")
    mend = f"WHEN new.labelled != {HAS_LABEL} BEGIN UPDATE feature SET labelled = {HAS_LABEL} WHERE id = new.id; END"
    db.execute_sql(f"CREATE TRIGGER IF NOT EXISTS feature_labelled_insert AFTER INSERT ON feature {mend}")
    db.execute_sql(
        f"CREATE TRIGGER IF NOT EXISTS feature_labelled_update AFTER UPDATE OF semantic_label, labelled ON feature {mend}"
    )
    for column in SORTED:
        carried = ", ".join(f'"{c}"' for c in FILTERED if c != column)
        tie = ', "index"' if column != "index" else ""
        db.execute_sql(f'DROP INDEX IF EXISTS "feature_browse_{column}"')
        db.execute_sql(
            f'CREATE INDEX "feature_browse_{column}" ON "feature" ("feature_set_id", "{column}"{tie}, {carried})'
        )
