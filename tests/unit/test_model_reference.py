"""A model's reference (what loads it, what SAE metadata records) follows the home; the Models screen shows it."""

from __future__ import annotations

import shutil
from pathlib import Path

from mistudio_tui.db.connection import close_database, open_database
from mistudio_tui.db.models import LanguageModel
from mistudio_tui.jobs.kinds.train_runs import run_metadata
from mistudio_tui.ui.screens.models import model_origin


def test_a_moved_home_moves_the_reference_of_a_model_inside_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = home / "models" / "1-sample"
    folder.mkdir(parents=True)
    open_database(home / "mistudio.db")
    LanguageModel.create(name="sample", source_type="sample", source=str(folder), path=str(folder))
    LanguageModel.create(name="gpt2", source_type="hub", source="gpt2", revision="main", path=str(home / "models/2"))
    LanguageModel.create(name="mine", source_type="local", source="/elsewhere/mine", path="/elsewhere/mine")
    close_database()
    shutil.move(home, tmp_path / "moved")
    open_database(tmp_path / "moved" / "mistudio.db")
    try:
        sample = LanguageModel.get(LanguageModel.name == "sample")
        moved_folder = str(tmp_path / "moved" / "models" / "1-sample")
        assert sample.reference == moved_folder and sample.source == str(folder)  # provenance kept as registered
        assert run_metadata(sample, None, 128)["model_name"] == moved_folder
        assert model_origin(sample) == f"built-in sample · folder: {moved_folder}"
        hub = LanguageModel.get(LanguageModel.name == "gpt2")
        assert hub.reference == "gpt2" and model_origin(hub) == "source: gpt2 @ main"
        local = LanguageModel.get(LanguageModel.name == "mine")
        assert local.reference == "/elsewhere/mine" and model_origin(local) == "folder: /elsewhere/mine"
    finally:
        close_database()
