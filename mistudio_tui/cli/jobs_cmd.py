"""`mistudio jobs list|show|log|cancel|selftest`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mistudio_tui.cli.jobrun import run_job
from mistudio_tui.cli.output import CliError, emit, format_table, row_dict
from mistudio_tui.db.jobs import progress_label, recent_jobs, shown_status
from mistudio_tui.db.models import Job
from mistudio_tui.db.states import JobState
from mistudio_tui.jobs.kinds.diagnostics import CountParams
from mistudio_tui.jobs.runner import tail_file
from mistudio_tui.studio import Studio

COLUMNS = [
    ("id", "ID"),
    ("kind", "KIND"),
    ("title", "TITLE"),
    ("status", "STATUS"),
    ("progress", "PROGRESS"),
    ("device", "DEVICE"),
    ("error", "ERROR"),
]


def job_summary(job: Job) -> dict[str, Any]:
    data = row_dict(job, ["id", "kind", "title", "status", "device", "pid", "error", "created_at", "finished_at"])
    data["state"] = job.status  # the state machine's (a paused training's job was cancelled)
    data["status"] = shown_status(job)
    data["progress"] = progress_label(job)
    return data


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    jobs = sub.add_parser("jobs", help="background jobs", parents=[common])
    verbs = jobs.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser("list", help="recent jobs", parents=[common])
    p.add_argument("--limit", type=int, default=30)
    p.set_defaults(func=cmd_list)
    p = verbs.add_parser("show", help="one job", parents=[common])
    p.add_argument("job", type=int)
    p.set_defaults(func=cmd_show)
    p = verbs.add_parser("log", help="the tail of a job's log", parents=[common])
    p.add_argument("job", type=int)
    p.add_argument("-n", "--lines", type=int, default=40)
    p.set_defaults(func=cmd_log)
    p = verbs.add_parser("cancel", help="cancel a job", parents=[common])
    p.add_argument("job", type=int)
    p.set_defaults(func=cmd_cancel)
    p = verbs.add_parser("selftest", help="run a diagnostic job through a real worker process", parents=[common])
    p.add_argument("--steps", type=int, default=20)
    p.set_defaults(func=cmd_selftest)


def _job(job_id: int) -> Job:
    job = Job.get_or_none(Job.id == job_id)
    if job is None:
        raise CliError(f"no job with id {job_id}")
    return job


def cmd_list(args: argparse.Namespace, studio: Studio) -> None:
    rows = [job_summary(j) for j in recent_jobs(args.limit)][: args.limit]
    emit(args.json, rows, lambda: format_table(rows, COLUMNS))


def cmd_show(args: argparse.Namespace, studio: Studio) -> None:
    job = _job(args.job)
    data = {**row_dict(job), "state": job.status, "status": shown_status(job)}
    emit(args.json, data, lambda: "\n".join(f"{k:>15}: {v}" for k, v in data.items() if k != "traceback"))


def cmd_log(args: argparse.Namespace, studio: Studio) -> None:
    job = _job(args.job)
    lines = tail_file(Path(job.log_path), args.lines) if job.log_path else []
    emit(args.json, {"id": job.id, "log_path": job.log_path, "lines": lines}, lambda: "\n".join(lines))


def cmd_cancel(args: argparse.Namespace, studio: Studio) -> None:
    job = _job(args.job)
    if job.status not in JobState.ACTIVE:
        raise CliError(f"job {job.id} is {job.status}, not running")
    studio.runner.cancel(job.id)
    emit(args.json, {"id": job.id, "cancel_requested": True}, f"cancel requested for job {job.id}")


def cmd_selftest(args: argparse.Namespace, studio: Studio) -> None:
    job = run_job(studio, "diag.count", CountParams(steps=args.steps, delay=0.05), title="selftest")
    emit(
        args.json,
        {"id": job.id, "status": job.status, "result": job.result},
        f"job {job.id} {job.status}: {job.result}",
    )
