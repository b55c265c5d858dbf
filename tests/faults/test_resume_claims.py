"""Two resumes of one run: claiming a row for a job is one conditional UPDATE, so only one job gets it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from mistudio_tui.cli.main import main
from mistudio_tui.db.connection import close_database
from mistudio_tui.db.jobs import ResourceBusy, create_job, finish_job
from mistudio_tui.db.models import Job, Training
from mistudio_tui.services import trainings as training_svc
from tests.faults.tiny_runs import random_activations

TRAIN = {"k": 4, "expansion": 2, "total_tokens": 2048, "batch_size": 64, "device": "cpu"}


@pytest.fixture
def paused_run(studio) -> Training:
    """A training whose first job was cancelled: ready to be resumed."""
    aset = random_activations(studio, rows=512)
    spec = training_svc.new_training(studio, aset.id, name="run", **TRAIN)
    job = create_job(spec.kind, spec.title, spec.params.to_json(), spec.resource, os.getpid(), studio.paths.dir("logs"))
    finish_job(job.id, "cancelled", error="cancelled")
    return Training.get(Training.name == "run")


def test_concurrent_resumes_claim_the_run_once(studio, paused_run: Training) -> None:
    start = threading.Barrier(6)
    won: list[int] = []
    refused: list[str] = []

    def resume() -> None:
        spec = training_svc.resume_training("run")  # every caller sees the run as resumable
        start.wait()
        try:
            job = create_job(
                spec.kind, spec.title, spec.params.to_json(), spec.resource, os.getpid(), studio.paths.dir("logs")
            )
            won.append(job.id)
        except ResourceBusy as exc:
            refused.append(str(exc))
        finally:
            close_database()

    threads = [threading.Thread(target=resume) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and len(refused) == 5
    assert all(f"already being run by job {won[0]}" in m and "\n" not in m for m in refused)
    assert Training.get_by_id(paused_run.id).job_id == won[0]
    # the refused claims left no orphan job rows behind (their creation was rolled back)
    assert Job.select().where(Job.status == "queued").count() == 1


def test_second_resume_from_the_cli_names_the_running_job(
    studio, paused_run: Training, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = training_svc.resume_training("run")
    first = create_job(
        spec.kind, spec.title, spec.params.to_json(), spec.resource, os.getpid(), studio.paths.dir("logs")
    )
    code = main(["train", "--resume", "run"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"already being run by job {first.id} (queued: Resume run)" in err and err.count("\n") == 1
    assert Job.select().where(Job.kind == "train").count() == 2  # the cancelled one and the queued resume
    # once the first resume ends, the run can be claimed again
    finish_job(first.id, "cancelled", error="cancelled")
    again = create_job(
        spec.kind, spec.title, spec.params.to_json(), spec.resource, os.getpid(), studio.paths.dir("logs")
    )
    assert Training.get_by_id(paused_run.id).job_id == again.id


def test_a_new_row_is_claimed_by_its_first_job(studio, tmp_path: Path) -> None:
    aset = random_activations(studio, rows=512)
    spec = training_svc.new_training(studio, aset.id, name="fresh", **TRAIN)
    job = create_job(spec.kind, spec.title, spec.params.to_json(), spec.resource, os.getpid(), studio.paths.dir("logs"))
    assert Training.get(Training.name == "fresh").job_id == job.id
