"""Names may not read as ids (all digits), and a reference that reads as an id always means the id."""

from __future__ import annotations

from pathlib import Path

import pytest

from mistudio_tui.cli.main import main
from mistudio_tui.db.lookup import resolve, unique_name
from mistudio_tui.db.models import ALL_MODELS, Dataset, Job, SteeringPreset, Training, TrainingTemplate
from mistudio_tui.services import datasets as dataset_svc
from mistudio_tui.services import multi_training as multi_svc
from mistudio_tui.services import trainings as training_svc
from mistudio_tui.studio import Studio
from tests.faults.seeded_home import seed

NAMED = [m for m in ALL_MODELS if "name" in m._meta.fields]


@pytest.fixture
def studio(mistudio_home: Path):
    s = Studio(mistudio_home)
    yield s
    s.close()


def test_a_numeric_dataset_name_is_refused_with_one_line_and_no_rows(capsys, mistudio_home: Path, tmp_path) -> None:
    corpus = tmp_path / "f.txt"
    corpus.write_text("hello world\n")
    Studio(mistudio_home).close()
    Dataset.create(name="first", status="ready")
    for name in ("1", "#1", " 42 "):
        assert main(["datasets", "add", str(corpus), "--name", name]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "all digits" in err[0] and "reads as an id" in err[0]
    assert [d.name for d in Dataset.select()] == ["first"]
    assert Job.select().count() == 0


@pytest.mark.parametrize("model", NAMED, ids=lambda m: m._meta.table_name)
def test_every_named_table_refuses_an_id_like_name(studio: Studio, model) -> None:
    with pytest.raises(ValueError, match="all digits"):
        model(name="7").save()
    assert model.select().count() == 0


def test_services_refuse_id_like_names_before_making_rows(studio: Studio, tmp_path) -> None:
    seed(studio.paths.home)
    corpus = tmp_path / "f.txt"
    corpus.write_text("hello\n")
    before = Training.select().count()
    with pytest.raises(ValueError, match="all digits"):
        dataset_svc.add_dataset(studio, str(corpus), name="12")
    with pytest.raises(ValueError, match="all digits"):
        training_svc.new_training(studio, "acts", name="3", total_tokens=512, batch_size=64)
    with pytest.raises(ValueError, match="all digits"):
        multi_svc.new_multi_training(studio, ["h"], activations_ref="acts", name="99", total_tokens=512)
    from mistudio_tui.services.steering import SteeringRequest, save_preset

    with pytest.raises(ValueError, match="all digits"):
        save_preset("5", SteeringRequest(training_id=1, features=[0], strengths=[1.0], prompt="hi"))
    from mistudio_tui.services import templates as template_svc

    with pytest.raises(ValueError, match="all digits"):
        template_svc.STORE.save("8", {"sae": {}, "train": {}})
    assert Training.select().count() == before
    assert Dataset.select().count() == SteeringPreset.select().count() == TrainingTemplate.select().count() == 0
    assert Job.select().count() == 0


def test_an_id_always_wins_over_a_legacy_numeric_name(capsys, mistudio_home: Path) -> None:
    Studio(mistudio_home).close()
    first = Dataset.create(name="first", status="ready")
    legacy = Dataset.create(name="legacy", status="ready")
    Dataset.update(name="1").where(Dataset.id == legacy.id).execute()  # named "1" before the rule (bypasses save)
    legacy = Dataset.get(Dataset.name == "1")
    assert resolve(Dataset, "1").id == first.id == 1
    assert resolve(Dataset, f"#{legacy.id}").id == legacy.id
    assert main(["datasets", "delete", "1", "--yes"]) == 0
    assert [d.name for d in Dataset.select()] == ["1"]  # id 1 went, the row named "1" stayed
    legacy.status = "failed"
    legacy.save()  # a row that already has such a name still saves


def test_generated_names_never_read_as_ids(studio: Studio) -> None:
    assert unique_name(Dataset, "2024") == "dataset-2024"
    Dataset.create(name="dataset-2024")
    assert unique_name(Dataset, "2024") == "dataset-2024-2"
