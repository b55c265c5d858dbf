"""Paths under the home are stored relative to it: a moved home opens with every artifact found in its new place."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from mistudio_tui.db.connection import open_database
from mistudio_tui.db.home_paths import PATH_COLUMNS, from_stored, to_stored
from mistudio_tui.db.models import (
    ActivationSet,
    Dataset,
    FeatureSet,
    Job,
    LabelingJob,
    LanguageModel,
    Tokenization,
    Training,
)
from mistudio_tui.jobs.params import JobParams
from mistudio_tui.studio import Studio
from tests.home_chain import HOOK, build_chain, run_here
from tests.old_schema import database_at, insert_job, insert_training


def raw_paths(db_file: Path) -> dict[str, list[str]]:
    """The path columns as SQLite holds them."""
    con = sqlite3.connect(db_file)
    try:
        return {
            f"{table}.{column}": [v for (v,) in con.execute(f'SELECT "{column}" FROM "{table}" ORDER BY id') if v]
            for table, column in PATH_COLUMNS
        }
    finally:
        con.close()


@pytest.fixture(scope="module")
def moved_home(tmp_path_factory: pytest.TempPathFactory, tiny_lm_dir: Path, tiny_corpus: list[str]) -> dict:
    """The whole chain built in one home, then the home moved elsewhere (the old folder is gone)."""
    from mistudio_tui.services import features as feature_svc

    root = tmp_path_factory.mktemp("relocate")
    old = root / "old-home"
    studio = Studio(old)
    try:
        training = build_chain(studio, tiny_lm_dir, tiny_corpus)["training"]
        run_here(studio, feature_svc.extract_features(studio, training.resource.id, n_tokens=128, device="cpu"))
        before = raw_paths(studio.paths.db)
    finally:
        studio.close()
    new = root / "somewhere" / "new-home"
    new.parent.mkdir()
    shutil.move(old, new)
    studio = Studio(new)
    yield {"studio": studio, "old": old, "new": new, "before": before, "outside": tiny_lm_dir}
    studio.close()


@pytest.fixture
def moved(moved_home: dict) -> dict:
    """The moved home, its database bound again (other tests bind theirs)."""
    open_database(moved_home["studio"].paths.db)
    return moved_home


def test_the_database_holds_home_paths_relative_and_outside_paths_absolute(moved: dict) -> None:
    stored = moved["before"]
    for column in ("dataset.path", "tokenization.path", "activation_set.path", "training.path", "feature_set.path"):
        assert len(stored[column]) == 1 and not os.path.isabs(stored[column][0]), (column, stored[column])
    assert stored["language_model.path"] == ["models/mine", str(moved["outside"])]
    assert stored["job.log_path"] and all(p.startswith("logs/job-") for p in stored["job.log_path"])


def test_a_moved_home_finds_every_artifact_in_its_new_place(moved: dict) -> None:
    from mistudio_tui.ml.activations.store import ActivationStore
    from mistudio_tui.ml.data.ingest import iter_documents
    from mistudio_tui.ml.data.token_store import TokenStore
    from mistudio_tui.ml.features.store import FeatureSetReader
    from mistudio_tui.ml.models.loading import load_model
    from mistudio_tui.ml.sae.formats import load_any

    new, old = moved["new"], moved["old"]
    assert not old.exists()
    rows = {
        "dataset": Dataset.get(),
        "tokenization": Tokenization.get(),
        "activations": ActivationSet.get(),
        "training": Training.get(),
        "features": FeatureSet.get(),
        "model": LanguageModel.get(LanguageModel.name == "tiny"),
    }
    for what, row in rows.items():
        assert row.status in ("ready", "completed"), (what, row.status, row.error)
        assert Path(row.path).is_relative_to(new) and Path(row.path).is_dir(), (what, row.path)
    assert all(Path(job.log_path).is_relative_to(new) for job in Job.select())

    dataset = rows["dataset"]
    assert sum(1 for _ in iter_documents(dataset.path)) == dataset.n_documents > 0
    tokens = TokenStore(Path(rows["tokenization"].path))
    assert tokens.n_tokens == rows["tokenization"].n_tokens > 0 and len(tokens.row(0)) > 0
    activations = ActivationStore(rows["activations"].path)
    assert activations.read(HOOK).shape == (rows["activations"].n_tokens, rows["activations"].d_in)
    sae = load_any(Path(rows["training"].path)).sae
    assert (sae.d_in, sae.d_sae) == (rows["training"].d_in, rows["training"].d_sae)
    with FeatureSetReader(Path(rows["features"].path)) as reader:
        assert len(list(reader.summary_table())) == rows["features"].d_sae
        assert reader.feature(0).index == 0
    loaded = load_model(rows["model"].path, device="cpu")
    assert loaded.tokenizer is not None

    outside = LanguageModel.get(LanguageModel.name == "outside")
    assert outside.path == str(moved["outside"])


def test_resuming_after_a_move_works_on_the_new_folders(moved: dict) -> None:
    from mistudio_tui.services.datasets import resume_ingest, resume_tokenization
    from mistudio_tui.services.labeling import resume_labeling
    from mistudio_tui.services.models import resume_extraction

    new, old = moved["new"], moved["old"]
    studio = moved["studio"]
    specs = []
    for model, resume in (
        (Dataset, lambda row: resume_ingest(studio, row.id)),
        (Tokenization, lambda row: resume_tokenization(studio, row.id)),
        (ActivationSet, lambda row: resume_extraction(studio, row.id)),
    ):
        row = model.get()
        model.update(status="cancelled").execute()
        try:
            specs.append(resume(row))
        finally:
            model.update(status="ready").execute()
    fset = FeatureSet.get()
    run = LabelingJob.create(feature_set=fset, status="cancelled")
    settings = {"base_url": "http://localhost:8000/v1", "model": "m"}
    feature_dir = str(old / "features" / Path(fset.path).name)
    stale = {"settings": settings, "indices": [0], "skip": [], "feature_dir": feature_dir}
    run.job = Job.create(kind="label", params=stale, status="cancelled")
    run.save()
    specs.append(resume_labeling(run.id))
    for spec in specs:
        params = spec.params.to_json() if isinstance(spec.params, JobParams) else spec.params
        folders = {k: v for k, v in params.items() if k.endswith(("_dir", "_path")) or k == "tokenizer"}
        assert folders and all(Path(v).is_relative_to(new) for v in folders.values()), (spec.kind, folders)
        assert str(old) not in json.dumps(folders)


def test_stored_text_round_trips(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert to_stored(home / "saes" / "3-run", home) == "saes/3-run"
    assert from_stored("saes/3-run", home) == str(home / "saes" / "3-run")
    assert to_stored("/elsewhere/model", home) == "/elsewhere/model"
    assert from_stored("/elsewhere/model", home) == "/elsewhere/model"
    assert to_stored("", home) == "" and from_stored("", home) == ""
    assert to_stored(home / "x" / ".." / "logs" / "job-1.log", home) == "logs/job-1.log"


def test_a_relative_path_given_by_the_caller_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_database(tmp_path / "home" / "mistudio.db")
    monkeypatch.chdir(tmp_path)
    lm = LanguageModel.create(name="mine", path="my-model")
    assert LanguageModel.get_by_id(lm.id).path == str(tmp_path / "my-model")


def test_migration_0009_rewrites_paths_under_the_home_and_adopts_a_moved_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "saes" / "2-copied").mkdir(parents=True)
    db_file = home / "mistudio.db"
    old = database_at(db_file, "0008_feature_sort_indexes")
    rows = [
        ("inside", f"{home}/saes/1-inside"),
        ("copied", "/gone/old-home/saes/2-copied"),  # written before the home was moved: its twin is here
        ("missing", "/gone/old-home/saes/9-missing"),  # no twin here: left as it was
        ("imported", "/data/my-sae"),
        ("empty", ""),
    ]
    for name, path in rows:
        insert_training(old, name, path)
    insert_job(old, {}, "completed", f"{home}/logs/job-1.log")
    old.close()
    open_database(db_file)
    stored = raw_paths(db_file)
    assert stored["training.path"] == [
        "saes/1-inside",
        "saes/2-copied",
        "/gone/old-home/saes/9-missing",
        "/data/my-sae",
    ]
    assert stored["job.log_path"] == ["logs/job-1.log"]
    assert Training.get(Training.name == "copied").path == str(home / "saes" / "2-copied")
