"""0010: the feature browser's indexes: covering indexes per sort order, and a trigram index for `/` search.

With 65,536 features, counting a filter such as `!dead density>1e-5` or finding the kept feature's row read every
matching table row (20-60 ms); read from an index that holds the sort key and the filter columns, it is 1-5 ms.
The sort-only indexes of 0008 and the single-column indexes across all sets (never used: every query names a set)
are dropped; the semantic label gets its sort index.

Search (a substring of the labels or top tokens) scanned every row with LIKE '%…%' (20-70 ms, worst for rare text);
`feature_text` is an FTS5 trigram index over those columns, kept in step with `feature` by triggers.
"""

from peewee import *
from playhouse.migrations import SchemaMigrator

FILTERED = ("dead", "bookmarked", "density", "max_activation", "label_score")
SORTED = ("density", "max_activation", "label_score", "index")


def up(migrator: SchemaMigrator, db: Database) -> None:
    for column in ("density", "max_activation", "label_score"):
        db.execute_sql(f'DROP INDEX IF EXISTS "feature_feature_set_id_{column}_index"')
        db.execute_sql(f'DROP INDEX IF EXISTS "feature_{column}"')
    for column in SORTED:
        carried = ", ".join(f'"{c}"' for c in FILTERED if c != column)
        tie = ', "index"' if column != "index" else ""
        db.execute_sql(
            f'CREATE INDEX IF NOT EXISTS "feature_browse_{column}" '
            f'ON "feature" ("feature_set_id", "{column}"{tie}, {carried})'
        )
    db.execute_sql(
        'CREATE INDEX IF NOT EXISTS "feature_browse_semantic_label" ON "feature" ("feature_set_id", "semantic_label", "index")'
    )
    db.execute_sql(
        "CREATE VIRTUAL TABLE IF NOT EXISTS feature_text USING fts5("
        "technical_label, semantic_label, top_tokens, content='feature', content_rowid='id', tokenize='trigram')"
    )
    columns = "technical_label, semantic_label, top_tokens"
    old = "old.id, old.technical_label, old.semantic_label, old.top_tokens"
    new = "new.id, new.technical_label, new.semantic_label, new.top_tokens"
    remove = f"INSERT INTO feature_text(feature_text, rowid, {columns}) VALUES ('delete', {old});"
    add = f"INSERT INTO feature_text(rowid, {columns}) VALUES ({new});"
    db.execute_sql(f"CREATE TRIGGER IF NOT EXISTS feature_text_insert AFTER INSERT ON feature BEGIN {add} END")
    db.execute_sql(f"CREATE TRIGGER IF NOT EXISTS feature_text_delete AFTER DELETE ON feature BEGIN {remove} END")
    db.execute_sql(
        f"CREATE TRIGGER IF NOT EXISTS feature_text_update AFTER UPDATE OF {columns} ON feature "
        f"BEGIN {remove} {add} END"
    )
    db.execute_sql("INSERT INTO feature_text(feature_text) VALUES ('rebuild')")
