"""`mistudio train --wandb PROJECT`: the run's metric rows go to a wandb run (a fake module here; never installed)."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from mistudio_tui.cli.main import main
from mistudio_tui.db.models import Training, TrainingMetric
from tests.integration.test_sweeps import activation_set  # noqa: F401  (a fixture)


class FakeRun:
    def __init__(self, **init: Any) -> None:
        self.init, self.logged, self.exit_code = init, [], None

    def log(self, values: dict[str, float], step: int) -> None:
        self.logged.append((step, values))

    def finish(self, exit_code: int = 0) -> None:
        self.exit_code = exit_code


@pytest.fixture
def fake_wandb(monkeypatch: pytest.MonkeyPatch) -> list[FakeRun]:
    runs: list[FakeRun] = []

    def init(**kwargs: Any) -> FakeRun:
        runs.append(FakeRun(**kwargs))
        return runs[-1]

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    return runs


TRAIN = ["train", "--activations", "syn", "--k", "4", "--expansion", "2", "--tokens", "4096", "--batch-size", "256"]


@pytest.mark.slow
@pytest.mark.usefixtures("activation_set")
def test_train_logs_every_metric_row_to_the_wandb_project(
    fake_wandb: list[FakeRun],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*TRAIN, "--name", "tracked", "--device", "cpu", "--wandb", "my-project"]) == 0
    (run,) = fake_wandb
    training = Training.get(Training.name == "tracked")
    assert run.init["project"] == "my-project" and run.init["name"] == "tracked"
    assert run.init["config"]["training_id"] == training.id and "sae" in run.init["config"]
    assert run.exit_code == 0 and run.logged
    stored = {m.step for m in TrainingMetric.select().where(TrainingMetric.training == training.id)}
    assert {step for step, _ in run.logged} == stored
    assert all("loss" in values and "step" not in values for _, values in run.logged)


@pytest.mark.usefixtures("activation_set")
def test_without_wandb_installed_train_says_how_to_get_it_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    before = Training.select().count()
    assert main([*TRAIN, "--wandb", "my-project"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err) == 1 and "pip install 'mistudio[wandb]'" in err[0]
    assert Training.select().count() == before


def test_metric_values_keep_finite_numbers_and_name_multi_sae_runs() -> None:
    from mistudio_tui.services.tracking import metric_values

    row = {"step": 3, "loss": 0.5, "l0": 4, "bad": float("nan"), "note": "x"}
    assert metric_values(row) == {"loss": 0.5, "l0": 4.0}
    assert metric_values({"step": 3, "loss": 0.5, "training_id": 7}) == {"training_7/loss": 0.5}
