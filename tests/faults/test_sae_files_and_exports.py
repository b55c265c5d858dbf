"""SAE files that would load as garbage are refused by name; an interrupted export leaves no complete-looking folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mistudio_tui.db.connection import open_database
from mistudio_tui.db.models import Training
from mistudio_tui.ml.sae.formats import SAEFormatError, load_any
from mistudio_tui.services import sae_io
from mistudio_tui.services.staging import staged_folder


def saelens_folder(folder: Path, cfg: dict, poison: tuple[str, float] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    weights = {"W_enc": torch.randn(4, 8), "W_dec": torch.randn(8, 4), "b_enc": torch.zeros(8), "b_dec": torch.zeros(4)}
    if poison is not None:
        weights[poison[0]].view(-1)[3] = poison[1]
    save_file(weights, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"d_in": 4, "d_sae": 8, **cfg}))
    return folder


@pytest.mark.parametrize(("tensor", "value"), [("W_dec", float("nan")), ("b_enc", float("inf"))])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path: Path, tensor: str, value: float) -> None:
    folder = saelens_folder(tmp_path / "sae", {"architecture": "standard"}, poison=(tensor, value))
    with pytest.raises(SAEFormatError, match=rf"tensor '{tensor}' holds 1 NaN or infinite value"):
        load_any(folder)


def test_a_saelens_config_that_does_not_say_its_architecture_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SAEFormatError, match="missing field 'architecture'"):
        load_any(saelens_folder(tmp_path / "sae", {}))
    assert load_any(saelens_folder(tmp_path / "old", {"activation_fn": "relu"})).sae is not None  # pre-6.0 still loads


def test_an_sae_export_that_fails_midway_leaves_no_folder(
    tmp_path: Path, mistudio_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_database(mistudio_home / "mistudio.db")
    source = saelens_folder(mistudio_home / "saes" / "1-sae", {"architecture": "standard"})
    (source / "sparsity.safetensors").write_bytes(b"x")
    Training.create(name="sae", status="completed", path=str(source))
    copies: list[str] = []

    def copy_then_die(src: Path, dst: Path) -> None:
        if copies:
            raise OSError("killed")
        copies.append(str(dst))
        shutil.copyfile(src, dst)

    monkeypatch.setattr(shutil, "copy2", copy_then_die)
    with pytest.raises(OSError, match="killed"):
        sae_io.export_sae("sae", tmp_path / "out")
    assert copies and not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
    monkeypatch.undo()
    assert sorted(p.name for p in sae_io.export_sae("sae", tmp_path / "out").iterdir()) == [
        "cfg.json",
        "sae_weights.safetensors",
        "sparsity.safetensors",
    ]
    assert (source / "cfg.json").exists()  # the source is untouched


def test_a_staged_folder_joins_an_existing_one_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "np"
    target.mkdir()
    (target / "keep.json").write_text("{}")
    with pytest.raises(RuntimeError), staged_folder(target) as staged:
        (staged / "0.json").write_text("{}")
        raise RuntimeError("stopped")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["np"]
    assert sorted(p.name for p in target.iterdir()) == ["keep.json"]
    with staged_folder(target) as staged:
        (staged / "0.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["0.json", "keep.json"]
