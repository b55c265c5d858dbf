"""Extraction templates: save, favourites first, JSON export/import with a format version, CLI verbs, precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mistudio_tui.cli.main import main
from mistudio_tui.db.lookup import NotFound
from mistudio_tui.services import extraction_templates as templates
from mistudio_tui.services.models import extraction_settings


def cli(capsys: pytest.CaptureFixture[str], *argv: str, ok: bool = True) -> tuple[object, str]:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert (code == 0) == ok, captured.out + captured.err
    return (json.loads(captured.out) if ok else None), captured.err


def test_favourites_are_listed_first_and_toggle(studio) -> None:
    templates.save_template("b", {"hooks": ["blocks.0.hook_resid_post"]})
    templates.save_template("a", {"n_tokens": 10})
    templates.save_template("c", {"batch_size": 4}, favourite=True)
    assert [t.name for t in templates.list_templates()] == ["c", "a", "b"]
    assert templates.set_favourite("b").favourite is True
    assert [t.name for t in templates.list_templates()] == ["b", "c", "a"]
    assert templates.set_favourite("b").favourite is False
    assert templates.set_favourite("a", True).favourite is True
    assert [t.name for t in templates.list_templates()] == ["a", "c", "b"]


def test_save_refuses_bad_settings_and_duplicate_names(studio) -> None:
    with pytest.raises(ValueError, match="unknown setting 'lr'"):
        templates.save_template("t", {"lr": 0.1})
    with pytest.raises(ValueError, match="n_tokens must be a positive whole number"):
        templates.save_template("t", {"n_tokens": -5})
    with pytest.raises(ValueError, match="store_dtype must be one of"):
        templates.save_template("t", {"store_dtype": "int8"})
    with pytest.raises(ValueError, match="at least one setting"):
        templates.save_template("t", {})
    templates.save_template("t", {"n_tokens": 5})
    with pytest.raises(ValueError, match=r"exists.*--overwrite"):
        templates.save_template("t", {"n_tokens": 6})
    assert templates.save_template("t", {"n_tokens": 6}, overwrite=True).config == {"n_tokens": 6}


def test_export_import_round_trip_and_version_checks(studio, tmp_path: Path) -> None:
    templates.save_template("mid", {"hooks": ["blocks.1.hook_mlp_out"], "n_tokens": 1000}, "a note", favourite=True)
    path = templates.export_template("mid", tmp_path)
    document = json.loads(path.read_text())
    assert path.name == "mid.json"
    assert document["format"] == templates.FORMAT_NAME and document["version"] == templates.FORMAT_VERSION
    templates.delete_template("mid")
    with pytest.raises(NotFound):
        templates.get_template("mid")
    row = templates.import_template(path)
    assert (row.name, row.description, row.favourite) == ("mid", "a note", True)
    assert row.config == {"hooks": ["blocks.1.hook_mlp_out"], "n_tokens": 1000}
    assert templates.import_template(path, name="copy").name == "copy"

    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**document, "version": templates.FORMAT_VERSION + 1}))
    with pytest.raises(ValueError, match="newer than this miStudio"):
        templates.import_template(newer, name="x")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else", "version": 1}))
    with pytest.raises(ValueError, match="not an extraction template"):
        templates.import_template(other)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken.json: not a JSON file"):
        templates.import_template(broken)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**document, "name": "bad", "config": {"batch_size": "big"}}))
    with pytest.raises(ValueError, match=r"bad.json: batch_size"):
        templates.import_template(bad)
    with pytest.raises(FileNotFoundError, match=r"missing.json"):
        templates.import_template(tmp_path / "missing.json")


def test_settings_take_defaults_then_template_then_given_values(studio) -> None:
    templates.save_template("t", {"hooks": ["blocks.0.hook_resid_post"], "n_tokens": 500, "batch_size": 2})
    config = extraction_settings("t", batch_size=None, store_dtype="float16")
    assert config["hooks"] == ["blocks.0.hook_resid_post"] and config["n_tokens"] == 500
    assert config["batch_size"] == 2 and config["store_dtype"] == "float16" and config["shard_tokens"] == 65_536
    config = extraction_settings("t", hooks=["blocks.1.hook_mlp_out"], n_tokens=7, batch_size=16)
    assert config["hooks"] == ["blocks.1.hook_mlp_out"] and config["n_tokens"] == 7 and config["batch_size"] == 16
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        extraction_settings(None, batch_size=0)


def test_cli_template_verbs(capsys, tmp_path: Path) -> None:
    saved, _ = cli(capsys, "activations", "templates", "save", "late", "--hook", "blocks.1.hook_resid_post",
                   "--hook", "blocks.1.hook_mlp_out", "--tokens", "50k", "--keep-bos")  # fmt: skip
    assert saved["config"] == {
        "hooks": ["blocks.1.hook_resid_post", "blocks.1.hook_mlp_out"],
        "n_tokens": 50_000,
        "exclude_bos": False,
    }
    cli(capsys, "activations", "templates", "save", "early", "--hook", "blocks.0.hook_resid_post")
    cli(capsys, "activations", "templates", "favourite", "late")
    rows, _ = cli(capsys, "activations", "templates", "list")
    assert [r["name"] for r in rows] == ["late", "early"] and rows[0]["favourite"] is True
    exported, _ = cli(capsys, "activations", "templates", "export", "late", str(tmp_path / "late.json"))
    assert Path(exported["path"]).is_file()
    _, err = cli(capsys, "activations", "templates", "import", exported["path"], ok=False)
    assert "exists" in err and len(err.strip().splitlines()) == 1
    imported, _ = cli(capsys, "activations", "templates", "import", exported["path"], "--name", "late-copy")
    assert imported["config"] == saved["config"]
    cli(capsys, "activations", "templates", "favourite", "late", "--off")
    shown, _ = cli(capsys, "activations", "templates", "show", "late")
    assert shown["favourite"] is False
    cli(capsys, "activations", "templates", "delete", "early")
    rows, _ = cli(capsys, "activations", "templates", "list")
    assert sorted(r["name"] for r in rows) == ["late", "late-copy"]
    _, err = cli(capsys, "activations", "templates", "show", "early", ok=False)
    assert "no extraction template" in err
