"""Run a job from the CLI: submit through the shared runner, draw a progress bar on stderr, wait."""

from __future__ import annotations

import sys
from typing import Any

from mistudio_tui.cli.output import CliError
from mistudio_tui.db.models import Job
from mistudio_tui.db.states import JobState
from mistudio_tui.display import printable
from mistudio_tui.jobs import protocol as p
from mistudio_tui.jobs.interface import EventType, JobEvent, Runner
from mistudio_tui.jobs.params import JobParams
from mistudio_tui.studio import Studio


def run_job(
    studio: Studio,
    kind: str,
    params: JobParams | dict[str, Any],
    title: str = "",
    resource: Any = None,
    quiet: bool = False,
    tracker: Any = None,
) -> Job:
    """Submit, show progress (unless quiet or not a terminal), wait; CliError unless it completed.

    A `tracker` (services.tracking) hears the job's events from before it starts and is finished with its state."""
    runner = studio.runner
    if tracker is not None:
        runner.add_listener(tracker.listener)
    try:
        job = _submit_and_wait(runner, kind, params, title, resource, quiet, tracker)
    finally:
        if tracker is not None:
            runner.remove_listener(tracker.listener)
            tracker.finish(Job.get_by_id(tracker.job_id).status if tracker.job_id is not None else "failed")
    if job.status != "completed":
        detail = job.error or job.status
        raise CliError(f"{title or kind} {job.status}: {detail} (log: {job.log_path})")
    return job


def _submit_and_wait(
    runner: Runner,
    kind: str,
    params: JobParams | dict[str, Any],
    title: str,
    resource: Any,
    quiet: bool,
    tracker: Any,
) -> Job:
    job = runner.submit(kind, params, title=title, resource=resource)
    if tracker is not None:
        tracker.job_id = job.id
    try:
        job = _wait_with_bar(runner, job.id, title or kind, quiet)
    except KeyboardInterrupt:
        print("\nmistudio: cancelling (press Ctrl-C again to stop waiting)…", file=sys.stderr)
        runner.cancel(job.id)
        try:
            job = runner.wait(job.id)
        except KeyboardInterrupt:
            raise CliError("interrupted", code=130) from None
    return job


def _wait_with_bar(runner: Runner, job_id: int, title: str, quiet: bool) -> Job:
    from rich.console import Console

    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        return runner.wait(job_id)

    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    latest: dict[str, p.Progress] = {}

    def listener(event: JobEvent) -> None:
        if event.job_id == job_id and event.type is EventType.PROGRESS:
            latest["progress"] = event.data
        elif event.job_id == job_id and event.type is EventType.LOG:
            console.log(printable(str(event.data)))  # log lines may quote a server's or a model's text

    runner.add_listener(listener)
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task(title, total=None, status="")
            while True:
                job = runner.wait(job_id, timeout=0.2)
                prog = latest.get("progress")
                if prog is not None:
                    bar.update(task, completed=prog.done, total=prog.total, status=prog.text)
                if job.status in JobState.TERMINAL:
                    return job
    finally:
        runner.remove_listener(listener)
