"""Architectures beyond the four, trained through the CLI and real worker processes: Matryoshka BatchTopK."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mistudio_tui.db.models import Training
from mistudio_tui.ml.sae.formats import load_any
from mistudio_tui.services.trainings import clone_training
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
    # its features are extracted, browsed and steered like any SAE's
    extract_list_and_steer(capsys, run["id"])

    error = cli(capsys, "train", "--activations", str(activation_set), "--arch", "topk",
                "--matryoshka-widths", "8", *SMALL, ok=False)  # fmt: skip
    assert "matryoshka architecture only" in error["error"]
    error = cli(capsys, "train", "--activations", str(activation_set), "--arch", "matryoshka",
                "--matryoshka-widths", "32,16", *SMALL, ok=False)  # fmt: skip
    assert error["error"].startswith("--matryoshka-widths must increase strictly")  # named by the flag typed


def extract_list_and_steer(capsys, run_id: int) -> None:
    """A 64-wide run's features extract and list; steering its densest one changes the text (strength 0 does not)."""
    fset = cli(capsys, "features", "extract", str(run_id), "--tokens", "2000")
    assert fset["status"] == "ready" and fset["d_sae"] == 64
    top = cli(capsys, "features", "list", str(fset["id"]), "--sort", "density", "--limit", "1")[0]
    steered = cli(capsys, "steer", "--training", str(run_id), "--feature", str(top["index"]), "--strength", "0",
                  "--strength", "40", "--prompt", "once upon a time", "--max-tokens", "4", "--temperature", "0",
                  "--device", "cpu")  # fmt: skip
    assert steered["texts"]["steered:0"] == steered["texts"]["normal"] != steered["texts"]["steered:40"]


def test_train_transcoders_from_the_cli(capsys, studio, activation_set: int) -> None:
    transcode = f"{HOOKS[0]}:{HOOKS[1]}"
    run = cli(capsys, "train", "--activations", str(activation_set), "--transcode", transcode, "--tokens", "30000",
              "--arch", "topk", *SMALL)  # fmt: skip
    assert run["status"] == "completed", run
    training = Training.get_by_id(run["id"])
    assert training.name.startswith("topk-transcoder-L0-64-"), training.name
    assert training.hook_name == HOOKS[0] and training.config["hook_name_out"] == HOOKS[1]
    saved = json.loads((Path(run["path"]) / "cfg.json").read_text())
    assert saved["architecture"] == "topk_transcoder" and saved["d_out"] == 32
    assert saved["metadata"]["hook_name"] == HOOKS[0] and saved["metadata"]["hook_name_out"] == HOOKS[1]
    # the evaluation compares the output with the MLP's real output, and splices it in at the output hook
    assert 0.2 < training.explained_variance <= 1 and training.evaluation["source"] == "held_out"
    assert training.evaluation["ce_loss_sae"] > 0 and "ce_loss_recovered" in training.evaluation
    # its features are browsed like an SAE's (read at the input hook) and steer at the output hook
    extract_list_and_steer(capsys, run["id"])

    skip = cli(capsys, "train", "--activations", str(activation_set), "--transcode", transcode, "--skip",
               "--arch", "batchtopk", "--tokens", "2000", *SMALL)  # fmt: skip
    assert skip["status"] == "completed", skip
    loaded = load_any(Path(skip["path"]))
    assert loaded.sae.W_skip is not None and loaded.sae.W_skip.shape == (32, 32)
    saved = json.loads((Path(skip["path"]) / "cfg.json").read_text())
    assert saved["architecture"] == "jumprelu_skip_transcoder"
    evaluated = cli(capsys, "trainings", "eval", str(skip["id"]), "--tokens", "1000", "--device", "cpu")
    assert evaluated["evaluation"]["source"] == "held_out" and "ce_loss_recovered" in evaluated["evaluation"]
    clone = Training.get_by_id(clone_training(studio, skip["id"], name="again").resource.id)
    assert clone.config["hook_name_out"] == HOOKS[1] and clone.config["sae"]["skip_connection"]
    assert clone.config["sae"]["d_out"] == 32 and clone.hook_name == HOOKS[0]

    for argv, message in (
        (["--skip"], "give --transcode IN_HOOK:OUT_HOOK too"),
        (["--transcode", HOOKS[0]], "--transcode wants IN_HOOK:OUT_HOOK"),
        (["--transcode", f"{HOOKS[0]}:blocks.1.hook_mlp_out"], "has no hook 'blocks.1.hook_mlp_out'"),
        (["--transcode", transcode, "--hook", HOOKS[0]], "either --hook or --transcode"),
        (["--transcode", transcode, "--nproc", "2"], "transcoders train in one process"),
    ):
        error = cli(capsys, "train", "--activations", str(activation_set), *argv, *SMALL, ok=False)
        assert message in error["error"], (argv, error)
