"""The worker process: redirect output to the job's log, run the job's entry point, report over the pipe.

Imported in the spawned child, so it must stay light: no textual, and torch only via the job's entry module.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import signal
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any

from mistudio_tui.jobs import protocol as p
from mistudio_tui.jobs.context import JobCancelled, JobContext
from mistudio_tui.jobs.params import JobParams
from mistudio_tui.process_io import redirect_output


class ParentGone(JobCancelled):
    """The runner's end of the pipe is closed: treat it like a cancel so the job checkpoints and stops."""


class PipeContext(JobContext):
    """JobContext that sends messages to the runner; log lines also go to the job's log file (stdout)."""

    def __init__(self, conn: Connection, cancel_event: Any, parent_pid: int, interval: float = 0.25) -> None:
        super().__init__(interval=interval, is_cancelled=self._check)
        self._conn = conn
        self._cancel_event = cancel_event
        self._parent_pid = parent_pid
        self._broken = False
        self.terminated = False  # SIGTERM arrived (e.g. `mistudio jobs cancel` from another shell)

    def _check(self) -> bool:
        return self.terminated or self._broken or self._cancel_event.is_set() or os.getppid() != self._parent_pid

    def on_sigterm(self, signum: int, frame: Any) -> None:
        """The first SIGTERM is a cancel (the job checkpoints and stops at its next check); a second one, or one
        after a cancel already asked the job to stop, ends the process as SIGTERM always did."""
        if self.terminated or self._cancel_event.is_set():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        self.terminated = True

    def log(self, text: str, level: str = "info") -> None:
        log_line(f"[{level}] {text}")
        super().log(text, level)

    def check_cancelled(self) -> None:
        if self._broken or os.getppid() != self._parent_pid:
            raise ParentGone()
        super().check_cancelled()

    def _send(self, message: p.Message) -> None:
        if self._broken:
            return
        try:
            self._conn.send(message)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            self._broken = True


def log_line(text: str, stream: Any = None) -> None:
    """Write a line to the job's log; a log that cannot be written (a full disk) never ends the job."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=stream or sys.stdout, flush=True)


def error_message(exc: BaseException) -> str:
    """The one line a failed job reports."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" writing {exc.filename}" if exc.filename else ""
        return f"no space left on device{where}; free some space and resume or run the job again"
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, (ValueError, FileNotFoundError, PermissionError)):
        message = str(exc) or message
    return message.splitlines()[0] if message else "error"


def resolve_entry(entry: str) -> Any:
    """'package.module:function' -> the function."""
    module_name, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def worker_main(
    job_id: int,
    entry: str,
    params_type: type[JobParams] | None,
    params: dict[str, Any],
    log_path: str,
    conn: Connection,
    cancel_event: Any,
    parent_pid: int,
    env: dict[str, str],
) -> None:
    """Entry point of the spawned worker process."""
    redirect_output(log_path)
    os.environ.update(env)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # tqdm bars of transformers/hub/datasets would fill the log tail; jobs report progress over the pipe instead
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    ctx = PipeContext(conn, cancel_event, parent_pid)
    signal.signal(signal.SIGTERM, ctx.on_sigterm)
    log_line(f"[job {job_id}] {entry} pid={os.getpid()}")
    ctx._send(p.Started(pid=os.getpid(), device=str(params.get("device") or "cpu")))
    code = 0
    try:
        # A kind with typed parameters gets an instance; a row that no longer fits fails here, naming the field.
        value: JobParams | dict[str, Any] = params_type.from_json(params) if params_type else params
        func = resolve_entry(entry)
        result = func(value, ctx) or {}
        ctx.flush()
        ctx._send(p.Result(result))
    except JobCancelled as exc:
        ctx.flush()
        data = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        log_line("[job] cancelled")
        ctx._send(p.Cancelled(data))
    except BaseException as exc:  # report everything, including SystemExit/KeyboardInterrupt
        tb = traceback.format_exc()
        log_line(tb, sys.stderr)
        with contextlib.suppress(Exception):
            ctx.flush()
        ctx._send(p.Error(message=error_message(exc), traceback=tb))
        code = 1
    finally:
        with contextlib.suppress(OSError):
            conn.close()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    if code:
        os._exit(code)
