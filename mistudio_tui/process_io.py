"""Standard streams around a spawned process: shared by the job runner and the inference session (stdlib only)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


def redirect_output(log_path: str) -> None:
    """Point fds 1 and 2 at the job's log file and fd 0 at /dev/null, before anything loud is imported."""
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.close(null_fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


@contextlib.contextmanager
def real_stdio() -> Iterator[None]:
    """Point sys.stdout/stderr at the process's real files while spawning.

    A TUI replaces them with objects whose fileno() is not a real descriptor, and multiprocessing passes
    stderr's descriptor to the resource tracker it starts, which then fails ("bad value(s) in fds_to_keep").
    """
    saved = sys.stdout, sys.stderr
    try:
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            try:
                ok = current is not None and current.fileno() >= 0
            except (OSError, ValueError, AttributeError):
                ok = False
            if not ok:
                setattr(sys, name, getattr(sys, f"__{name}__"))
        yield
    finally:
        sys.stdout, sys.stderr = saved
