"""Sweeps through real worker processes: an orchestrating job whose trials are ordinary `train` jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mistudio_tui.cli.main import main
from mistudio_tui.db.models import ActivationSet, Job, Sweep, Training, TrainingMetric

pytestmark = pytest.mark.slow


@pytest.fixture
def activation_set(studio, tmp_path: Path) -> ActivationSet:
    """A ready set of 4096 16-dim activations: a sparse code over 48 planted directions (imported in-process)."""
    import torch
    from safetensors.torch import save_file

    from mistudio_tui.jobs.context import LocalContext
    from mistudio_tui.jobs.tasks.activations import import_set
    from mistudio_tui.services.models import import_activations

    g = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(48, 16, generator=g), dim=1)
    codes = (torch.rand(4096, 48, generator=g) < 0.06).float() * torch.rand(4096, 48, generator=g) * 3
    path = tmp_path / "acts.safetensors"
    save_file({"acts": (codes @ directions).contiguous()}, str(path))
    spec = import_activations(studio, str(path), name="syn")
    fields = import_set(spec.params, LocalContext())["resource"]
    aset = spec.resource
    for key, value in fields.items():
        if key in ActivationSet._meta.fields and key != "id":
            setattr(aset, key, value)
    aset.status = "ready"
    aset.save()
    return aset


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> dict | list:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def start_sweep(capsys: pytest.CaptureFixture[str], aset: ActivationSet, space: str, *more: str) -> dict:
    """`mistudio sweep start` on `aset` with 32 latents (expansion 2) and 256-row batches; its JSON summary."""
    argv = ["sweep", "start", "--activations", str(aset.id), "--space", space, "--expansion", "2"]
    shown = cli(capsys, *argv, "--batch-size", "256", *more)
    assert isinstance(shown, dict)
    return shown


def test_grid_sweep_runs_each_trial_as_a_linked_training_and_shows_the_front(capsys, activation_set):
    shown = start_sweep(capsys, activation_set, "k=2,4", "--parallel", "2", "--tokens", "6k", "--name", "ks")
    assert shown["status"] == "completed" and shown["trials_done"] == 2
    trials = shown["trials_detail"]
    assert [t["params"] for t in trials] == [{"k": 2}, {"k": 4}]
    assert all(t["status"] == "completed" and 0 < t["explained_variance"] <= 1 for t in trials)
    assert trials[0]["l0"] < trials[1]["l0"]
    on_front = [t["name"] for t in trials if t["pareto_ev"]]
    assert shown["pareto_ev"] == on_front and on_front  # ordered by L0
    best = max(trials, key=lambda t: t["explained_variance"])
    assert shown["best_training"] == best["name"]

    sweep = Sweep.get(Sweep.name == "ks")
    runs = list(Training.select().where(Training.sweep == sweep.id))
    assert len(runs) == 2 and all(r.config["sae"]["d_sae"] == 32 for r in runs)
    jobs = list(Job.select().where(Job.kind == "train"))
    assert sorted(j.resource_id for j in jobs) == sorted(r.id for r in runs)
    for run in runs:  # live curves were stored like any run's
        assert TrainingMetric.select().where(TrainingMetric.training == run.id).count() > 0

    listed = cli(capsys, "sweep", "list")
    assert [(s["name"], s["status"], s["trials_done"]) for s in listed] == [("ks", "completed", 2)]

    # the winner's configuration, saved as a template, trains again end to end with `train --template`
    cli(capsys, "templates", "save", "winner", "--from-training", best["name"])
    again = cli(capsys, "train", "--activations", "syn", "--template", "winner", "--name", "again")
    assert again["status"] == "completed" and again["d_sae"] == 32
    winner = Training.get(Training.name == best["name"])
    assert Training.get(Training.name == "again").config == winner.config


def test_cancelled_sweep_stops_its_trial_and_resumes_to_the_end(studio, activation_set):
    from mistudio_tui.services import sweeps as svc

    request = svc.SweepRequest(
        activations="syn",
        space="lr=1e-3..1e-2:log k=2..6",
        method="random",
        trials=1,
        fixed={"expansion": 2, "total_tokens": 60_000, "batch_size": 256},
    )
    job = svc.new_sweep(request).submit(studio.runner)
    sweep_id = job.resource_id
    while not Training.select().where(Training.sweep == sweep_id).exists():
        assert studio.runner.wait(job.id, timeout=0.2).status == "running"
    studio.runner.cancel(job.id)
    finished = studio.runner.wait(job.id, timeout=180)
    assert finished.status == "cancelled"
    assert Sweep.get_by_id(sweep_id).status == "cancelled"
    first = Training.get(Training.sweep == sweep_id)
    assert first.status in ("paused", "cancelled", "completed")
    assert not Job.select().where(Job.status.in_(("queued", "running"))).exists()

    job = svc.resume_sweep(sweep_id).submit(studio.runner)
    assert studio.runner.wait(job.id, timeout=300).status == "completed", Job.get_by_id(job.id).error
    runs = list(Training.select().where(Training.sweep == sweep_id).order_by(Training.id))
    assert [r.id for r in runs] == [first.id]
    assert all(r.status == "completed" for r in runs)
    assert Sweep.get_by_id(sweep_id).status == "completed"
    rows = svc.trial_rows(Sweep.get_by_id(sweep_id))
    assert all(r["score"] is not None for r in rows)
    with pytest.raises(ValueError, match="has finished all its trials"):
        svc.resume_sweep(sweep_id)


def test_a_trial_the_trainer_refuses_is_skipped_with_its_reason_and_the_sweep_goes_on(capsys, activation_set):
    # k=64 exceeds the 32 latents of expansion 2: the train kind's config check refuses that trial in the sweep job
    shown = start_sweep(capsys, activation_set, "k=64,2", "--tokens", "3k", "--name", "refused")
    assert shown["status"] == "completed"
    assert [(t["params"], t["status"]) for t in shown["trials_detail"]] == [({"k": 2}, "completed")]
    job = Job.get(Job.kind == "sweep")
    log = Path(job.log_path).read_text()
    assert "trial 0 (k=64) skipped: k" in log and "d_sae" in log


def test_a_sweep_whose_every_trial_is_refused_fails_naming_why(capsys, activation_set):
    code = main(["sweep", "start", "--activations", str(activation_set.id), "--space", "k=64", "--expansion", "2",
                 "--tokens", "3k", "--name", "none", "--json"])  # fmt: skip
    capsys.readouterr()
    assert code != 0
    job = Job.get(Job.kind == "sweep")
    assert job.status == "failed" and "every trial was refused; the first: k=64: k must be between" in job.error
    assert Sweep.get(Sweep.name == "none").status == "failed"
