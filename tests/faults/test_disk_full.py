"""A full disk (ENOSPC injected): in the worker, in the runner's final write, and at start-up. The job ends
`failed` naming it, the CLI exits with one line, and the end is saved once the disk has room again."""

from __future__ import annotations

import time

import pytest
from peewee import OperationalError

from mistudio_tui.cli.main import main
from mistudio_tui.db import jobs as job_queries
from mistudio_tui.db.models import Job

FULL = "database or disk is full"  # what SQLite says for SQLITE_FULL


@pytest.fixture
def full_database(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """While `state["full"]`, every final-state write fails as SQLite does on a full disk."""
    state = {"full": True}
    real = job_queries.finish_job

    def finish_job(*args, **kwargs):
        if state["full"]:
            raise OperationalError(FULL)
        return real(*args, **kwargs)

    monkeypatch.setattr(job_queries, "finish_job", finish_job)
    return state


def test_enospc_in_the_worker_fails_the_job_naming_it(studio) -> None:
    params = {"steps": 20, "delay": 0.01, "disk_full_at": 2, "path": "/data/saes/1-run/step-3.pt"}
    job = studio.runner.submit("diag.count", params)
    job = studio.runner.wait(job.id, timeout=60)
    assert job.status == "failed"
    assert job.error == (
        "no space left on device writing /data/saes/1-run/step-3.pt; free some space and resume or run the job again"
    )
    assert Job.get_by_id(job.id).status == "failed"  # recorded, not only reported


def test_final_write_on_a_full_disk_ends_the_job_and_lands_later(studio, full_database) -> None:
    job = studio.runner.submit("diag.count", {"steps": 3, "delay": 0.01})
    ended = studio.runner.wait(job.id, timeout=60)
    assert ended.status == "failed" and ended.error.startswith("no space left on device"), ended.error
    assert Job.get_by_id(job.id).status == "running"  # the database could not take it yet...
    full_database["full"] = False  # ...until some space is freed
    deadline = time.monotonic() + 10
    while Job.get_by_id(job.id).status == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    row = Job.get_by_id(job.id)
    assert row.status == "failed" and row.error == ended.error
    assert studio.runner.unrecorded(job.id) is None


def test_cli_exits_with_one_line_when_the_final_write_fails(full_database, capsys) -> None:
    start = time.monotonic()
    code = main(["jobs", "selftest", "--steps", "2"])
    err = capsys.readouterr().err
    assert code == 1 and time.monotonic() - start < 60
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0].startswith("mistudio: error: selftest failed: no space left on device"), err
    # the runner says, when it stops, that the end was never saved (the disk stayed full)
    assert len(lines) == 2 and "could not be saved" in lines[1]


def test_start_up_on_a_full_disk_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys, mistudio_home) -> None:
    import mistudio_tui.studio as studio_module
    from mistudio_tui.app import run_app

    def full() -> list[int]:
        raise OperationalError(FULL)

    monkeypatch.setattr(studio_module, "recover_interrupted", full)
    assert main(["jobs", "list"]) == 1
    err = capsys.readouterr().err
    expected = f"no space left on device for the studio in {mistudio_home}: free some space and try again"
    assert err == f"mistudio: error: {expected}\n"
    assert run_app() == 1
    assert capsys.readouterr().err == err
