"""Database: pragmas, migrations, cascade plans, lookups, bounded metric storage."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from peewee import SqliteDatabase

from mistudio_tui.db import metrics as mq
from mistudio_tui.db.cascade import execute_delete, plan_delete
from mistudio_tui.db.connection import latest_schema_version, migrate, open_database, schema_version
from mistudio_tui.db.lookup import NotFound, resolve, unique_name
from mistudio_tui.db.models import (
    ActivationSet,
    Dataset,
    Feature,
    FeatureLabel,
    FeatureSet,
    Job,
    LanguageModel,
    Tokenization,
    Training,
    TrainingMetric,
)
from mistudio_tui.db.ownership import write_marker


@pytest.fixture
def db(tmp_path: Path) -> SqliteDatabase:
    return open_database(tmp_path / "m.db")


def test_pragmas_and_schema_version(db):
    assert db.execute_sql("pragma journal_mode").fetchone()[0] == "wal"
    assert db.execute_sql("pragma foreign_keys").fetchone()[0] == 1
    assert db.execute_sql("pragma busy_timeout").fetchone()[0] >= 10000
    assert schema_version(db) == latest_schema_version() >= 1


def test_migrations_are_idempotent_and_recorded(tmp_path):
    path = tmp_path / "again.db"
    open_database(path)
    db = open_database(path)
    assert migrate(db) == []
    names = [r[0] for r in db.execute_sql("select name from schema_migration order by name").fetchall()]
    assert names[0] == "0001_initial"


def test_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "newer.db"
    db = open_database(path)
    db.execute_sql("insert into schema_migration (name, applied) values ('9999_future', '2030-01-01')")
    from mistudio_tui.db.connection import SchemaTooNew

    with pytest.raises(SchemaTooNew, match="9999_future"):
        migrate(db)


def make_chain(home: Path) -> dict:
    ds = Dataset.create(name="d", path=str(home / "datasets" / "1-d"))
    other = Dataset.create(name="other")
    lm = LanguageModel.create(name="m", path="/elsewhere/model")
    tok = Tokenization.create(dataset=ds, model=lm, name="t", path=str(home / "tokenizations" / "1-t"))
    aset = ActivationSet.create(name="a", model=lm, tokenization=tok, path=str(home / "activations" / "1-a"))
    tr = Training.create(name="r", activation_set=aset, model=lm, path=str(home / "saes" / "1-r"))
    TrainingMetric.insert_many([{"training": tr.id, "step": i, "loss": 1.0 / (i + 1)} for i in range(5)]).execute()
    fs = FeatureSet.create(name="f", training=tr, path=str(home / "features" / "1-f"))
    Feature.insert_many([{"feature_set": fs.id, "index": i} for i in range(7)]).execute()
    FeatureLabel.create(training=tr, feature_index=3, semantic="x")
    for row in (ds, tok, aset, tr, fs):  # each folder created by (and marked as) its row, as the services do
        Path(row.path).mkdir(parents=True)
        (Path(row.path) / "data.bin").write_bytes(b"x")
        write_marker(Path(row.path), row)
    return {"dataset": ds, "other": other, "model": lm, "tokenization": tok, "training": tr}


def test_cascade_plan_counts_everything_and_delete_removes_rows_and_owned_folders(db, tmp_path):
    rows = make_chain(tmp_path)
    plan = plan_delete(rows["dataset"], home=tmp_path)
    assert plan.counts == {
        "tokenization": 1,
        "activation_set": 1,
        "training": 1,
        "training_metric": 5,
        "feature_set": 1,
        "feature": 7,
        "feature_label": 1,
    }
    text = plan.describe()
    assert "Delete dataset 'd'?" in text and "7 features" in text and "1 training" in text
    execute_delete(plan)
    assert Dataset.select().count() == 1
    for model in (Tokenization, ActivationSet, Training, TrainingMetric, FeatureSet, Feature, FeatureLabel):
        assert model.select().count() == 0, model
    leftovers = [
        p
        for sub in ("datasets", "tokenizations", "activations", "saes", "features")
        for p in (tmp_path / sub).glob("*")
    ]
    assert leftovers == []
    assert LanguageModel.get_or_none(LanguageModel.name == "m") is not None


def test_deleting_a_model_never_deletes_files_outside_the_home(db, tmp_path):
    outside = tmp_path / "user-model"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    lm = LanguageModel.create(name="mine", path=str(outside))
    plan = plan_delete(lm, home=tmp_path / "home")
    execute_delete(plan)
    assert (outside / "config.json").exists()


def test_deleting_a_model_keeps_tokenizations_but_unlinks_them(db, tmp_path):
    rows = make_chain(tmp_path)
    plan = plan_delete(rows["model"], home=tmp_path)
    assert "tokenization" not in plan.counts and plan.counts["training"] == 1
    execute_delete(plan)
    tok = Tokenization.get(Tokenization.name == "t")
    assert tok.model is None


def test_resolve_by_id_or_name_with_clear_errors(db):
    ds = Dataset.create(name="corpus")
    assert resolve(Dataset, "corpus").id == ds.id
    assert resolve(Dataset, str(ds.id)).id == ds.id
    assert resolve(Dataset, f"#{ds.id}").id == ds.id
    with pytest.raises(NotFound, match="no dataset with id or name 'nope'; known: corpus"):
        resolve(Dataset, "nope")
    assert unique_name(Dataset, "corpus") == "corpus-2"


def test_metric_rows_are_bounded_and_keep_spikes(db):
    tr = Training.create(name="run")
    rows = [{"step": s, "loss": 1.0, "l0": 10.0, "tokens": s * 10} for s in range(3000)]
    rows[100]["loss"] = 50.0  # an early spike
    for i in range(0, len(rows), 37):
        mq.record_metrics(tr.id, rows[i : i + 37], max_points=400)
    stored = TrainingMetric.select().where(TrainingMetric.training == tr.id).count()
    assert stored <= 400
    curve = mq.curve(tr.id, "loss")
    assert curve.steps == sorted(curve.steps) and curve.steps[-1] == 2999
    assert max(curve.highs) == 50.0  # the spike survives in the envelope of a merged point
    assert sum(r.span for r in TrainingMetric.select().where(TrainingMetric.training == tr.id)) == 3000
    # the newest points stay raw
    assert curve.steps[-10:] == list(range(2990, 3000))
    tr = Training.get_by_id(tr.id)
    assert tr.steps == 2999 and tr.loss == 1.0 and tr.l0 == 10.0


def test_compaction_preserves_the_span_weighted_mean(db):
    rows = [mq.clean_row({"step": s, "loss": float(s)}) for s in range(1000)]
    compacted = mq.compact(rows, 100)
    assert len(compacted) <= 100
    total = sum(r["loss"] * r["span"] for r in compacted)
    assert total == pytest.approx(sum(range(1000)))
    assert min(r["envelope"]["loss"][0] for r in compacted if "envelope" in r) == 0.0


def test_nan_metrics_are_stored_as_null(db):
    tr = Training.create(name="nan")
    mq.record_metrics(tr.id, [{"step": 1, "loss": float("nan"), "l0": 3}])
    row = TrainingMetric.get(TrainingMetric.training == tr.id)
    assert row.loss is None and row.l0 == 3.0


def test_sqlite_file_is_readable_by_plain_sqlite(db, tmp_path):
    Dataset.create(name="x")
    con = sqlite3.connect(tmp_path / "m.db")
    assert con.execute("select name from dataset").fetchall() == [("x",)]


def test_database_written_by_the_first_schema_opens_upgraded_with_its_data(tmp_path):
    path = tmp_path / "old.db"
    old = SqliteDatabase(str(path))
    old.connect()
    migrate(old, target="0001_initial")  # what the first released schema wrote
    old.execute_sql(
        "insert into dataset (name, source_type, source, cleaning, path, status, n_documents, n_chars, "
        "created_at) values ('old-corpus', 'local', '/x.txt', '{}', '', 'ready', 12, 345, '2026-01-01')"
    )
    old.execute_sql(
        "insert into job (kind, title, status, params, progress_done, progress_text, progress_unit, "
        "created_at, updated_at) values ('ingest', 'old', 'completed', '{}', 1, '', '', "
        "'2026-01-01', '2026-01-01')"
    )
    old.close()
    db = open_database(path)
    assert schema_version(db) == latest_schema_version()
    ds = Dataset.get(Dataset.name == "old-corpus")
    assert (ds.n_documents, ds.n_chars, ds.status) == (12, 345, "ready")
    ds.n_documents = 13
    ds.save()  # every column the current models know exists in the upgraded table
    assert Dataset.get_by_id(ds.id).n_documents == 13


def test_an_interrupted_multi_sae_job_marks_every_member_run(db):
    from mistudio_tui.db.jobs import mark_running, recover_interrupted

    runs = [Training.create(name=f"g-{i}", group_name="g") for i in range(3)]
    members = [{"training_id": t.id} for t in runs]
    job = Job.create(kind="train.multi", params={"members": members}, resource_type="training", resource_id=runs[0].id)
    mark_running(job.id, pid=2**22 + 12345)  # a pid that does not exist
    assert {t.status for t in Training.select()} == {"running"}
    assert recover_interrupted() == [job.id]
    assert {t.status for t in Training.select()} == {"interrupted"}
