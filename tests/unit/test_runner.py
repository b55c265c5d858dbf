"""The job runner with real spawned worker processes: results, errors, crashes, cancel, concurrency."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from mistudio_tui.db.jobs import recover_interrupted
from mistudio_tui.db.models import Job
from mistudio_tui.jobs.runner import JobRunner


def collect(runner: JobRunner) -> list:
    events: list = []
    runner.add_listener(events.append)
    return events


def test_job_completes_with_result_progress_and_metrics(studio):
    events = collect(studio.runner)
    job = studio.runner.submit("diag.count", {"steps": 12, "delay": 0.02, "tag": 7})
    done = studio.runner.wait(job.id, timeout=60)
    assert done.status == "completed"
    assert done.result == {"steps": 12, "tag": 7.0}
    assert done.pid and done.pid != os.getpid()
    assert done.device == "cpu"
    assert done.progress_done == 12 and done.progress_total == 12
    rows = [r for e in events if e.type == "metrics" and e.job_id == job.id for r in e.data]
    assert [r["step"] for r in rows] == list(range(12))
    assert [r["loss"] for r in rows] == [7.0 + i for i in range(12)]
    states = [e.status for e in events if e.type == "state" and e.job_id == job.id]
    assert states[0] == "running" and states[-1] == "completed"


def test_worker_output_goes_to_the_log_file_not_the_terminal(studio, capfd):
    job = studio.runner.submit("diag.count", {"steps": 2, "delay": 0})
    done = studio.runner.wait(job.id, timeout=60)
    out, err = capfd.readouterr()
    assert "counted 2" not in out + err
    with open(done.log_path) as fh:
        assert "counted 2" in fh.read()


def test_worker_raising_is_failed_with_message_and_traceback(studio):
    job = studio.runner.submit("diag.count", {"steps": 10, "delay": 0.01, "fail_at": 3})
    done = studio.runner.wait(job.id, timeout=60)
    assert done.status == "failed"
    assert done.error == "diagnostic failure at step 3"
    assert "Traceback" in done.traceback and "ValueError" in done.traceback
    assert done.exit_code == 1


def test_worker_killed_by_sigkill_is_failed_with_the_signal_named(studio):
    job = studio.runner.submit("diag.count", {"steps": 100, "delay": 0.01, "crash_at": 2})
    done = studio.runner.wait(job.id, timeout=60)
    assert done.status == "failed"
    assert "SIGKILL" in done.error
    assert done.exit_code == -9


def test_cancel_during_work(studio):
    job = studio.runner.submit("diag.count", {"steps": 10_000, "delay": 0.01})
    deadline = time.monotonic() + 30
    while Job.get_by_id(job.id).progress_done < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    studio.runner.cancel(job.id)
    done = studio.runner.wait(job.id, timeout=30)
    assert done.status == "cancelled"
    assert 3 <= done.progress_done < 10_000


def test_unresponsive_worker_is_terminated_then_killed_after_grace(mistudio_home):
    from mistudio_tui.studio import Studio

    studio = Studio(mistudio_home)
    try:
        runner = JobRunner(studio.paths, grace_s=0.5)
        job = runner.submit("diag.hang", {"seconds": 120, "ignore_term": True})
        while Job.get_by_id(job.id).status != "running":
            time.sleep(0.05)
        time.sleep(1.0)  # let it install its SIGTERM handler
        start = time.monotonic()
        runner.cancel(job.id)
        done = runner.wait(job.id, timeout=30)
        assert done.status == "cancelled"
        assert done.exit_code == -9  # SIGTERM was ignored, so it had to be killed
        assert time.monotonic() - start < 15
        runner.shutdown()
    finally:
        studio.close()


def test_three_jobs_at_once_lose_and_misattribute_nothing(studio):
    events = collect(studio.runner)
    jobs = [studio.runner.submit("diag.count", {"steps": 60, "delay": 0.005, "tag": 1000 * (i + 1)}) for i in range(3)]
    running_together = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = [Job.get_by_id(j.id).status for j in jobs]
        if states.count("running") == 3:
            running_together = True
        if all(s == "completed" for s in states):
            break
        time.sleep(0.02)
    assert running_together
    for i, job in enumerate(jobs):
        done = studio.runner.wait(job.id, timeout=60)
        assert done.status == "completed"
        rows = [r for e in events if e.type == "metrics" and e.job_id == job.id for r in e.data]
        assert [r["step"] for r in rows] == list(range(60))
        assert all(r["loss"] == 1000 * (i + 1) + r["step"] for r in rows)
        progress = [e.data.done for e in events if e.type == "progress" and e.job_id == job.id]
        assert progress and progress[-1] == 60 and progress == sorted(progress)


def test_jobs_beyond_max_parallel_wait_in_queue(mistudio_home):
    from mistudio_tui.studio import Studio

    studio = Studio(mistudio_home, max_parallel=1)
    try:
        first = studio.runner.submit("diag.count", {"steps": 30, "delay": 0.02})
        second = studio.runner.submit("diag.count", {"steps": 2, "delay": 0})
        while Job.get_by_id(first.id).status != "running":
            time.sleep(0.02)
        assert Job.get_by_id(second.id).status == "queued"
        assert studio.runner.wait(second.id, timeout=60).status == "completed"
        assert Job.get_by_id(first.id).finished_at <= Job.get_by_id(second.id).started_at
    finally:
        studio.close()


def test_cancel_queued_job_never_starts(mistudio_home):
    from mistudio_tui.studio import Studio

    studio = Studio(mistudio_home, max_parallel=1)
    try:
        first = studio.runner.submit("diag.count", {"steps": 200, "delay": 0.01})
        second = studio.runner.submit("diag.count", {"steps": 2})
        studio.runner.cancel(second.id)
        done = studio.runner.wait(second.id, timeout=30)
        assert done.status == "cancelled" and done.pid is None
        studio.runner.cancel(first.id)
    finally:
        studio.close()


def test_running_job_whose_process_vanished_becomes_interrupted(studio):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    ghost = Job.create(kind="diag.count", status="running", pid=proc.pid, runner_pid=proc.pid)
    alive = Job.create(kind="diag.count", status="running", pid=os.getpid(), runner_pid=os.getpid())
    lost = recover_interrupted()
    assert lost == [ghost.id]
    assert Job.get_by_id(ghost.id).status == "interrupted"
    assert Job.get_by_id(alive.id).status == "running"


@pytest.mark.parametrize("kind", ["diag.nope"])
def test_unknown_kind_is_a_clear_error(studio, kind):
    with pytest.raises(ValueError, match=r"unknown job kind 'diag\.nope'"):
        studio.runner.submit(kind, {})


def test_terminal_state_is_visible_only_after_the_finisher_ran(studio):
    import dataclasses

    from mistudio_tui.jobs.registry import get_kind, register

    seen: list[str] = []

    def slow_finisher(job: Job, status: str, result: dict) -> None:
        time.sleep(0.5)
        seen.append(status)

    register(dataclasses.replace(get_kind("diag.count"), name="diag.slow-finish", finish=slow_finisher))
    job = studio.runner.submit("diag.slow-finish", {"steps": 1, "delay": 0})
    done = studio.runner.wait(job.id, timeout=60)
    assert done.status == "completed"
    assert seen == ["completed"]  # a waiter never returns before the finisher's rows are written
