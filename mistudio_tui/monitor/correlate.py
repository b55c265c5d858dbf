"""Which job a process belongs to: walk parent pids up to a recorded job worker pid."""

from __future__ import annotations

from collections.abc import Iterable

import psutil

MAX_DEPTH = 32


def match_processes_to_jobs(pids: Iterable[int], job_pids: dict[int, int]) -> dict[int, int]:
    """Map each pid (e.g. a GPU process) to the id of the job whose worker pid is it or one of its ancestors.

    Pids that belong to no job, or vanish while their ancestry is read, are left out.
    """
    owner: dict[int, int | None] = {}
    matches: dict[int, int] = {}
    for pid in pids:
        job_id = _owning_job(int(pid), job_pids, owner)
        if job_id is not None:
            matches[int(pid)] = job_id
    return matches


def _owning_job(pid: int, job_pids: dict[int, int], owner: dict[int, int | None]) -> int | None:
    """The job owning `pid`, remembering the answer for every pid on the walked chain."""
    chain: list[int] = []
    current = pid
    found: int | None = None
    for _ in range(MAX_DEPTH):
        if current in owner:
            found = owner[current]
            break
        chain.append(current)
        if current in job_pids:
            found = job_pids[current]
            break
        parent = _parent_pid(current)
        if parent is None or parent in chain:
            break
        current = parent
    for walked in chain:
        owner[walked] = found
    return found


def _parent_pid(pid: int) -> int | None:
    """The parent of `pid`, or None at the top of the tree or when the process is gone or hidden."""
    if pid <= 1:
        return None
    try:
        parent = psutil.Process(pid).ppid()
    except (psutil.Error, ValueError):
        return None
    return parent if parent > 0 else None
