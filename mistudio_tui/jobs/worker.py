"""The worker process: redirect output to the job's log, run the job's entry point, report over the pipe.

Imported in the spawned child, so it must stay light: no textual, and torch only via the job's entry module.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any

from mistudio_tui.jobs import protocol as p
from mistudio_tui.jobs.context import JobCancelled, JobContext
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

    def _check(self) -> bool:
        return self._broken or self._cancel_event.is_set() or os.getppid() != self._parent_pid

    def log(self, text: str, level: str = "info") -> None:
        print(f"[{level}] {text}", flush=True)
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


def resolve_entry(entry: str) -> Any:
    """'package.module:function' -> the function."""
    module_name, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def worker_main(
    job_id: int,
    entry: str,
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
    print(f"[job {job_id}] {entry} pid={os.getpid()}", flush=True)
    ctx._send(p.Started(pid=os.getpid(), device=str(params.get("device") or "cpu")))
    code = 0
    try:
        func = resolve_entry(entry)
        result = func(params, ctx) or {}
        ctx.flush()
        ctx._send(p.Result(result))
    except JobCancelled as exc:
        ctx.flush()
        data = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        print("[job] cancelled", flush=True)
        ctx._send(p.Cancelled(data))
    except BaseException as exc:  # report everything, including SystemExit/KeyboardInterrupt
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, (ValueError, FileNotFoundError, PermissionError)):
            message = str(exc) or message
        with contextlib.suppress(Exception):
            ctx.flush()
        ctx._send(p.Error(message=message.splitlines()[0] if message else "error", traceback=tb))
        code = 1
    finally:
        with contextlib.suppress(OSError):
            conn.close()
        sys.stdout.flush()
        sys.stderr.flush()
    if code:
        os._exit(code)
