"""The generic template store, over both kinds (extraction and training): order, save rules, export and import."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mistudio_tui.db.lookup import NotFound
from mistudio_tui.services import extraction_templates, templates
from mistudio_tui.services.template_store import TemplateStore


@dataclass(frozen=True)
class Kind:
    store: TemplateStore
    good: dict[str, Any]
    other: dict[str, Any]
    bad: dict[str, Any]
    bad_field: str


KINDS = {
    "extraction": Kind(
        extraction_templates.STORE,
        {"hooks": ["blocks.0.hook_resid_post"], "n_tokens": 100},
        {"n_tokens": 200},
        {"n_tokens": -1},
        "n_tokens",
    ),
    "training": Kind(
        templates.STORE,
        {"sae": {"architecture": "topk", "k": 8}, "train": {"lr": 1e-3}},
        {"sae": {"k": 16}, "train": {}},
        {"sae": {"k": 0}},
        "sae.k",
    ),
}


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest, studio) -> Kind:
    return KINDS[request.param]


def test_favourites_first_then_names_ignoring_case_and_toggle(kind: Kind) -> None:
    store = kind.store
    for name in ("beta", "Alpha", "gamma"):
        store.save(name, kind.good)
    assert [t.name for t in store.list_all()] == ["Alpha", "beta", "gamma"]
    assert store.set_favourite("gamma").favourite is True
    assert [t.name for t in store.list_all()] == ["gamma", "Alpha", "beta"]
    assert store.set_favourite("gamma").favourite is False
    assert store.set_favourite("beta", True).favourite is True and store.set_favourite("beta", True).favourite is True
    assert store.list_all()[0].name == "beta"


def test_get_by_id_or_name_and_delete(kind: Kind) -> None:
    row = kind.store.save("one", kind.good)
    assert kind.store.get(row.id).name == "one" and kind.store.get("one").id == row.id
    assert kind.store.delete(row.id) == "one"
    with pytest.raises(NotFound, match=f"no {kind.store.noun} with id or name 'one'"):
        kind.store.get("one")


def test_config_is_a_copy_and_empty_without_a_template(kind: Kind) -> None:
    kind.store.save("t", kind.good)
    config = kind.store.config("t")
    assert config == kind.good and kind.store.config(None) == {}
    config.clear()
    assert kind.store.get("t").config == kind.good


def test_save_refuses_no_name_bad_settings_and_existing_names(kind: Kind) -> None:
    store = kind.store
    with pytest.raises(ValueError, match="needs a name"):
        store.save("  ", kind.good)
    with pytest.raises(ValueError, match=f"template 'x'.*{kind.bad_field}") as info:
        store.save("x", kind.bad)
    assert "\n" not in str(info.value) and not store.list_all()
    row = store.save(" t ", kind.good, "first", favourite=True)
    assert row.name == "t"
    with pytest.raises(ValueError, match="named 't' exists"):
        store.save("t", kind.other)
    again = store.save("t", kind.other, "second", overwrite=True)
    assert again.id == row.id and again.description == "second" and again.favourite is True  # None keeps the mark
    assert store.get("t").config == store.validate(kind.other, "t")
    assert store.save("t", kind.other, overwrite=True, favourite=False).favourite is False


def test_export_writes_the_versioned_document_atomically(kind: Kind, tmp_path: Path) -> None:
    store = kind.store
    folder = tmp_path / "out"
    folder.mkdir()
    store.save("Wide K/8", kind.good, "a note", favourite=True)
    path = store.export("Wide K/8", folder)
    assert path.parent == folder and path.name == "wide-k-8.json"
    doc = json.loads(path.read_text())
    assert doc == {
        "format": store.format_name,
        "version": store.format_version,
        "name": "Wide K/8",
        store.description_key: "a note",
        "favourite": True,
        "config": kind.good,
    }
    named = store.export("Wide K/8", folder / "mine.json")
    assert named == folder / "mine.json" and json.loads(named.read_text()) == doc
    assert sorted(p.name for p in folder.iterdir()) == ["mine.json", "wide-k-8.json"]  # no temporary files left
    with pytest.raises(FileNotFoundError, match="folder not found"):
        store.export("Wide K/8", folder / "nowhere" / "x.json")


def test_import_round_trips_with_name_override_and_overwrite(kind: Kind, tmp_path: Path) -> None:
    store = kind.store
    store.save("mid", kind.good, "a note", favourite=True)
    path = store.export("mid", tmp_path)
    store.delete("mid")
    back = store.import_file(path)
    assert (back.name, back.config, back.description, back.favourite) == ("mid", kind.good, "a note", True)
    with pytest.raises(ValueError, match="named 'mid' exists"):
        store.import_file(path)
    assert store.import_file(path, name="copy").name == "copy"
    store.save("mid", kind.other, overwrite=True)
    assert store.import_file(path, overwrite=True).config == kind.good
    assert sorted(t.name for t in store.list_all()) == ["copy", "mid"]


def write(tmp_path: Path, doc: object, name: str = "t.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_import_refuses_what_it_cannot_read_naming_the_file(kind: Kind, tmp_path: Path) -> None:
    store = kind.store
    good = {"format": store.format_name, "version": store.format_version, "name": "t", "config": kind.good}
    cases = [
        ("{nope", "not a JSON file"),
        ({**good, "format": "other"}, f'not an? {store.noun} \\(expected "format": "{store.format_name}"\\)'),
        ({**good, "version": store.format_version + 1}, "is not supported: it is newer than this miStudio"),
        ({**good, "version": "1"}, "field 'version' must be a whole number"),
        ({**good, "name": ""}, "field 'name' is missing; give one with --name"),
        ({**good, store.description_key: 3}, f"field '{store.description_key}' must be text"),
        ({**good, "config": kind.bad}, kind.bad_field),
    ]
    for i, (doc, message) in enumerate(cases):
        path = write(tmp_path, doc, f"case{i}.json")
        with pytest.raises(ValueError, match=message) as info:
            store.import_file(path)
        assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match=f"{store.noun} file not found: .*missing.json"):
        store.import_file(tmp_path / "missing.json")
    assert not store.list_all()
    assert store.import_file(write(tmp_path, {**good, "name": None}), name="given").name == "given"


# --- training template fields come from the trainer's dataclasses, which import without torch ---


def test_training_template_fields_follow_the_trainer_dataclasses() -> None:
    import dataclasses

    from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig

    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"metadata"}
    sae_fields = {f.name for f in dataclasses.fields(SAEConfig)} - set(templates._NOT_TEMPLATED)
    assert set(templates.TRAIN_FIELDS) == train_fields
    assert set(templates.SAE_FIELDS) == sae_fields | {"expansion"}
    # a value out of a template field's bound is one the dataclass refuses too
    outside = {">0": 0, ">=0": -1, "0..1": 2}
    for section, cls, rules in (
        ("train", TrainConfig, templates.TRAIN_FIELDS),
        ("sae", SAEConfig, templates.SAE_FIELDS),
    ):
        for name, rule in rules.items():
            if not rule.bound or name == "expansion":
                continue
            value = [0.5, outside[rule.bound]] if rule.kind == "pair" else outside[rule.bound]
            with pytest.raises(ValueError, match=f"{section}.{name}"):
                templates.check_value(f"{section}.{name}", rule, value)
            if name == "adam_betas":
                continue  # the template is stricter here: the trainer does not bound its betas
            extra = {"d_in": 16, "architecture": "topk"} if cls is SAEConfig else {}
            with pytest.raises(ValueError):
                cls(**extra, **{name: value})


def test_the_sae_config_and_checkpoint_names_load_without_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import mistudio_tui.services.templates, mistudio_tui.ml.sae.config, mistudio_tui.ml.sae.checkpoint_files\n"
        "print('torch' in sys.modules)\n"
        "import mistudio_tui.ml.sae.trainer\n"
        "print('torch' in sys.modules)\n"
    )
    env = {"MISTUDIO_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["False", "True"]
