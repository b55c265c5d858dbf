"""A delete removes only the folders its rows created (ownership markers), a new row never takes an existing
folder, and an emptied database beside full data folders is refused instead of silently rebuilt."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from mistudio_tui.cli.main import main
from mistudio_tui.db.jobs import create_job, finish_job
from mistudio_tui.db.models import ActivationSet, Dataset, FeatureSet, LanguageModel, Tokenization, Training
from mistudio_tui.db.ownership import ADOPTED, MARKER, NEW_DATABASE_ENV, create_pending, read_marker
from mistudio_tui.services import models as model_svc
from mistudio_tui.services import trainings as training_svc
from mistudio_tui.studio import Studio
from tests.faults.tiny_runs import random_activations

TRAIN = {"k": 4, "expansion": 2, "total_tokens": 1024, "batch_size": 64, "device": "cpu"}


def new_run(studio: Studio, aset: ActivationSet, name: str = "run") -> Training:
    """A training row and its folder holding a (fake) checkpoint and weights, as a finished run leaves them."""
    spec = training_svc.new_training(studio, aset.id, name=name, **TRAIN)
    job = create_job(spec.kind, spec.title, spec.params.to_json(), spec.resource, os.getpid(), studio.paths.dir("logs"))
    folder = Path(spec.resource.path)
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "step-000000016.pt").write_bytes(b"checkpoint")
    (folder / "sae_weights.safetensors").write_bytes(b"weights")
    finish_job(job.id, "completed")
    return Training.get_by_id(spec.resource.id)


def files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_every_kind_of_folder_is_created_new_and_marked(studio: Studio) -> None:
    ds = create_pending(studio.paths, Dataset, "datasets", name="d")
    taken = studio.paths.dir("tokenizations") / "1-t"
    taken.mkdir()
    (taken / "old.bin").write_bytes(b"old")
    tok = create_pending(studio.paths, Tokenization, "tokenizations", name="t", dataset=ds)
    aset = create_pending(studio.paths, ActivationSet, "activations", name="a", tokenization=tok)
    run = create_pending(studio.paths, Training, "saes", name="r", activation_set=aset)
    fset = create_pending(studio.paths, FeatureSet, "features", name="f", training=run)
    model = LanguageModel.get_by_id(model_svc.add_model(studio, "org/remote", name="m", hub=True).resource.id)
    assert Path(tok.path).name == "1-t-2" and files(taken) == {"old.bin"}  # never adopted, never touched
    for row in (ds, tok, aset, run, fset, model):
        marker = read_marker(Path(row.path))
        assert marker is not None and (marker["table"], marker["id"]) == (row._meta.table_name, row.id), row


def test_zero_byte_database_beside_data_is_refused_and_nothing_is_deleted(
    studio: Studio, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = studio.paths.home
    old = new_run(studio, random_activations(studio, rows=256))
    old_folder, old_files = Path(old.path), files(Path(old.path))
    studio.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{studio.paths.db}{suffix}").unlink(missing_ok=True)
    studio.paths.db.write_bytes(b"")  # the database was emptied; its folders are full

    code, _, err = cli(capsys, "trainings", "list")
    assert code == 1 and err.count("\n") == 1
    assert f"the database {studio.paths.db} is empty (0 bytes) but the home holds data (" in err
    assert "activations/ 1" in err and "saes/ 1" in err and f"{NEW_DATABASE_ENV}=1" in err
    assert studio.paths.db.stat().st_size == 0  # not rebuilt
    from mistudio_tui.app import run_app

    assert run_app() == 1 and "is empty (0 bytes)" in capsys.readouterr().err

    # the user chooses a new, empty studio beside the old folders: its first run gets a folder of its own
    monkeypatch.setenv(NEW_DATABASE_ENV, "1")
    fresh = Studio(home)
    try:
        run = new_run(fresh, random_activations(fresh, rows=256))
        assert run.id == old.id and Path(run.path) != old_folder and Path(run.path).name == f"{old_folder.name}-2"
        code, out, err = cli(capsys, "trainings", "delete", "run", "--yes")
        assert code == 0, err
        assert not Path(run.path).exists()
        assert files(old_folder) == old_files  # the old SAE and its checkpoints survive

        # a row pointing at a folder it did not create (how the old code adopted one) leaves it in place, saying so
        Training.update(path=str(old_folder)).where(
            Training.id == new_run(fresh, run.activation_set, "again").id
        ).execute()
        code, out, err = cli(capsys, "trainings", "delete", "again", "--yes")
        assert code == 0 and f"left in place (not created by the rows deleted): {old_folder}" in out
        assert files(old_folder) == old_files and Training.get_or_none(Training.name == "again") is None
    finally:
        fresh.close()


def test_missing_database_beside_data_is_refused(studio: Studio, capsys) -> None:
    new_run(studio, random_activations(studio, rows=256))
    studio.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{studio.paths.db}{suffix}").unlink(missing_ok=True)
    code, _, err = cli(capsys, "datasets", "list")
    assert code == 1 and f"the database {studio.paths.db} is missing but the home holds data" in err
    code, _, err = cli(capsys, "monitor", "--compact")  # any opener, not only the studio, refuses
    assert code == 1 and "is missing but the home holds data" in err and err.count("\n") == 1
    assert not studio.paths.db.exists()


def test_a_new_home_starts_without_asking(tmp_path: Path, capsys) -> None:
    code, _, err = cli(capsys, "--home", str(tmp_path / "brand-new"), "datasets", "list")
    assert code == 0, err


def test_legacy_home_folders_are_adopted_once_per_row(studio: Studio, capsys) -> None:
    """A home from before the markers: each folder one row points at is adopted; a folder two rows share is not."""
    home = studio.paths.home
    aset = random_activations(studio, rows=256)
    first, second = new_run(studio, aset, "first"), new_run(studio, aset, "second")
    shared = new_run(studio, aset, "shared")
    Training.update(path=str(shared.path)).where(Training.id == second.id).execute()  # two rows, one folder
    for folder in (Path(first.path), Path(shared.path), Path(aset.path), Path(second.path)):
        (folder / MARKER).unlink(missing_ok=True)  # as an older miStudio left them
    shutil.rmtree(second.path)
    (home / ADOPTED).unlink()
    studio.close()

    studio = Studio(home)
    try:
        assert json.loads((home / ADOPTED).read_text())["adopted"] == 2  # first's and the activation set's
        code, out, _ = cli(capsys, "trainings", "delete", "first", "--yes")
        assert code == 0 and not Path(first.path).exists()
        code, out, _ = cli(capsys, "trainings", "delete", "shared", "--yes")
        assert code == 0 and "left in place" in out and (Path(shared.path) / "sae_weights.safetensors").exists()
    finally:
        studio.close()
