"""`mistudio datasets fields`: the fields of a source, to choose the text field before ingesting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mistudio_tui.cli.main import main


def test_fields_of_a_local_file_list_text_fields_and_samples(capsys, tmp_path: Path) -> None:
    source = tmp_path / "notes.jsonl"
    source.write_text("\n".join(json.dumps({"title": f"t{i}", "body": "x" * 500, "n": i}) for i in range(10)))
    assert main(["datasets", "fields", str(source), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fields"] == ["title", "body", "n"] and data["text_fields"] == ["title", "body"]
    assert data["default_text_field"] is None
    assert len(data["samples"]) == 3 and len(data["samples"][0]["body"]) < 500

    assert main(["datasets", "fields", str(source)]) == 0
    text = capsys.readouterr().out
    assert "text_fields: title, body" in text


def test_fields_of_a_missing_file_is_one_line(capsys, tmp_path: Path) -> None:
    assert main(["datasets", "fields", str(tmp_path / "missing.jsonl")]) != 0
    err = capsys.readouterr().err
    assert "missing.jsonl" in err and len(err.strip().splitlines()) == 1


def test_fields_of_a_hub_dataset_offline_says_so(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["datasets", "fields", "owner/name"]) != 0
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
