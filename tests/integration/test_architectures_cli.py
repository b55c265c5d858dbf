"""Architectures beyond the four, trained through the CLI and real worker processes: Matryoshka BatchTopK."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mistudio_tui.db.models import Training
from mistudio_tui.ml.sae.formats import load_any
from tests.integration.test_multi_train import cli, tokenization  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow
HOOKS = ["blocks.0.hook_resid_mid", "blocks.0.hook_mlp_out"]  # an MLP's input and output
SMALL = ["--k", "4", "--expansion", "2", "--batch-size", "100", "--device", "cpu", "--template", "tiny"]


@pytest.fixture
def activation_set(capsys, tokenization: int) -> int:  # noqa: F811 (the imported fixture)
    hooks = [arg for hook in HOOKS for arg in ("--hook", hook)]
    acts = cli(capsys, "activations", "extract", "--model", "tiny", "--tokenization", str(tokenization), *hooks,
               "--tokens", "3000")  # fmt: skip
    assert acts["status"] == "ready", acts
    return int(acts["id"])


def test_train_matryoshka_from_the_cli(capsys, activation_set: int) -> None:
    run = cli(capsys, "train", "--activations", str(activation_set), "--arch", "matryoshka",
              "--matryoshka-widths", "8,16", "--tokens", "2000", *SMALL)  # fmt: skip
    assert run["status"] == "completed" and run["architecture"] == "matryoshka", run
    training = Training.get_by_id(run["id"])
    assert training.config["sae"]["matryoshka_widths"] == [8, 16, 64]
    loaded = load_any(Path(run["path"]))
    assert loaded.sae.saved_architecture == "jumprelu" and float(loaded.sae.threshold.detach().min()) > 0
    assert json.loads((Path(run["path"]) / "cfg.json").read_text())["architecture"] == "jumprelu"

    error = cli(capsys, "train", "--activations", str(activation_set), "--arch", "topk",
                "--matryoshka-widths", "8", *SMALL, ok=False)  # fmt: skip
    assert "matryoshka architecture only" in error["error"]
    error = cli(capsys, "train", "--activations", str(activation_set), "--arch", "matryoshka",
                "--matryoshka-widths", "32,16", *SMALL, ok=False)  # fmt: skip
    assert "matryoshka_widths must increase strictly" in error["error"]
