"""The job runner shared by the TUI and the CLI: one spawned worker process per job, one pipe each.

A single pump thread waits on every worker's pipe and process sentinel, turns messages into database
writes (it is the only writer of job progress) and into `JobEvent`s for listeners (the UI, the CLI's bar).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mistudio_tui.config import Paths
from mistudio_tui.db import jobs as job_queries
from mistudio_tui.db.connection import is_disk_full
from mistudio_tui.db.models import Job, database
from mistudio_tui.db.states import JobState
from mistudio_tui.jobs import protocol as p
from mistudio_tui.jobs.interface import EventType, JobEvent, Listener
from mistudio_tui.jobs.params import JobParams
from mistudio_tui.jobs.registry import JobKind, get_kind
from mistudio_tui.supervisor import CHILD_END, Child, describe_exit, new_event, wait_any

TERMINAL_STATES = JobState.TERMINAL  # kept for callers written before JobState
PROGRESS_DB_INTERVAL = 0.3
FINAL_WRITE_RETRY_S = 1.0  # how often a final state the database refused (disk full) is written again


@dataclass
class _Running:
    job_id: int
    kind: JobKind
    child: Child
    cancel_event: Any
    started: float = field(default_factory=time.monotonic)
    outcome: p.Message | None = None
    cancel_requested: bool = False
    last_db_progress: float = 0.0
    pending_progress: p.Progress | None = None


class JobRunner:
    """Starts, tracks and cancels jobs; `max_parallel` run at once, the rest wait in `queued`."""

    def __init__(self, paths: Paths, max_parallel: int | None = None, grace_s: float | None = None) -> None:
        self.paths = paths
        self.max_parallel = max_parallel or int(os.environ.get("MISTUDIO_MAX_JOBS", "2"))
        self.grace_s = grace_s
        self._running: dict[int, _Running] = {}
        self._queue: list[int] = []
        # Final states the database could not take yet (a full disk): job id -> (error, exit code). `wait` reports
        # them, and the pump writes them again until they land, so a job never stays `running` for its waiter.
        self._unrecorded: dict[int, tuple[str, int | None]] = {}
        self._last_final_retry = 0.0
        self._commands: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._pump, name="mistudio-job-runner", daemon=True)
        self._thread.start()

    # --- public API ------------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def submit(
        self,
        kind: str,
        params: JobParams | dict[str, Any],
        title: str = "",
        resource: Any = None,
    ) -> Job:
        """Create a queued job (linked to `resource`, a model row it creates or updates) and schedule it."""
        spec = get_kind(kind)
        job = job_queries.create_job(
            kind=spec.name,
            title=title or spec.title,
            params=spec.row_params(params),
            resource=resource,
            runner_pid=os.getpid(),
            log_dir=self.paths.dir("logs"),
        )
        self._commands.put(("start", job.id))
        return job

    def cancel(self, job_id: int) -> None:
        """Ask a job to stop: queued jobs end at once; running ones get the cancel event, then a terminate."""
        self._commands.put(("cancel", job_id))

    def running_ids(self) -> list[int]:
        with self._lock:
            return list(self._running)

    def busy(self) -> bool:
        """True while any job of this runner is queued or running."""
        with self._lock:
            return bool(self._running or self._queue) or not self._commands.empty()

    def unrecorded(self, job_id: int) -> tuple[str, int | None] | None:
        """(error, exit code) of a job that ended `failed` but whose end the database has not taken yet."""
        with self._lock:
            return self._unrecorded.get(job_id)

    def wait(self, job_id: int, timeout: float | None = None) -> Job:
        """Block until `job_id` reaches a terminal state (or the timeout passes); return its row."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = Job.get_by_id(job_id)
            if job.status in JobState.TERMINAL:
                return job
            pending = self.unrecorded(job_id)
            if pending is not None:  # ended, but the database is full: report the end it will get
                job.status, job.error = "failed", pending[0]
                return job
            if deadline is not None and time.monotonic() > deadline:
                return job
            with self._idle:
                self._idle.wait(0.1)

    def shutdown(self, cancel: bool = True, timeout: float = 30.0) -> None:
        """Cancel (or wait for) this runner's jobs, then stop the pump thread."""
        if cancel:
            with self._lock:
                ids = list(self._running) + list(self._queue)
            for job_id in ids:
                self.cancel(job_id)
        deadline = time.monotonic() + timeout
        while self.busy() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=5)
        self._retry_unrecorded(force=True)
        for job_id, (error, _) in list(self._unrecorded.items()):
            print(f"mistudio: the end of job {job_id} could not be saved ({error})", file=sys.stderr)

    # --- the pump thread -------------------------------------------------------------------------
    def _pump(self) -> None:
        while not self._stop.is_set():
            try:
                self._handle_commands()
                self._start_queued()
                self._wait_once(0.1)
                self._enforce_cancel_deadlines()
                self._retry_unrecorded()
            except Exception as exc:  # never let the pump die: record and continue
                print(f"mistudio job runner: {type(exc).__name__}: {exc}", file=sys.stderr)
                time.sleep(0.2)
        database.close()

    def _handle_commands(self) -> None:
        while True:
            try:
                command, job_id = self._commands.get_nowait()
            except queue.Empty:
                return
            if command == "start":
                with self._lock:
                    self._queue.append(job_id)
            elif command == "cancel":
                self._cancel(job_id)

    def _cancel(self, job_id: int) -> None:
        with self._lock:
            if job_id in self._queue:
                self._queue.remove(job_id)
                queued = True
            else:
                queued = False
            run = self._running.get(job_id)
        if queued:
            self._finish(job_id, get_kind(Job.get_by_id(job_id).kind), "cancelled", error="cancelled before start")
            return
        if run is None:
            job = Job.get_or_none(Job.id == job_id)
            if job is not None and job.status in JobState.ACTIVE and job.runner_pid != os.getpid():
                _signal_foreign_job(job)
            return
        if not run.cancel_requested:
            run.cancel_requested = True
            run.cancel_event.set()
            run.child.stop_after(self.grace_s if self.grace_s is not None else run.kind.cancel_grace_s)
            job_queries.set_progress_text(job_id, "cancelling…")
            self._emit(JobEvent(job_id, EventType.STATE, "cancelling"))

    def _start_queued(self) -> None:
        while True:
            with self._lock:
                if not self._queue or len(self._running) >= self.max_parallel:
                    return
                job_id = self._queue.pop(0)
            self._spawn(job_id)

    def _spawn(self, job_id: int) -> None:
        job = Job.get_by_id(job_id)
        kind = get_kind(job.kind)
        cancel_event = new_event()
        env = {"MISTUDIO_HOME": str(self.paths.home)}
        args = (job_id, kind.entry, kind.params, job.params, job.log_path, CHILD_END, cancel_event, os.getpid(), env)
        try:
            kind.before_start(job)
            child = Child.spawn(_worker_entry, args, name=f"mistudio-job-{job_id}")
        except Exception as exc:
            self._finish(job_id, kind, "failed", error=f"could not start the worker: {exc}")
            return
        with self._lock:  # tracked before any write, so a failing one (a full disk) cannot orphan the worker
            self._running[job_id] = _Running(job_id, kind, child, cancel_event)
        job_queries.mark_running(job_id, child.pid)
        self._emit(JobEvent(job_id, EventType.STATE, "running", {"pid": child.pid}))

    def _wait_once(self, timeout: float) -> None:
        with self._lock:
            runs = list(self._running.values())
        if not runs:
            time.sleep(timeout)
            return
        by_child = {run.child: run for run in runs}
        readable, exited = wait_any(by_child, timeout)
        for child in readable:
            self._drain(by_child[child])
        ended = [by_child[child] for child in exited]
        for run in runs:
            self._flush_progress(run, force=False)
        for run in ended:
            try:
                self._drain(run)
            except Exception as exc:  # e.g. metric rows on a full disk: still record how the job ended
                print(f"mistudio job runner: job {run.job_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
            run.child.join(timeout=1)
            self._complete(run)

    def _drain(self, run: _Running) -> None:
        """Read every message already in the pipe."""
        metric_rows: list[dict[str, Any]] = []
        try:
            for message in run.child.messages():
                if isinstance(message, p.MetricRows):
                    metric_rows.extend(message.rows)
                else:
                    self._handle_message(run, message)
        except Exception as exc:  # an unpicklable or garbled message: record it, keep the job
            run.child.eof = True
            run.outcome = run.outcome or p.Error(f"garbled message from the worker: {exc}")
        if metric_rows:
            run.kind.on_metrics(Job.get_by_id(run.job_id), metric_rows)
            self._emit(JobEvent(run.job_id, EventType.METRICS, "running", metric_rows))

    def _handle_message(self, run: _Running, message: p.Message) -> None:
        if isinstance(message, p.Progress):
            run.pending_progress = message
            self._flush_progress(run, force=False)
        elif isinstance(message, p.Started):
            job_queries.set_device(run.job_id, message.device)
            self._emit(JobEvent(run.job_id, EventType.STATE, "running", {"device": message.device}))
        elif isinstance(message, p.LogLine):
            self._emit(JobEvent(run.job_id, EventType.LOG, "running", message.text))
        elif isinstance(message, p.Artifact):
            run.kind.on_artifact(Job.get_by_id(run.job_id), message)
            self._emit(JobEvent(run.job_id, EventType.ARTIFACT, "running", message))
        elif isinstance(message, (p.Result, p.Error, p.Cancelled)):
            run.outcome = message

    def _flush_progress(self, run: _Running, force: bool) -> None:
        prog = run.pending_progress
        if prog is None:
            return
        now = time.monotonic()
        if not force and now - run.last_db_progress < PROGRESS_DB_INTERVAL:
            return
        run.pending_progress = None
        run.last_db_progress = now
        job_queries.set_progress(run.job_id, prog.done, prog.total, prog.text, prog.unit)
        self._emit(JobEvent(run.job_id, EventType.PROGRESS, "running", prog))

    def _enforce_cancel_deadlines(self) -> None:
        now = time.monotonic()
        with self._lock:
            runs = list(self._running.values())
        for run in runs:
            run.child.enforce_stop(now)

    def _complete(self, run: _Running) -> None:
        """The worker process ended: decide the final state from its last message and exit code."""
        with contextlib.suppress(Exception):  # a progress write that fails must not keep the job running
            self._flush_progress(run, force=True)
        code = run.child.exitcode
        outcome = run.outcome
        error = traceback = None
        result: dict[str, Any] | None = None
        if isinstance(outcome, p.Result):
            status, result = "completed", outcome.data
        elif isinstance(outcome, p.Cancelled):
            status, result = "cancelled", outcome.data
        elif isinstance(outcome, p.Error):
            status, error, traceback = "failed", outcome.message, outcome.traceback
        elif run.cancel_requested:
            status, error = "cancelled", "cancelled (the worker was stopped)"
        else:
            status, error = "failed", _exit_error(code, Job.get_by_id(run.job_id).log_path)
        with self._lock:
            self._running.pop(run.job_id, None)
        run.child.close()
        self._finish(run.job_id, run.kind, status, result=result, error=error, traceback=traceback, code=code)

    def _finish(
        self,
        job_id: int,
        kind: JobKind,
        status: str,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        traceback: str | None = None,
        code: int | None = None,
    ) -> None:
        for attempt in range(3):
            try:  # one transaction: nobody sees the terminal state before the finisher's rows exist
                with database.atomic():
                    job_queries.finish_job(job_id, status, result=result, error=error, traceback=traceback, code=code)
                    kind.on_finish(Job.get_by_id(job_id), status, result or {})
                break
            except Exception as exc:  # a failing finisher or a full disk must not leave the job running
                if attempt < 2 and is_disk_full(exc):
                    time.sleep(0.1 * (attempt + 1))
                    continue
                status, error = "failed", _final_write_error(exc, error)
                if not _write_failed(job_id, error, code):
                    with self._lock:
                        self._unrecorded[job_id] = (error, code)
                break
        self._emit(JobEvent(job_id, EventType.STATE, status, {"error": error}))
        with self._idle:
            self._idle.notify_all()

    def _retry_unrecorded(self, force: bool = False) -> None:
        """Write again the final states the database refused; those that land leave `_unrecorded`."""
        now = time.monotonic()
        if not self._unrecorded or (not force and now - self._last_final_retry < FINAL_WRITE_RETRY_S):
            return
        self._last_final_retry = now
        with self._lock:
            pending = list(self._unrecorded.items())
        for job_id, (error, code) in pending:
            if _write_failed(job_id, error, code):
                with self._lock:
                    self._unrecorded.pop(job_id, None)

    def _emit(self, event: JobEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception as exc:
                print(f"mistudio job listener failed: {exc}", file=sys.stderr)


def _final_write_error(exc: Exception, error: str | None) -> str:
    """The error a job ends with when its final state (with its result) could not be saved."""
    if is_disk_full(exc):
        reason = error or "its result could not be saved"
        return f"no space left on device: {reason}; free some space (the job's end is saved once it can be)"
    return f"saving the result failed: {exc}"


def _write_failed(job_id: int, error: str, code: int | None) -> bool:
    """Record `failed` with `error` (a small write that may land where the full one did not); False if it fails."""
    try:
        job_queries.finish_job(job_id, "failed", error=error, code=code)
    except Exception:
        return False
    return True


def _worker_entry(*args: Any) -> None:
    # Imported lazily so the child imports only the worker module (never the UI).
    from mistudio_tui.jobs.worker import worker_main

    worker_main(*args)


def _signal_foreign_job(job: Job) -> None:
    """Cancel a job run by another miStudio process (e.g. a CLI run) by signalling its worker."""
    if job.pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(job.pid, signal.SIGTERM)


def _exit_error(code: int | None, log_path: str | None) -> str:
    """The error of a worker that ended without reporting a result: how it exited, then its last log line."""
    reason = describe_exit(code)
    tail = last_log_line(log_path)
    return f"{reason}; last log line: {tail}" if tail else reason


def last_log_line(log_path: str | None) -> str:
    """The last non-empty line of a log file, or ''."""
    if not log_path or not Path(log_path).exists():
        return ""
    lines = tail_file(Path(log_path), 5)
    return lines[-1][:200] if lines else ""


def tail_file(path: Path, n: int = 20, max_bytes: int = 64_000) -> list[str]:
    """The last `n` non-empty lines of a text file, reading at most `max_bytes` from its end."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = [line for line in data.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-n:]
