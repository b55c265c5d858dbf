"""`train --resume RUN --tokens N` extends the budget (warmups kept, decay recomputed over the new total); the
flags a resume cannot change are refused by name."""

from __future__ import annotations

import os

import pytest

from mistudio_tui.cli.main import main
from mistudio_tui.db.jobs import create_job, finish_job
from mistudio_tui.db.models import Job, Training
from mistudio_tui.jobs.checkpoint_files import checkpoint_steps
from mistudio_tui.jobs.context import JobCancelled, LocalContext
from mistudio_tui.jobs.kinds.train import TrainParams
from mistudio_tui.jobs.registry import get_kind
from mistudio_tui.jobs.tasks import train as train_task
from mistudio_tui.ml.sae.config import TrainConfig
from mistudio_tui.ml.sae.schedule import LRSchedule, sparsity_warmup_steps
from mistudio_tui.services import trainings as training_svc
from tests.faults.tiny_runs import random_activations

BATCH = 64
TRAIN = {"k": 4, "expansion": 2, "total_tokens": 20 * BATCH, "batch_size": BATCH, "device": "cpu",
         "checkpoint_every": 5, "lr_warmup_steps": 100, "eval_tokens": 0}  # fmt: skip


@pytest.fixture
def paused_run(studio) -> Training:
    """A 20-step run cancelled at step 8 (its cancel wrote the checkpoint of step 8)."""
    aset = random_activations(studio, rows=512)
    spec = training_svc.new_training(studio, aset.id, name="run", **TRAIN)
    job = create_job(spec.kind, spec.title, spec.params.to_json(), spec.resource, os.getpid(), studio.paths.dir("logs"))
    with pytest.raises(JobCancelled) as cancelled:
        train_task.run(TrainParams.from_json(Job.get_by_id(job.id).params), LocalContext(cancel_after=8))
    finish_job(job.id, "cancelled", error="cancelled")
    get_kind("train").on_finish(Job.get_by_id(job.id), "cancelled", cancelled.value.args[0])
    training = Training.get(Training.name == "run")
    assert training.status == "paused" and checkpoint_steps(training.path) == [5, 8]
    return training


def test_fixed_flags_are_refused_by_name(paused_run: Training, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--resume", "run", "--k", "8", "--expansion", "4", "--lr", "0.1", "--tokens", "4k"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--k, --expansion, --lr cannot change on --resume" in err
    assert Job.select().where(Job.kind == "train").count() == 1  # nothing was started
    assert Training.get_by_id(paused_run.id).config == paused_run.config


def test_a_budget_below_what_was_trained_is_refused(paused_run: Training, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--resume", "run", "--tokens", str(8 * BATCH)])
    err = capsys.readouterr().err
    assert code == 1 and "--tokens 512 is not more than the 512 tokens run 'run' has already trained" in err


def test_resume_with_more_tokens_trains_to_the_new_budget(studio, paused_run: Training) -> None:
    old = TrainConfig.from_dict(paused_run.config["train"])
    spec = training_svc.resume_training("run", total_tokens=40 * BATCH)
    new = spec.params.train
    old_schedule, new_schedule = LRSchedule.from_config(old, 1.0), LRSchedule.from_config(new, 1.0)
    assert new_schedule.total_steps == 40 and new_schedule.decay_start_step == int(0.8 * 40)  # decay recomputed
    assert new_schedule.warmup_steps == old_schedule.warmup_steps == 2  # the warmups do not restart
    assert sparsity_warmup_steps(new) == sparsity_warmup_steps(old) == 1

    # the job as the runner runs it (its start hook, the task, its finisher), in this process to stay fast
    job = create_job(spec.kind, spec.title, spec.params.to_json(), spec.resource, os.getpid(), studio.paths.dir("logs"))
    kind = get_kind("train")
    kind.before_start(Job.get_by_id(job.id))
    assert Training.get_by_id(paused_run.id).total_tokens == 40 * BATCH  # the row takes the budget at the start
    result = train_task.run(TrainParams.from_json(Job.get_by_id(job.id).params), LocalContext())
    finish_job(job.id, "completed", result=result)
    kind.on_finish(Job.get_by_id(job.id), "completed", result)
    training = Training.get_by_id(paused_run.id)
    assert training.status == "completed" and training.steps == 40 and training.tokens == 40 * BATCH
    assert training.total_tokens == 40 * BATCH and training.config["train"]["total_tokens"] == 40 * BATCH
    assert checkpoint_steps(training.path)[-1] == 40
