"""The labelled / unlabelled filter reads the browse indexes (migration 0012) and shows what it showed before."""

from __future__ import annotations

import random
from importlib import import_module
from pathlib import Path

import pytest
from peewee import SQL, Tuple, fn

from mistudio_tui.db import features as fq
from mistudio_tui.db.connection import open_database
from mistudio_tui.db.models import Feature, FeatureSet, Training, database
from tests.old_schema import database_at, insert_features
from tests.ui.populate import populate

SORTS = ("density", "max_activation", "label_score", "index", "semantic_label")
FILTERS = ("labelled", "unlabelled", "labelled density>1e-3", "unlabelled density<1e-3", "labelled !dead")


def labelled_set(n: int, seed: int = 0) -> tuple[FeatureSet, list[dict]]:
    """A set of `n` random features, about a third with a semantic label (written after the rows, like labeling)."""
    rng = random.Random(seed)
    small = FeatureSet.get()
    fset = FeatureSet.create(name=f"set-{seed}", training=small.training_id, d_sae=n, status="ready", path=small.path)
    rows = [
        {
            "index": i,
            "density": 0.0 if i % 7 == 0 else rng.choice([1e-4, 1e-3, rng.uniform(0, 0.1)]),
            "max_activation": float(rng.randint(0, 5)),
            "dead": i % 7 == 0,
        }
        for i in range(n)
    ]
    fq.bulk_insert_features(fset, rows)
    for row in rows:
        row["semantic_label"] = rng.choice(["", "", f"concept {rng.randint(0, 9)}"])
        row["label_score"] = rng.choice([None, 0.5]) if row["semantic_label"] else None
        Feature.update(semantic_label=row["semantic_label"], label_score=row["label_score"]).where(
            (Feature.feature_set == fset.id) & (Feature.index == row["index"])
        ).execute()
    return fset, rows


def shows(text: str, row: dict) -> bool:
    """The filter `text` decided in Python from the semantic label itself (bounds inclusive, like parse_filter)."""
    keep = True
    for term in text.split():
        if term == "labelled":
            keep &= row["semantic_label"] != ""
        elif term == "unlabelled":
            keep &= row["semantic_label"] == ""
        elif term == "!dead":
            keep &= not row["dead"]
        elif term.startswith("density>"):
            keep &= row["density"] >= float(term.removeprefix("density>"))
        elif term.startswith("density<"):
            keep &= row["density"] <= float(term.removeprefix("density<"))
    return keep


def brute_order(rows: list[dict], sort: str, descending: bool) -> list[int]:
    """Feature indexes in the browser's order: by `sort` (NULLs last), ties by index in the same direction."""
    valued = sorted((r for r in rows if r[sort] is not None), key=lambda r: (r[sort], r["index"]), reverse=descending)
    nulls = sorted((r for r in rows if r[sort] is None), key=lambda r: r["index"], reverse=descending)
    return [r["index"] for r in valued + nulls]


def plan_of(query) -> str:
    sql, params = query.sql()
    return " | ".join(row[3] for row in database.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall())


def test_labelled_filters_show_the_same_features_in_the_same_order(studio):
    populate(studio.paths.home)
    fset, rows = labelled_set(300)
    assert 0 < sum(r["semantic_label"] != "" for r in rows) < len(rows)
    for text in FILTERS:
        shown = [r for r in rows if shows(text, r)]
        for sort in SORTS:
            for descending in (False, True):
                order = brute_order(shown, sort, descending)
                flt = fq.parse_filter(text)
                page = [f.index for f in fq.feature_page(fset.id, sort, descending, flt, 0, 1000)]
                assert page == order, (text, sort, descending)
                for index in (0, 1, 5, 150, 299):
                    total, row = fq.count_and_position(fset.id, flt, sort, descending, index)
                    assert (total, row) == (len(shown), order.index(index) if index in order else -1), (text, sort)


@pytest.mark.parametrize("text", FILTERS)
@pytest.mark.parametrize("sort", SORTS)
def test_labelled_filter_queries_read_an_index_not_the_table(studio, text, sort):
    populate(studio.paths.home)
    fset, _ = labelled_set(40)
    flt = fq.parse_filter(text)
    column = fq.sort_column(sort)
    query = fq.feature_query(fset.id, flt)
    counts = {
        "count": query.select(fn.COUNT(SQL("*"))),
        "ahead": query.select(fn.COUNT(SQL("*"))).where(Tuple(column, Feature.index) < Tuple(0.5, 20)),
    }
    for name, count in counts.items():
        plan = plan_of(count)
        assert "COVERING INDEX" in plan and "SCAN" not in plan, (name, plan)
    page_plan = plan_of(query.order_by(column.asc(nulls="LAST"), Feature.index.asc()).limit(100))
    assert "USING INDEX" in page_plan and "SCAN" not in page_plan, page_plan


def test_the_labelled_flag_follows_every_way_a_label_is_written(studio):
    ids = populate(studio.paths.home)
    training = Training.get_by_id(ids["training"])
    fset, rows = labelled_set(30, seed=1)

    def labelled() -> set[int]:
        return {f.index for f in fq.feature_page(fset.id, "index", False, fq.parse_filter("labelled"), 0, 100)}

    assert labelled() == {r["index"] for r in rows if r["semantic_label"]}  # plain UPDATE of the label
    unlabelled = min(r["index"] for r in rows if not r["semantic_label"])
    fq.add_label(training, unlabelled, semantic="fires on cats", method="manual")
    assert unlabelled in labelled()
    fq.add_label(training, unlabelled, technical="tok:cat", semantic="", method="manual", make_current=True)
    assert unlabelled in labelled()  # a manual edit keeps the other half
    Feature.update(semantic_label="").where(Feature.index == unlabelled).execute()
    assert unlabelled not in labelled()
    Feature.update(labelled=True).where(Feature.index == unlabelled).execute()  # the flag alone cannot lie
    assert unlabelled not in labelled()
    again = FeatureSet.create(name="again", training=training.id, d_sae=30, status="ready", path=fset.path)
    fq.bulk_insert_features(again, ({"index": i} for i in range(30)))  # carries the SAE's current labels over
    current = {i for i, label in fq.current_labels(training.id).items() if i < 30 and label.semantic}
    shown = {f.index for f in fq.feature_page(again.id, "index", False, fq.parse_filter("labelled"), 0, 100)}
    assert shown == current and unlabelled in shown
    assert fq.feature_count(again.id, fq.parse_filter("unlabelled")) == 30 - len(shown)


def test_migration_0012_flags_labels_written_before_it(tmp_path: Path):
    path = tmp_path / "old.db"
    old = database_at(path, "0010_feature_browse_indexes")
    insert_features(old, [(0.1, "", "", "fruit"), (0.2, "", "", ""), (0.3, "", "", "colours")])
    old.close()
    db = open_database(path)
    try:
        assert fq.count_and_position(1, fq.parse_filter("labelled"), "density", True, 0) == (2, 1)
        assert fq.count_and_position(1, fq.parse_filter("unlabelled"), "index", False, 1) == (1, 0)
        indexed = {row[2] for row in db.execute_sql("PRAGMA index_info('feature_browse_semantic_label')")}
        assert {"labelled", "dead", "density"} <= indexed
        import_module("mistudio_tui.db.migrations.0012_feature_labelled_index").up(None, db)  # idempotent
        assert fq.count_and_position(1, fq.parse_filter("labelled"), "density", True, 0) == (2, 1)
    finally:
        db.close()
