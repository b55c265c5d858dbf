"""Diagnostic jobs: exercise the runner end to end (`mistudio jobs selftest`, tests, benchmarks)."""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from typing import Any

from mistudio_tui.jobs import protocol as p
from mistudio_tui.jobs.context import JobContext
from mistudio_tui.jobs.kinds.diagnostics import CountParams, FloodParams, HangParams


def count(params: CountParams, ctx: JobContext) -> dict[str, Any]:
    """Count to `steps`, sleeping `delay` s per step, sending a metric row per step."""
    steps, delay, tag = params.steps, params.delay, params.tag
    ctx.started(params.device)
    for step in range(steps):
        ctx.check_cancelled()
        ctx.metric(step, loss=tag + step, tokens=step)
        ctx.progress(step + 1, steps, text=f"step {step + 1}/{steps}", unit="steps")
        time.sleep(delay)
        if params.fail_at == step:
            raise ValueError(f"diagnostic failure at step {step}")
        if params.disk_full_at == step:  # the disk fills: the log and the job's next file cannot be written
            sys.stdout = sys.stderr = _FullDisk()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), params.path or "checkpoint.pt")
        if params.crash_at == step:
            ctx.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    print("counted", steps, flush=True)
    return {"steps": steps, "tag": tag}


class _FullDisk:
    """A stream on a full disk: every write fails with ENOSPC."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def hang(params: HangParams, ctx: JobContext) -> dict[str, Any]:
    """Ignore cancellation (to test terminate/kill after the grace period)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN) if params.ignore_term else None
    ctx.progress(0, None, text="hanging")
    deadline = time.monotonic() + params.seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return {}


def flood(params: FloodParams, ctx: JobContext) -> dict[str, Any]:
    """Send `messages` raw progress messages as fast as possible (pipe throughput benchmark)."""
    n = params.messages
    send = ctx._send  # bypass throttling: measure the protocol itself
    start = time.perf_counter()
    for i in range(n):
        send(p.LogLine(str(i)))
    return {"messages": n, "send_s": time.perf_counter() - start}
