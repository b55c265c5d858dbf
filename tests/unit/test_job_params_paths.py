"""Job params keep their paths under the home relative to it: jobs queued before a move run on the new home's files."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mistudio_tui.db.connection import open_database
from mistudio_tui.db.home_params import HOME_MARK, PATH_KEYS, load_params, store_params
from mistudio_tui.db.jobs import finish_job
from mistudio_tui.db.models import ActivationSet, Dataset, FeatureSet, Job, LanguageModel, Tokenization, Training
from mistudio_tui.jobs.kinds.label import LabelParams
from mistudio_tui.labeling.types import LabelingSettings
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.studio import Studio
from tests.home_chain import HOOK, TRAIN, build_chain, queue
from tests.old_schema import database_at, insert_job

PROMPT_KEY = "model"  # a labeling setting holding free text (an LLM's name), never a path entry


def path_entries(params: Any, where: str = "") -> dict[str, str]:
    """Every text entry under a path key, however deep, by its dotted place."""
    found: dict[str, str] = {}
    if isinstance(params, dict):
        for key, value in params.items():
            if key in PATH_KEYS and isinstance(value, str):
                found[f"{where}{key}"] = value
            else:
                found.update(path_entries(value, f"{where}{key}."))
    elif isinstance(params, list):
        for i, value in enumerate(params):
            found.update(path_entries(value, f"{where}{i}."))
    return found


def raw_params(db_file: Path) -> dict[int, str]:
    """Each job's params as SQLite holds them."""
    con = sqlite3.connect(db_file)
    try:
        return dict(con.execute('SELECT "id", "params" FROM "job"').fetchall())
    finally:
        con.close()


@pytest.fixture(scope="module")
def moved_home(tmp_path_factory: pytest.TempPathFactory, tiny_lm_dir: Path, tiny_corpus: list[str]) -> dict:
    """A chain built in one home, jobs queued there but never started, then the home moved (the old one is gone)."""
    from mistudio_tui.services import datasets as dataset_svc
    from mistudio_tui.services import features as feature_svc
    from mistudio_tui.services import trainings as training_svc
    from mistudio_tui.services.multi_training import new_multi_training

    root = tmp_path_factory.mktemp("queued")
    old = root / "old-home"
    studio = Studio(old)
    try:
        aset = build_chain(studio, tiny_lm_dir, tiny_corpus)["activations"]
        queued = {
            "tokenize": queue(studio, dataset_svc.tokenize_dataset(studio, "corpus", model_ref="tiny", name="again")),
            "hub_tokenizer": queue(studio, dataset_svc.tokenize_dataset(studio, "corpus", tokenizer="gpt2")),
            "train": queue(studio, training_svc.new_training(studio, aset.resource.id, name="queued", **TRAIN)),
            "group": queue(
                studio,
                new_multi_training(
                    studio, [HOOK], activations_ref=aset.resource.id, configs=[{"k": 2}, {"k": 4}], **TRAIN
                ),
            ),
            "features": queue(studio, feature_svc.extract_features(studio, "trained", n_tokens=64, device="cpu")),
        }
        prompt = str(studio.paths.dir("saes") / "not-a-path-key")  # user text that merely looks like a home path
        queued["text"] = queue(
            studio,
            JobSpec(
                "label",
                LabelParams(
                    settings=LabelingSettings(base_url="http://localhost:1/v1", model=prompt),
                    indices=(0,),
                    feature_dir=Path(FeatureSet.get().path),
                ),
                "Label",
            ),
        )
    finally:
        studio.close()
    new = root / "elsewhere" / "new-home"
    new.parent.mkdir()
    shutil.move(old, new)
    studio = Studio(new, max_parallel=2)
    yield {"studio": studio, "old": old, "new": new, "ids": {k: job.id for k, job in queued.items()}, "prompt": prompt}
    studio.close()


@pytest.fixture
def moved(moved_home: dict) -> dict:
    """The moved home, its database bound again (other tests bind theirs)."""
    open_database(moved_home["studio"].paths.db)
    return moved_home


def job_params(moved: dict, which: str) -> dict[str, Any]:
    return Job.get_by_id(moved["ids"][which]).params


def test_the_database_stores_no_path_of_the_old_home(moved: dict) -> None:
    raw = raw_params(moved["studio"].paths.db)
    text_job = moved["ids"]["text"]
    for job_id, text in raw.items():
        stored = json.loads(text)
        if job_id == text_job:
            assert stored["settings"][PROMPT_KEY] == moved["prompt"]  # not a path entry: stored as given
            del stored["settings"]
        assert str(moved["old"]) not in json.dumps(stored), (job_id, stored)
    train = json.loads(raw[moved["ids"]["train"]])
    assert train["out_dir"] == f"{HOME_MARK}saes/{Path(train['out_dir']).name}"
    assert train["source"]["dir"].startswith(f"{HOME_MARK}activations/")


def test_queued_jobs_read_back_paths_under_the_new_home_that_exist(moved: dict) -> None:
    new, old = moved["new"], moved["old"]
    assert not old.exists()
    for which in ("tokenize", "train", "group", "features"):
        entries = path_entries(job_params(moved, which))
        inputs = {k: v for k, v in entries.items() if not k.endswith("out_dir") and k != "metadata.dataset_path"}
        assert inputs, which
        for key, value in inputs.items():
            assert Path(value).is_relative_to(new) and Path(value).exists(), (which, key, value)
        outputs = {k: v for k, v in entries.items() if k.endswith("out_dir")}
        assert outputs and all(Path(v).is_relative_to(new) and Path(v).parent.is_dir() for v in outputs.values())

    tokenize = job_params(moved, "tokenize")
    again = Tokenization.get(Tokenization.name == "again")
    assert tokenize["out_dir"] == again.path and tokenize["dataset_dir"] == Dataset.get().path
    assert tokenize["tokenizer"] == LanguageModel.get(LanguageModel.name == "tiny").path
    train = job_params(moved, "train")
    assert train["out_dir"] == Training.get(Training.name == "queued").path
    assert train["source"]["dir"] == ActivationSet.get().path
    assert train["eval"]["tokenization_dir"] == Training.get(Training.name == "queued").tokenization.path
    features = job_params(moved, "features")
    assert features["sae_dir"] == Training.get(Training.name == "trained").path
    assert features["out_dir"] == FeatureSet.get(FeatureSet.status == "pending").path


def test_group_members_read_back_under_the_new_home(moved: dict) -> None:
    members = job_params(moved, "group")["members"]
    assert len(members) == 2
    for member in members:
        assert member["out_dir"] == Training.get_by_id(member["training_id"]).path
        assert Path(member["out_dir"]).is_relative_to(moved["new"])


def test_hub_ids_user_text_and_paths_outside_the_home_are_never_rewritten(moved: dict, tiny_lm_dir: Path) -> None:
    assert job_params(moved, "hub_tokenizer")["tokenizer"] == "gpt2"
    text = job_params(moved, "text")
    assert text["settings"][PROMPT_KEY] == moved["prompt"]
    assert Path(text["feature_dir"]).is_relative_to(moved["new"])
    outside = Job.get((Job.kind == "model.add") & (Job.resource_id == LanguageModel.get(name="outside").id))
    assert outside.params["path"] == outside.params["source"] == str(tiny_lm_dir)


def test_a_queued_training_runs_in_a_worker_on_the_new_home(moved: dict) -> None:
    """The queued job's params, run again through the runner: the worker trains into the new home's folder."""
    studio = moved["studio"]
    queued = Job.get_by_id(moved["ids"]["train"])
    training = Training.get_by_id(queued.resource_id)
    finish_job(queued.id, "interrupted")  # its runner never ran it; while it was queued it held the run
    job = studio.runner.submit(queued.kind, queued.params, title=queued.title, resource=training)
    done = studio.runner.wait(job.id, timeout=120)
    assert done.status == "completed", (done.error, done.traceback)
    training = Training.get_by_id(training.id)
    assert training.status in ("ready", "completed") and training.steps > 0
    out = Path(training.path)
    assert out.is_relative_to(moved["new"]) and (out / "cfg.json").is_file()
    assert not moved["old"].exists()


def test_stored_params_round_trip_and_leave_other_text_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    params = {
        "out_dir": str(home / "saes" / "1-run"),
        "tokenizer": "EleutherAI/pythia-70m",
        "model_path": "/data/models/mine",
        "members": [{"out_dir": str(home / "saes" / "2-a"), "label": str(home / "saes" / "2-a")}],
        "source": {"type": "activations", "dir": str(home)},
        "note": f"{HOME_MARK}saes/1-run",
        "n": 3,
    }
    stored = store_params(params, home)
    assert stored["out_dir"] == f"{HOME_MARK}saes/1-run" and stored["members"][0]["out_dir"] == f"{HOME_MARK}saes/2-a"
    assert stored["source"]["dir"] == f"{HOME_MARK}."
    for key in ("tokenizer", "model_path", "note", "n"):
        assert stored[key] == params[key]
    assert stored["members"][0]["label"] == params["members"][0]["label"]
    assert load_params(stored, home) == params
    elsewhere = tmp_path / "moved"
    loaded = load_params(stored, elsewhere)
    assert loaded["out_dir"] == str(elsewhere / "saes" / "1-run") and loaded["source"]["dir"] == str(elsewhere)
    assert loaded["note"] == params["note"] and loaded["model_path"] == params["model_path"]
    assert store_params(params, None) == params


def test_migration_0011_marks_params_under_the_home_and_adopts_a_moved_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "saes" / "2-copied").mkdir(parents=True)
    db_file = home / "mistudio.db"
    old = database_at(db_file, "0010_feature_browse_indexes")
    written = {
        "out_dir": f"{home}/saes/1-inside",
        "tokenizer": "gpt2",
        PROMPT_KEY: f"{home}/saes/1-inside",
        "members": [
            {"out_dir": "/gone/old-home/saes/2-copied"},  # written before the home was moved: its twin is here
            {"out_dir": "/gone/old-home/saes/9-missing"},  # no twin here: left as it was
        ],
        "source": {"type": "activations", "dir": "/data/acts"},
    }
    for params in (written, {}):
        insert_job(old, params)
    old.close()
    open_database(db_file)
    first, second = (json.loads(text) for text in raw_params(db_file).values())
    assert second == {}
    assert first == {
        **written,
        "out_dir": f"{HOME_MARK}saes/1-inside",
        "members": [{"out_dir": f"{HOME_MARK}saes/2-copied"}, {"out_dir": "/gone/old-home/saes/9-missing"}],
    }
    params = Job.select().order_by(Job.id).first().params
    assert params["out_dir"] == str(home / "saes" / "1-inside")
    assert params["members"][0]["out_dir"] == str(home / "saes" / "2-copied")
