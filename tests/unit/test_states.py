"""Job and run states: StrEnum members equal the stored strings, and state groups are named once, in db/states.py."""

from __future__ import annotations

import ast
from pathlib import Path

import mistudio_tui
from mistudio_tui.db.jobs import create_job, recent_jobs
from mistudio_tui.db.models import Job
from mistudio_tui.db.states import JobState, RunState

PACKAGE = Path(mistudio_tui.__file__).parent
STATE_NAMES = {s.value for s in JobState} | {s.value for s in RunState}


def test_members_are_the_strings_the_database_stores(studio, tmp_path):
    job = create_job("diag.count", "t", {}, None, runner_pid=1, log_dir=tmp_path)
    assert Job.get_by_id(job.id).status == JobState.QUEUED == "queued"
    Job.update(status=JobState.RUNNING).where(Job.id == job.id).execute()
    stored = Job.get_by_id(job.id).status
    assert type(stored) is str and stored == "running" and stored in JobState.ACTIVE
    assert Job.select().where(Job.status.in_(JobState.ACTIVE)).count() == 1
    assert [j.id for j in recent_jobs()] == [job.id]


def test_the_groups():
    assert {"queued", "running"} == JobState.ACTIVE
    assert {"completed", "failed", "cancelled", "interrupted"} == JobState.TERMINAL
    assert set(JobState) == JobState.ACTIVE | JobState.TERMINAL and not JobState.ACTIVE & JobState.TERMINAL
    assert {"queued", "running"} == RunState.ACTIVE
    assert {"ready", "completed"} == RunState.USABLE
    assert {"ready", "completed", "failed"} == RunState.FINISHED
    assert all(isinstance(s, RunState) for s in RunState.FINISHED)


def hand_written_state_groups() -> list[str]:
    """Tuple, list and set literals made only of state names (two or more), outside db/states.py."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "states.py" or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 2:
                values = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                if len(values) == len(node.elts) and set(values) <= STATE_NAMES:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {values}")
    return found


def test_no_state_group_is_written_out_by_hand():
    assert hand_written_state_groups() == []
