"""Browser queries on SQLite: trigram search, one-pass count and position, covering indexes, migration 0010."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mistudio_tui.db import features as fq
from mistudio_tui.db.cascade import execute_delete, plan_delete
from mistudio_tui.db.connection import open_database
from mistudio_tui.db.models import Feature, FeatureSet, Training, database
from tests.old_schema import database_at, insert_features
from tests.ui.populate import populate


def feature_set(n: int, seed: int = 0) -> tuple[FeatureSet, list[dict]]:
    """A set of `n` random features (ties in density and max, NULL and tied scores, dead ones) and its rows."""
    rng = random.Random(seed)
    small = FeatureSet.get()
    fset = FeatureSet.create(name=f"set-{seed}", training=small.training_id, d_sae=n, status="ready", path=small.path)
    rows = [
        {
            "index": i,
            "density": 0.0 if i % 9 == 0 else rng.choice([1e-4, 1e-3, 1e-2, rng.uniform(0, 0.1)]),
            "max_activation": float(rng.randint(0, 5)),
            "top_tokens": f" tok{rng.randint(0, 40)} word{i % 13}",
            "technical_label": f"tok:' t{i}'",
            "dead": i % 9 == 0,
        }
        for i in range(n)
    ]
    fq.bulk_insert_features(fset, rows)
    scores = {i: rng.choice([None, 0.5, 0.25]) for i in range(n)}
    for i, score in scores.items():
        Feature.update(label_score=score).where((Feature.feature_set == fset.id) & (Feature.index == i)).execute()
    for row in rows:
        row["label_score"] = scores[row["index"]]
    return fset, rows


def brute_order(rows: list[dict], sort: str, descending: bool) -> list[int]:
    """Feature indexes in the browser's order: by `sort` (NULLs last), ties by index in the same direction."""
    shown = [r for r in rows if r[sort] is not None]
    shown.sort(key=lambda r: (r[sort], r["index"]), reverse=descending)
    nulls = sorted((r for r in rows if r[sort] is None), key=lambda r: r["index"], reverse=descending)
    return [r["index"] for r in shown + nulls]


def test_count_and_position_match_a_brute_force_order(studio):
    populate(studio.paths.home)
    fset, rows = feature_set(400)
    filters = {
        "": lambda r: True,
        "alive density>1e-3": lambda r: not r["dead"] and r["density"] >= 1e-3,
        "density<1e-4": lambda r: r["density"] <= 1e-4,
        "score>=0.5": lambda r: r["label_score"] is not None and r["label_score"] >= 0.5,
    }
    for text, keep in filters.items():
        shown = [r for r in rows if keep(r)]
        for sort in ("density", "max_activation", "label_score", "index"):
            for descending in (True, False):
                order = brute_order(shown, sort, descending)
                page = [f.index for f in fq.feature_page(fset.id, sort, descending, fq.parse_filter(text), 0, 1000)]
                assert page == order, (text, sort, descending)
                for index in (0, 1, 7, 200, 399):
                    total, row = fq.count_and_position(fset.id, fq.parse_filter(text), sort, descending, index)
                    assert total == len(shown)
                    assert row == (order.index(index) if index in order else -1), (text, sort, descending, index)
    assert fq.count_and_position(fset.id, fq.parse_filter("dead")) == (sum(r["dead"] for r in rows), -1)
    assert fq.count_and_position(fset.id, None, "density", True, 10_000) == (400, -1)  # no such feature


def test_count_and_position_of_a_search_match_a_brute_force_order(studio):
    populate(studio.paths.home)
    fset, _ = feature_set(300, seed=3)
    stored = [f.__data__ for f in Feature.select().where(Feature.feature_set == fset.id)]
    for text in ("word1", "tok2", "t1"):  # trigram index, and LIKE below three characters
        shown = [r for r in stored if text in r["top_tokens"] or text in r["technical_label"]]
        for sort, descending in (("density", True), ("label_score", False), ("index", True)):
            order = brute_order(shown, sort, descending)
            for index in (1, 12, 150, 299):
                total, row = fq.count_and_position(fset.id, fq.FeatureFilter(search=text), sort, descending, index)
                assert total == len(shown)
                assert row == (order.index(index) if index in order else -1), (text, sort, descending, index)


def test_search_finds_labels_and_top_tokens_by_substring_in_any_case(studio):
    ids = populate(studio.paths.home)
    fset, rows = feature_set(200)
    training = Training.get_by_id(ids["training"])
    fq.add_label(training, 17, technical="Cat detector", semantic="fires on FELINE words", method="manual")

    def found(text: str) -> list[int]:
        return [f.index for f in fq.feature_page(fset.id, "index", False, fq.FeatureFilter(search=text), 0, 500)]

    def containing(text: str) -> list[int]:
        stored = Feature.select().where(Feature.feature_set == fset.id).order_by(Feature.index)
        fields = ("technical_label", "semantic_label", "top_tokens")
        return [f.index for f in stored if any(text.lower() in getattr(f, name).lower() for name in fields)]

    assert found("feline") == [17]  # the semantic label, set after the rows were inserted (update trigger)
    assert found("CAT DET") == [17]
    assert found("word12") == containing("word12") == [r["index"] for r in rows if r["index"] % 13 == 12]
    assert found("t123'") == [123]  # technical label from the extraction
    assert found("#42") == [42]  # an index
    assert found("tok3") == containing("tok3")  # tok3, tok30..tok39
    assert found("t1") == containing("t1")  # two characters: below the trigram index
    assert found('"quoted" OR x') == []  # FTS syntax in the text is searched for, not run
    assert fq.feature_count(fset.id, fq.FeatureFilter(search="word12")) == len(found("word12"))
    fq.add_label(training, 17, technical="Dog detector", semantic="canine", method="manual")
    assert found("feline") == [] and found("canine") == [17]


def test_search_index_follows_deleted_feature_sets(studio):
    populate(studio.paths.home)
    fset, _ = feature_set(50, seed=1)
    other, _ = feature_set(50, seed=2)
    before = fq.feature_count(other.id, fq.FeatureFilter(search="word1"))
    execute_delete(plan_delete(fset))
    assert fq.feature_count(other.id, fq.FeatureFilter(search="word1")) == before > 0
    indexed = database.execute_sql("SELECT count(*) FROM feature_text").fetchone()[0]
    assert indexed == Feature.select().count()
    database.execute_sql("INSERT INTO feature_text(feature_text, rank) VALUES ('integrity-check', 1)")


@pytest.mark.parametrize(
    ("text", "sort"), [("alive density>1e-5", "density"), ("!dead bookmarked", "max_activation"), ("", "label_score")]
)
def test_filter_counts_and_positions_read_only_an_index(studio, text, sort):
    populate(studio.paths.home)
    fset, _ = feature_set(20)
    query = fq.feature_query(fset.id, fq.parse_filter(text))
    column = fq.sort_column(sort)
    sql, params = query.select(Feature.index).where(column > 0).sql()
    plan = " ".join(row[3] for row in database.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall())
    assert "COVERING INDEX" in plan, plan


def test_migration_0010_indexes_features_written_before_it(tmp_path: Path):
    path = tmp_path / "old.db"
    old = database_at(path, "0009_relative_paths")
    insert_features(old, [(0.1, " apple pie", "tok:apple", ""), (0.2, " pear", "tok:pear", "")])
    old.close()
    db = open_database(path)
    try:
        names = {row[0] for row in db.execute_sql("SELECT name FROM sqlite_master WHERE tbl_name = 'feature'")}
        assert {"feature_browse_density", "feature_browse_index", "feature_browse_semantic_label"} <= names
        assert "feature_feature_set_id_density_index" not in names and "feature_density" not in names
        assert [f.index for f in fq.feature_page(1, "index", False, fq.FeatureFilter(search="APPLE"))] == [0]
    finally:
        db.close()


def test_pages_in_the_second_half_read_from_the_far_end_give_the_same_rows(studio):
    populate(studio.paths.home)
    fset, rows = feature_set(257, seed=4)
    flt = fq.parse_filter("density>1e-4")
    kept = [r for r in rows if r["density"] >= 1e-4]
    for sort in ("index", "density", "max_activation", "label_score"):
        for descending in (False, True):
            expected = brute_order(kept, sort, descending)
            total = len(expected)
            for offset in (0, 40, total // 2 - 10, total // 2, total - 60, total - 30, total - 1, total):
                page = fq.feature_page(fset.id, sort, descending, flt, offset, 50, total)
                assert [f.index for f in page] == expected[offset : offset + 50], (sort, descending, offset)
