"""Training templates: save from a run or values, favourites first, export → import round trip, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mistudio_tui.db.models import ActivationSet, Training
from mistudio_tui.services import templates as svc
from mistudio_tui.services.trainings import new_training


@pytest.fixture
def aset(studio) -> ActivationSet:
    return ActivationSet.create(name="acts", hooks=["blocks.0.hook_resid_post"], d_in=16, status="ready", path="/x")


def test_save_from_a_run_keeps_its_width_as_an_expansion_and_applies_to_a_new_run(studio, aset):
    spec = new_training(studio, aset.id, architecture="topk", k=5, d_sae=64, lr=3e-3, total_tokens=10_000)
    tpl = svc.save_from_training(spec.resource.id, "wide-k5")
    assert tpl.config["sae"] == {"architecture": "topk", "k": 5, "expansion": 4}
    assert tpl.config["train"]["lr"] == 3e-3 and tpl.config["train"]["total_tokens"] == 10_000
    assert "d_in" not in tpl.config["sae"] and "d_sae" not in tpl.config["sae"]

    wider = ActivationSet.create(name="wider", hooks=["h"], d_in=32, status="ready", path="/y")
    again = new_training(studio, wider.id, template="wide-k5").resource
    assert (again.d_sae, again.config["sae"]["k"], again.config["train"]["lr"]) == (128, 5, 3e-3)


def test_a_transcoder_run_makes_a_recipe_template_and_names_its_hooks(studio):
    two = ActivationSet.create(name="mlp", hooks=["in", "out"], d_in=16, status="ready", path="/z")
    spec = new_training(studio, two.id, transcode="in:out", skip=True, architecture="matryoshka", k=4, d_sae=64)
    sae = spec.resource.config["sae"]
    assert (sae["d_in"], sae["d_out"], sae["skip_connection"], sae["apply_b_dec_to_input"]) == (16, 16, True, False)
    assert spec.params.source.hook_out == "out" == spec.params.metadata["hook_name_out"]
    assert spec.resource.hook_name == "in"
    tpl = svc.save_from_training(spec.resource.id, "tc")
    assert tpl.config["sae"] == {"architecture": "matryoshka", "k": 4, "expansion": 4}  # the recipe, not the hooks
    plain = new_training(studio, two.id, hook="in", template="tc").resource
    assert "d_out" not in plain.config["sae"] and plain.config["sae"].get("apply_b_dec_to_input") is not False
    for options, message in (
        ({"transcode": "in"}, "IN_HOOK:OUT_HOOK"),
        ({"transcode": "in:in"}, "reads one hook and writes another"),
        ({"transcode": "in:nope"}, "has no hook 'nope'"),
        ({"skip": True}, "--transcode IN_HOOK:OUT_HOOK too"),
    ):
        with pytest.raises(ValueError, match=message):
            new_training(studio, two.id, **options)


def test_favourites_come_first_and_toggle(studio):
    for name in ("beta", "alpha", "gamma"):
        svc.save_template(name, svc.config_from_values(architecture="topk", k=8))
    assert [t.name for t in svc.list_templates()] == ["alpha", "beta", "gamma"]
    assert svc.set_favourite("gamma").favourite is True
    assert [t.name for t in svc.list_templates()] == ["gamma", "alpha", "beta"]
    assert svc.set_favourite("gamma").favourite is False


def test_names_are_unique_unless_overwritten_and_delete_removes(studio):
    svc.save_template("t", svc.config_from_values(k=8))
    with pytest.raises(ValueError, match="named 't' exists"):
        svc.save_template("t", svc.config_from_values(k=16))
    assert svc.save_template("t", svc.config_from_values(k=16), overwrite=True).config["sae"]["k"] == 16
    svc.delete_template("t")
    with pytest.raises(LookupError, match="no training template"):
        svc.get_template("t")


def test_export_then_import_round_trips(studio, tmp_path: Path):
    config = svc.config_from_values(architecture="jumprelu", expansion=16, l0_coefficient=0.5, lr=1e-4, seed=3)
    svc.save_template("jr", config, "for layer 6", favourite=True)
    path = svc.export_template("jr", tmp_path)
    assert path.name == "jr.json"
    doc = json.loads(path.read_text())
    assert doc["format"] == svc.FORMAT_NAME and doc["version"] == svc.FORMAT_VERSION and doc["note"] == "for layer 6"

    svc.delete_template("jr")
    back = svc.import_template(path)
    assert (back.name, back.config, back.description, back.favourite) == ("jr", config, "for layer 6", True)
    copy = svc.import_template(path, name="jr-copy")
    assert copy.config == config


def write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    return path


def good_doc(**config: object) -> dict:
    return {"format": svc.FORMAT_NAME, "version": 1, "name": "t", "note": "", "config": config}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"sae": {"k": "eight"}}, r"sae\.k must be an integer, got 'eight'"),
        ({"sae": {"k": 0}}, r"sae\.k must be > 0, got 0"),
        ({"sae": {"architecture": "gated"}}, r"sae\.architecture is 'gated'; expected one of relu, topk"),
        ({"sae": {"d_sae": 512}}, r"unknown field sae\.d_sae; use expansion"),
        ({"train": {"learning_rate": 1e-3}}, r"unknown field train\.learning_rate"),
        ({"train": {"lr_decay_start": 2}}, r"train\.lr_decay_start must be between 0 and 1"),
        ({"train": {"batch_size": True}}, r"train\.batch_size must be an integer"),
        ({"train": {"lr": None, "dtype": "fp8"}}, r"train\.dtype is 'fp8'; expected one of fp32, bf16"),
        ({"optimizer": {}}, r"unknown section 'optimizer'"),
    ],
)
def test_import_names_the_bad_field_in_one_line(studio, tmp_path, config, message):
    path = write(tmp_path, good_doc(**config))
    with pytest.raises(ValueError, match=message) as info:
        svc.import_template(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_import_rejects_files_that_are_not_templates(studio, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        svc.import_template(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ValueError, match=r"bad\.json: not a JSON file"):
        svc.import_template(bad)
    with pytest.raises(ValueError, match="not a training template"):
        svc.import_template(write(tmp_path, {"format": "other", "config": {}}))
    with pytest.raises(ValueError, match="version 2 is not supported"):
        svc.import_template(write(tmp_path, {**good_doc(), "version": 2}))
    assert not list(svc.list_templates())


def test_cli_templates_commands(studio, tmp_path, capsys):
    from mistudio_tui.cli.main import main

    def cli(*argv: str) -> object:
        assert main([*argv, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    saved = cli("templates", "save", "small", "--arch", "topk", "--k", "4", "--expansion", "2", "--lr", "1e-3")
    assert saved["config"]["sae"] == {"architecture": "topk", "k": 4, "expansion": 2}
    assert cli("templates", "favourite", str(saved["id"]))["favourite"] is True
    out = cli("templates", "export", "small", str(tmp_path / "small.json"))
    assert Path(out["path"]).exists()
    imported = cli("templates", "import", out["path"], "--name", "small-2")
    assert imported["config"] == saved["config"]
    assert [t["name"] for t in cli("templates", "list")] == ["small", "small-2"]
    assert cli("templates", "delete", "small-2")["deleted"] is True
    assert main(["templates", "show", "nope", "--json"]) == 1
    assert "no training template" in json.loads(capsys.readouterr().out)["error"]
    assert Training.select().count() == 0
