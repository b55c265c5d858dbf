"""The states a job and a run (the row a job fills: dataset, model, activation set, training, feature set, sweep) go
through, with their named groups.

Members are `StrEnum`s, so each equals the string stored in the database: `job.status == JobState.RUNNING` and
`job.status in JobState.ACTIVE` work on plain strings read back from a row, and a member can be written as is.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class JobState(StrEnum):
    """A job: queued → running → (completed | failed | cancelled | interrupted)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # its runner went away while it ran (found at the next start-up)

    ACTIVE: ClassVar[frozenset[JobState]]  # waiting for or holding a worker
    TERMINAL: ClassVar[frozenset[JobState]]  # over: it never changes state again


JobState.ACTIVE = frozenset({JobState.QUEUED, JobState.RUNNING})
JobState.TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED})


class RunState(StrEnum):
    """A run: pending until its job starts, then the job's state, with `ready` for a completed job's result."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    COMPLETED = "completed"  # a finished sweep, and results written before `ready` existed
    PAUSED = "paused"  # a cancelled training that kept a checkpoint
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    ACTIVE: ClassVar[frozenset[RunState]]  # its job is queued or running
    USABLE: ClassVar[frozenset[RunState]]  # finished with a result that can be opened
    FINISHED: ClassVar[frozenset[RunState]]  # finished with a result or an error (a sweep counts it as done)


RunState.ACTIVE = frozenset({RunState.QUEUED, RunState.RUNNING})
RunState.USABLE = frozenset({RunState.READY, RunState.COMPLETED})
RunState.FINISHED = RunState.USABLE | {RunState.FAILED}
